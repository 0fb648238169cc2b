"""The worker's retry rules, named, in one place: what is retried, how often, and for how long.

Retrying is the libraries' work (urllib3's `Retry` for HTTP statuses and connection errors,
google-api-core's `Retry` for our own operations); this module only says how each kind of work uses them.
"""

from __future__ import annotations

from collections.abc import Callable

from google.api_core import retry as api_retry
from urllib3.util.retry import Retry

from worker.errors import InstanceGone, RetryableError

# HTTP statuses worth a retry (REST reference): 408, 429 and the 5xx a server answers when overloaded.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# A DELETE is retried only when the server refused it outright: a 500 may have started the deletion.
DELETE_RETRY_STATUSES = frozenset({429, 503})


def http(total: int, *, delete: bool) -> Retry:
    """urllib3's rule for one session: GETs on connection errors, reads and RETRY_STATUSES; DELETEs only
    on connection errors and DELETE_RETRY_STATUSES (never on a read error: the server may have acted).
    Exponential backoff with jitter, Retry-After honoured, redirects never followed."""
    return Retry(
        total=total,
        connect=total,
        read=0 if delete else total,
        status=total,
        other=0,
        allowed_methods=frozenset({"DELETE"}) if delete else frozenset({"GET", "HEAD"}),
        status_forcelist=DELETE_RETRY_STATUSES if delete else RETRY_STATUSES,
        backoff_factor=0.5,
        backoff_max=20,
        backoff_jitter=0.5,
        respect_retry_after_header=True,
        raise_on_status=False,
        redirect=0,
    )


def one_instance(timeout: float, on_error: Callable[[Exception], None] | None = None) -> api_retry.Retry:
    """A transfer or delete of one instance: RetryableError again and again within `timeout`, except an
    instance gone from the source (a redelivery searches again)."""
    return api_retry.Retry(
        predicate=lambda error: isinstance(error, RetryableError) and not isinstance(error, InstanceGone),
        initial=0.5,
        maximum=8.0,
        multiplier=2.0,
        timeout=max(timeout, 1.0),
        on_error=on_error,
    )


def polling(predicate: Callable[[Exception], bool], timeout: float) -> api_retry.Retry:
    """Polling a long-running operation until it is done (Google's CLI polls about once a second)."""
    return api_retry.Retry(predicate=predicate, initial=0.5, maximum=10.0, multiplier=1.5, timeout=timeout)
