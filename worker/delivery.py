"""One delivery, start to finish: parse, run the action, publish the completion event, ack or retry.

This is the one place that decides: a PermanentError becomes a failed event and an acknowledgement; a
RetryableError propagates (Pub/Sub redelivers), except on the last delivery attempt the push announces,
where it becomes a failed `retries_exhausted` event so that no request ends without an event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from worker.errors import Code, PermanentError, RetryableError
from worker.events import CompletionEvent
from worker.job import ActionFunction, HandedOn, Job, Outcome, SweepFunction, SweepJob
from worker.logs import request_id_var
from worker.ports import Ports
from worker.request import Action, Message, SeriesRequest, request_id_of, store_allowed
from worker.settings import Settings
from worker.sweep_request import SweepRequest, parse_message

log = logging.getLogger(__name__)


class Worker:
    """Handles deliveries with one set of settings and ports; the last delivery attempt is the dead-letter
    policy's (MAX_DELIVERY_ATTEMPTS)."""

    def __init__(
        self,
        settings: Settings,
        ports: Ports,
        actions: Mapping[Action, ActionFunction],
        *,
        clock: Callable[[], float] = time.monotonic,
        progress: Callable[[int, int], None] | None = None,
        sweep: SweepFunction | None = None,
    ) -> None:
        settings.require_continuation_keys()
        self.progress = progress
        self.settings = settings
        self.ports = ports
        self._actions = actions
        self._sweep = sweep
        self._clock = clock

    def handle(self, message: Message) -> CompletionEvent | None:
        """Handle one delivery. Returns the published event (None when handed on); raises RetryableError."""
        started = self._clock()
        deadline = started + self.settings.deadline_seconds
        token = request_id_var.set(message.message_id)
        try:
            try:
                request = parse_message(message, self.settings.continuation_keys)
            except PermanentError as error:
                log.warning("rejected a message", extra={"code": str(error.code)})
                action = message.attributes.get("action")
                event = CompletionEvent.failed(
                    request_id_of(message), action if action in set(Action) else None, None, error
                )
                return self._publish(event)
            request_id_var.set(request.request_id)
            if isinstance(request, SweepRequest):
                return self._run_sweep(request, message, deadline)
            return self._run(request, message, deadline)
        finally:
            request_id_var.reset(token)

    def _run(self, request: SeriesRequest, message: Message, deadline: float) -> CompletionEvent | None:
        job = Job(request, self.settings, self.ports, deadline, clock=self._clock, progress=self.progress)
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

        def run() -> Outcome:
            self._check_allowed(request)
            return self._actions[request.action](job)

        return self._finish(request, message, run)

    def _run_sweep(self, request: SweepRequest, message: Message, deadline: float) -> CompletionEvent | None:
        """A sweep: its store, and its `then` as every child will be checked, before anything is published."""
        job = SweepJob(request, self.settings, self.ports, deadline, clock=self._clock)
        log.info(
            "sweep started",
            extra={
                "action": str(request.then.action),
                "continuation": request.continuation,
                "deliveryAttempt": message.delivery_attempt or 0,
            },
        )

        def run() -> Outcome:
            self._check_allowed(request.then)
            if self._sweep is None:
                raise PermanentError(Code.INVALID_REQUEST, "this worker runs no sweeps")
            return self._sweep(job)

        return self._finish(request, message, run)

    def _finish(
        self, request: SeriesRequest | SweepRequest, message: Message, run: Callable[[], Outcome]
    ) -> CompletionEvent | None:
        """Run the action; its outcome, a PermanentError or a last-attempt failure as the completion event."""
        series = request.series if isinstance(request, SeriesRequest) else None
        try:
            outcome = run()
        except PermanentError as error:
            log.warning("request failed", extra={"code": str(error.code)})
            return self._publish(
                CompletionEvent.failed(request.request_id, str(request.action), series, error)
            )
        except Exception as error:  # RetryableError, or a defect: a redelivery may succeed either way
            reason = str(error) if isinstance(error, RetryableError) else f"unexpected {type(error).__name__}"
            attempt = message.delivery_attempt
            if attempt is not None and attempt >= self.settings.max_delivery_attempts:
                log.error(
                    "failures on the last delivery attempt", extra={"attempt": attempt, "reason": reason}
                )
                failure = PermanentError(
                    Code.RETRIES_EXHAUSTED, f"gave up after {attempt} deliveries: {reason}"
                )
                return self._publish(
                    CompletionEvent.failed(request.request_id, str(request.action), series, failure)
                )
            log.warning("transient failure, asking for redelivery", extra={"reason": reason})
            raise
        if isinstance(outcome, HandedOn):
            return None
        log.info("request succeeded", extra={"action": str(request.action)})
        return self._publish(
            CompletionEvent.succeeded(request.request_id, str(request.action), series, outcome)
        )

    def _check_allowed(self, request: SeriesRequest) -> None:
        if request.action in (Action.DELETE, Action.ARCHIVE) and not self.settings.delete_enabled:
            raise PermanentError(
                Code.DELETE_DISABLED, "delete and archive need DELETE_ENABLED=true; nothing was deleted"
            )
        if request.action is Action.RESTORE and not self.settings.restore_enabled:
            raise PermanentError(
                Code.RESTORE_DISABLED, "restore needs RESTORE_ENABLED=true; nothing was written to the store"
            )
        if not store_allowed(request.series.store, self.settings.allowed_dicom_stores):
            raise PermanentError(Code.STORE_NOT_ALLOWED, "the series' store is not in ALLOWED_DICOM_STORES")

    def _publish(self, event: CompletionEvent) -> CompletionEvent:
        topic = self.settings.completion_topic
        if topic is None:
            log.warning("COMPLETION_TOPIC is not set: the completion event is only logged")
        else:
            self.ports.publisher.publish(topic, event.data(), event.attributes())
        log.info("completion event", extra=event.log_fields())
        return event
