"""Waiting on a Healthcare API long-running operation within the deadline (delete, import).

Polled with backoff (worker.retries.polling) until done; near the deadline, or when polling keeps
failing, the wait is handed to a follow-up that carries the operation's name, so the follow-up waits and
never starts the work again. What a finished operation's error means is the caller's to say.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry

from worker import retries
from worker.errors import Code, OperationRunning, PermanentError, RetryableError, SourceGone
from worker.job import HandedOn, Job
from worker.models import Operation

log = logging.getLogger(__name__)

POLL_MARGIN_SECONDS = 5.0


def wait(job: Job, name: str, *, not_found: Callable[[], PermanentError]) -> Operation | HandedOn:
    """The finished operation (its `error` may be set), or HandedOn; `not_found()` when the operation is
    unknown or expired."""
    store = job.request.series.store
    if store is None:
        raise PermanentError(Code.INVALID_REQUEST, "only a Healthcare API series has operations")

    def poll() -> Operation:
        operation = job.dicomweb.get_operation(name, store)
        if not operation.done:
            raise OperationRunning()
        return operation

    budget = job.remaining() - min(POLL_MARGIN_SECONDS, job.settings.deadline_seconds / 4)
    if budget <= 0:
        return job.hand_on("no time left to wait on the operation", operation=name)
    polling = retries.polling(api_retry.if_exception_type(OperationRunning), budget)
    try:
        return polling(poll)()
    except SourceGone:
        raise not_found() from None
    except (api_exceptions.RetryError, OperationRunning):
        return job.hand_on("operation still running", operation=name)
    except RetryableError as error:
        # Polling failed for now. Redelivering this message would start the work again: hand on the wait.
        log.warning("polling the operation failed; handing the wait on", extra={"reason": str(error)})
        return job.hand_on("operation polling failed", operation=name)


def error_code(operation: Operation) -> int | None:
    """The google.rpc code of a finished operation's error (None without one, or a malformed one)."""
    code = operation.error.get("code") if operation.error is not None else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None
