"""One delivery, start to finish: parse, run the action, publish the completion event, ack or retry.

This is the one place that decides: a PermanentError becomes a failed event and an acknowledgement; a
RetryableError propagates (Pub/Sub redelivers), except on the last delivery attempt the push announces,
where it becomes a failed `retries_exhausted` event so that no request ends without an event.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from worker.continuation import SIGNATURE_FIELD
from worker.dicomweb import DicomWebClient
from worker.errors import Code, PermanentError, RetryableError
from worker.events import CompletionEvent
from worker.logs import request_id_var
from worker.models import GcsLocation
from worker.pubsub import Publisher
from worker.request import Action, Message, SeriesRequest, parse_request, request_id_of, store_allowed
from worker.settings import Settings
from worker.storage import Storage

log = logging.getLogger(__name__)

MAX_CONTINUATIONS = 1000
LAST_ATTEMPT_DEFAULT = 5


@dataclass(frozen=True)
class HandedOn:
    """The request was handed to a continuation message: no completion event yet."""

    reason: str


Outcome = Mapping[str, Any] | HandedOn


@dataclass
class Job:
    """One request being worked on, with the clients and the deadline it runs under."""

    request: SeriesRequest
    settings: Settings
    dicomweb: DicomWebClient
    storage: Storage
    publisher: Publisher
    deadline: float
    clock: Callable[[], float] = time.monotonic
    progress: Callable[[int, int], None] | None = None  # (instances, bytes) copied, for the operator CLI

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
        topic = self.settings.request_topic
        keys = self.settings.continuation_keys
        if topic is None or keys is None:
            raise RetryableError("the deadline is near and REQUEST_TOPIC is not set: cannot hand the rest on")
        following = replace(self.request, continuation=self.request.continuation + 1, **changes)
        if following.continuation > MAX_CONTINUATIONS:
            raise PermanentError(
                Code.RETRIES_EXHAUSTED,
                f"the request was handed on {MAX_CONTINUATIONS} times without finishing",
            )
        body = following.as_json()
        body[SIGNATURE_FIELD] = keys.sign(body)
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        attributes = {"action": str(following.action), "requestId": following.request_id, "continuation": "1"}
        self.publisher.publish(topic, data, attributes)
        log.info("handed the request on", extra={"reason": reason, "continuation": following.continuation})
        return HandedOn(reason)


ActionFunction = Callable[[Job], Outcome]


class Worker:
    def __init__(
        self,
        settings: Settings,
        dicomweb: DicomWebClient,
        storage: Storage,
        publisher: Publisher,
        actions: Mapping[Action, ActionFunction],
        *,
        last_attempt: int = LAST_ATTEMPT_DEFAULT,
        clock: Callable[[], float] = time.monotonic,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        settings.require_continuation_keys()
        self.progress = progress
        self.settings = settings
        self.dicomweb = dicomweb
        self.storage = storage
        self.publisher = publisher
        self._actions = actions
        self._last_attempt = last_attempt
        self._clock = clock

    def handle(self, message: Message) -> CompletionEvent | None:
        """Handle one delivery. Returns the published event (None when handed on); raises RetryableError."""
        started = self._clock()
        deadline = started + self.settings.deadline_seconds
        token = request_id_var.set(message.message_id)
        try:
            try:
                request = parse_request(message, self.settings.continuation_keys)
            except PermanentError as error:
                log.warning("rejected a message", extra={"code": str(error.code)})
                action = message.attributes.get("action")
                event = CompletionEvent.failed(
                    request_id_of(message), action if action in set(Action) else None, None, error
                )
                return self._publish(event)
            request_id_var.set(request.request_id)
            return self._run(request, message, deadline)
        finally:
            request_id_var.reset(token)

    def _run(self, request: SeriesRequest, message: Message, deadline: float) -> CompletionEvent | None:
        job = Job(
            request,
            self.settings,
            self.dicomweb,
            self.storage,
            self.publisher,
            deadline,
            self._clock,
            self.progress,
        )
        log.info(
            "request started",
            extra={
                "action": str(request.action),
                "studyInstanceUID": request.series.study_uid,
                "seriesInstanceUID": request.series.series_uid,
                "continuation": request.continuation,
                "deliveryAttempt": message.delivery_attempt or 0,
            },
        )
        try:
            self._check_allowed(request)
            outcome = self._actions[request.action](job)
        except PermanentError as error:
            log.warning("request failed", extra={"code": str(error.code)})
            return self._publish(
                CompletionEvent.failed(request.request_id, str(request.action), request.series, error)
            )
        except Exception as error:  # RetryableError, or a defect: a redelivery may succeed either way
            reason = str(error) if isinstance(error, RetryableError) else f"unexpected {type(error).__name__}"
            attempt = message.delivery_attempt
            if attempt is not None and attempt >= self._last_attempt:
                log.error(
                    "failures on the last delivery attempt", extra={"attempt": attempt, "reason": reason}
                )
                failure = PermanentError(
                    Code.RETRIES_EXHAUSTED, f"gave up after {attempt} deliveries: {reason}"
                )
                return self._publish(
                    CompletionEvent.failed(request.request_id, str(request.action), request.series, failure)
                )
            log.warning("transient failure, asking for redelivery", extra={"reason": reason})
            raise
        if isinstance(outcome, HandedOn):
            return None
        log.info("request succeeded", extra={"action": str(request.action)})
        return self._publish(
            CompletionEvent.succeeded(request.request_id, str(request.action), request.series, outcome)
        )

    def _check_allowed(self, request: SeriesRequest) -> None:
        if request.action in (Action.DELETE, Action.ARCHIVE) and not self.settings.delete_enabled:
            raise PermanentError(
                Code.DELETE_DISABLED, "delete and archive need DELETE_ENABLED=true; nothing was deleted"
            )
        if not store_allowed(request.series.store, self.settings.allowed_dicom_stores):
            raise PermanentError(Code.STORE_NOT_ALLOWED, "the series' store is not in ALLOWED_DICOM_STORES")

    def _publish(self, event: CompletionEvent) -> CompletionEvent:
        topic = self.settings.completion_topic
        if topic is None:
            log.warning("COMPLETION_TOPIC is not set: the completion event is only logged")
        else:
            self.publisher.publish(topic, event.data(), event.attributes())
        log.info("completion event", extra={"status": event.status, "action": event.action or ""})
        return event
