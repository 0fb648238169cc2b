"""Where the commands get their clients: the real ones by default, made only when a command needs one
(importing the CLI imports no Google library); unit tests pass fakes through `Clients`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from worker.cli.arguments import UsageError
from worker.models import GcsLocation
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.delivery import Worker
    from worker.dicomweb import DicomWebClient

_T = TypeVar("_T")
PUBLISH_IN_FLIGHT = 1000  # fan-out: publish() blocks while this many messages are unconfirmed


def _credentials_boundary() -> Any:
    """google-auth's "no credentials" error, which is a configuration problem (exit 2), not a failure."""
    from google.auth.exceptions import DefaultCredentialsError

    return DefaultCredentialsError


def _publisher_client() -> Any:
    from google.cloud import pubsub_v1
    from google.cloud.pubsub_v1 import types

    flow = types.PublishFlowControl(
        message_limit=PUBLISH_IN_FLIGHT, limit_exceeded_behavior=types.LimitExceededBehavior.BLOCK
    )
    return pubsub_v1.PublisherClient(publisher_options=types.PublisherOptions(flow_control=flow))


def _subscriber_client() -> Any:
    from google.cloud import pubsub_v1

    return pubsub_v1.SubscriberClient()


def _dicomweb_client(settings: Settings) -> DicomWebClient:
    from worker.dicomweb import DicomWebClient
    from worker.http_exchange import build_transport

    return DicomWebClient(settings, build_transport(settings))


class FolderLister(Protocol):
    """What fan-out needs of Cloud Storage: the folders right below a location (worker.storage.Storage)."""

    def subfolders(self, location: GcsLocation) -> list[str]: ...


def _storage(settings: Settings) -> FolderLister:
    from worker.wiring import storage_client

    return storage_client(settings)


def _worker(settings: Settings) -> Worker:
    from worker.wiring import build_worker

    return build_worker(settings)


@dataclass(frozen=True)
class Clients:
    """Where the commands get their clients (made only when a command needs them)."""

    publisher: Callable[[], Any] = _publisher_client  # a google.cloud.pubsub_v1.PublisherClient
    subscriber: Callable[[], Any] = _subscriber_client  # a google.cloud.pubsub_v1.SubscriberClient
    dicomweb: Callable[[Settings], DicomWebClient] = _dicomweb_client
    worker: Callable[[Settings], Worker] = _worker
    storage: Callable[[Settings], FolderLister] = _storage


def make(factory: Callable[..., _T], *args: Any) -> _T:
    """A client from its factory; missing Google credentials are a usage error, named in one line."""
    try:
        return factory(*args)
    except _credentials_boundary() as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"no Google credentials: {first}") from None


def stop_publisher(client: Any) -> None:
    """Flush and stop the publisher's batch threads (quietly: the outcome is already known)."""
    stop = getattr(client, "stop", None)
    if callable(stop):
        with contextlib.suppress(Exception):
            stop()
