"""The action contract: the job an action works on, what it returns, and the hand-on signal.

Actions (`worker.search`, `worker.retrieve`, `worker.delete`, `worker.archive`) import this module and
the ports; the delivery handler (`worker.delivery`) imports the actions' functions through the wiring.
Nothing here imports an action or the handler.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from worker.continuation import SIGNATURE_FIELD
from worker.errors import Code, PermanentError, RetryableError
from worker.models import GcsLocation
from worker.ports import DicomWebSource, EventPublisher, ObjectStore, Ports
from worker.request import SeriesRequest
from worker.settings import Settings
from worker.sweep_request import SweepRequest

log = logging.getLogger(__name__)

MAX_CONTINUATIONS = 1000


@dataclass(frozen=True)
class HandedOn:
    """The request was handed to a continuation message: no completion event yet."""

    reason: str


Outcome = Mapping[str, Any] | HandedOn


@dataclass
class Job:
    """One request being worked on: the request, its settings, the ports, and its deadline."""

    request: SeriesRequest
    settings: Settings
    ports: Ports
    deadline: float
    clock: Callable[[], float] = field(default=time.monotonic, kw_only=True)
    progress: Callable[[int, int], None] | None = field(default=None, kw_only=True)  # for the operator CLI

    @property
    def dicomweb(self) -> DicomWebSource:
        return self.ports.dicomweb

    @property
    def storage(self) -> ObjectStore:
        return self.ports.storage

    @property
    def publisher(self) -> EventPublisher:
        return self.ports.publisher

    def report(self, instances: int, size: int) -> None:
        if self.progress is not None:
            self.progress(instances, size)

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def destination(self) -> GcsLocation:
        """The request's destination, or DEFAULT_DESTINATION; refused outside ALLOWED_BUCKETS."""
        destination = self.request.destination or self.settings.default_destination
        if destination is None:
            raise PermanentError(
                Code.DESTINATION_MISSING, "no destination in the request and no DEFAULT_DESTINATION is set"
            )
        if not self.settings.destination_allowed(destination):
            raise PermanentError(
                Code.DESTINATION_NOT_ALLOWED,
                "the destination is outside ALLOWED_BUCKETS; nothing was written",
            )
        return destination

    def hand_on(self, reason: str, **changes: Any) -> HandedOn:
        """Publish the same request (with `changes`) onto REQUEST_TOPIC, to go on in a fresh delivery.

        Signed with the first continuation key: only the worker may set the fields of a follow-up."""
        return _hand_on(self.settings, self.publisher, self.request, reason, changes)


@dataclass
class SweepJob:
    """One sweep being worked on: its request (no series), its settings, the ports, and its deadline."""

    request: SweepRequest
    settings: Settings
    ports: Ports
    deadline: float
    clock: Callable[[], float] = field(default=time.monotonic, kw_only=True)

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def hand_on(self, reason: str, **changes: Any) -> HandedOn:
        """The sweep's follow-up (its cursor and count in `changes`), signed like every follow-up."""
        return _hand_on(self.settings, self.ports.publisher, self.request, reason, changes)


def _hand_on(
    settings: Settings,
    publisher: EventPublisher,
    request: SeriesRequest | SweepRequest,
    reason: str,
    changes: Mapping[str, Any],
) -> HandedOn:
    topic = settings.request_topic
    keys = settings.continuation_keys
    if topic is None or keys is None:
        raise RetryableError("the deadline is near and REQUEST_TOPIC is not set: cannot hand the rest on")
    following = replace(request, continuation=request.continuation + 1, **changes)
    if following.continuation > MAX_CONTINUATIONS:
        raise PermanentError(
            Code.RETRIES_EXHAUSTED,
            f"the request was handed on {MAX_CONTINUATIONS} times without finishing",
        )
    body = following.as_json()
    body[SIGNATURE_FIELD] = keys.sign(body)
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    attributes = {"action": str(following.action), "requestId": following.request_id, "continuation": "1"}
    publisher.publish(topic, data, attributes)
    log.info("handed the request on", extra={"reason": reason, "continuation": following.continuation})
    return HandedOn(reason)


ActionFunction = Callable[[Job], Outcome]
SweepFunction = Callable[[SweepJob], Outcome]
