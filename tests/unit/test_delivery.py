"""The ack/retry decision of Worker.handle, with fake actions and a fake publisher.

A return acknowledges the message; a raised RetryableError has Pub/Sub redeliver it. Every request that
is acknowledged has exactly one completion event.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from tests.unit.fakes import (
    COMPLETION_TOPIC,
    DATASET,
    DICOMWEB_SERIES_PATH,
    LOCATION,
    MESSAGE_ID,
    PROJECT,
    REQUEST_TOPIC,
    SERIES,
    SERIES_PATH,
    SOP,
    STORE,
    STUDY,
    FakePublisher,
    Published,
    message,
    no_dicomweb,
    no_storage,
)
from worker import logs
from worker.continuation import KeyRing
from worker.delivery import Worker
from worker.errors import Code, PermanentError, RetryableError, SettingsError, WorkerError, invalid
from worker.events import CompletionEvent
from worker.job import MAX_CONTINUATIONS, Job, Outcome
from worker.models import GcsLocation, SeriesRef
from worker.ports import Ports
from worker.pubsub import Publisher
from worker.request import Action, Message, SeriesRequest, parse_request
from worker.settings import Settings

KEYS = KeyRing.parse("worker-1=" + "k" * 32)
SETTINGS = Settings(
    completion_topic=COMPLETION_TOPIC,
    request_topic=REQUEST_TOPIC,
    continuation_keys=KEYS,
    delete_enabled=True,
    deadline_seconds=60,
)
OPERATION = f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/operations/42"


class FakeAction:
    """An action that records the jobs it got and answers with `outcome` (a result, or an error to raise)."""

    def __init__(self, outcome: Outcome | Exception | Callable[[Job], Outcome] | None = None) -> None:
        self.outcome = outcome
        self.jobs: list[Job] = []

    def __call__(self, job: Job) -> Outcome:
        self.jobs.append(job)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        if callable(self.outcome):
            return self.outcome(job)
        return self.outcome if self.outcome is not None else {"instanceCount": 1}


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


def make_worker(
    publisher: Publisher,
    action: FakeAction | None = None,
    settings: Settings = SETTINGS,
    **kwargs: Any,
) -> Worker:
    act = action or FakeAction()
    actions = dict.fromkeys(Action, act)
    return Worker(settings, Ports(no_dicomweb(), no_storage(), publisher), actions, **kwargs)


def only_event(publisher: FakePublisher) -> Published:
    assert [p.topic for p in publisher.published] == [COMPLETION_TOPIC]
    return publisher.published[0]


def search_message(**kwargs: Any) -> Message:
    return message({"action": "search", "series": SERIES_PATH, "requestId": "req-1"}, **kwargs)


# -- the errors module ----------------------------------------------------------------------------


def test_error_tree() -> None:
    assert issubclass(PermanentError, WorkerError)
    assert issubclass(RetryableError, WorkerError)
    assert not issubclass(RetryableError, PermanentError)


def test_invalid_is_an_invalid_request_with_details() -> None:
    error = invalid("options.mode is wrong", field="options.mode")

    assert error.code is Code.INVALID_REQUEST
    assert str(error) == "options.mode is wrong"
    assert error.as_event_error() == {
        "code": "invalid_request",
        "message": "options.mode is wrong",
        "details": {"field": "options.mode"},
    }


# -- success --------------------------------------------------------------------------------------


def test_the_completion_event_log_line_carries_what_the_metrics_count(
    publisher: FakePublisher, caplog: pytest.LogCaptureFixture
) -> None:
    action = FakeAction({"instanceCount": 3, "bytes": 300, "uploadedCount": 3})

    with caplog.at_level(logging.INFO, logger="worker"):
        make_worker(publisher, action).handle(search_message())

    (line,) = [r for r in caplog.records if r.getMessage() == "completion event"]
    assert (line.status, line.action, line.instanceCount, line.bytes) == ("succeeded", "search", 3, 300)  # type: ignore[attr-defined]


def test_success_publishes_one_succeeded_event(publisher: FakePublisher) -> None:
    action = FakeAction({"instanceCount": 3, "instances": [{"sopInstanceUID": SOP}]})

    event = make_worker(publisher, action).handle(search_message())

    published = only_event(publisher)
    assert isinstance(event, CompletionEvent)
    assert published.attributes == {
        "action": "search",
        "status": "succeeded",
        "requestId": "req-1",
        "studyInstanceUID": STUDY,
        "seriesInstanceUID": SERIES,
    }
    body = published.json()
    assert body["version"] == "1"
    assert body["requestId"] == "req-1"
    assert body["action"] == "search"
    assert body["status"] == "succeeded"
    assert body["series"] == SERIES_PATH
    assert body["studyInstanceUID"] == STUDY
    assert body["seriesInstanceUID"] == SERIES
    assert body["instanceCount"] == 3
    assert body["instances"] == [{"sopInstanceUID": SOP}]
    assert "error" not in body


def test_the_action_gets_the_parsed_request_settings_and_deadline(publisher: FakePublisher) -> None:
    action = FakeAction()
    make_worker(publisher, action, clock=lambda: 100.0).handle(search_message())

    (job,) = action.jobs
    assert job.request == parse_request(search_message())
    assert job.settings is SETTINGS
    assert job.deadline == 100.0 + SETTINGS.deadline_seconds


def test_only_the_requested_action_runs(publisher: FakePublisher) -> None:
    search, retrieve = FakeAction(), FakeAction()
    worker = Worker(
        SETTINGS,
        Ports(no_dicomweb(), no_storage(), publisher),
        {Action.SEARCH: search, Action.RETRIEVE: retrieve},
    )

    worker.handle(message({"action": "retrieve", "series": SERIES_PATH}))

    assert len(retrieve.jobs) == 1
    assert search.jobs == []


def test_the_request_id_is_logged_while_the_action_runs(publisher: FakePublisher) -> None:
    seen: list[str | None] = []

    def action(job: Job) -> Outcome:
        seen.append(logs.request_id_var.get())
        return {}

    make_worker(publisher, FakeAction(action)).handle(search_message())

    assert seen == ["req-1"]
    assert logs.request_id_var.get() is None


def test_without_completion_topic_the_event_is_only_returned(publisher: FakePublisher) -> None:
    worker = make_worker(publisher, settings=replace(SETTINGS, completion_topic=None))

    event = worker.handle(search_message())

    assert event is not None
    assert event.status == "succeeded"
    assert publisher.published == []


# -- permanent errors: a failed event, then acknowledge ------------------------------------------


def test_permanent_error_publishes_a_failed_event_and_returns(publisher: FakePublisher) -> None:
    error = PermanentError(Code.SOURCE_REFUSED, "the DICOMweb server refused GET with 403", {"status": 403})

    event = make_worker(publisher, FakeAction(error)).handle(search_message())

    assert event is not None
    published = only_event(publisher)
    assert published.attributes == {
        "action": "search",
        "status": "failed",
        "requestId": "req-1",
        "studyInstanceUID": STUDY,
        "seriesInstanceUID": SERIES,
        "errorCode": "source_refused",
    }
    body = published.json()
    assert body["status"] == "failed"
    assert body["series"] == SERIES_PATH
    assert body["error"] == {
        "code": "source_refused",
        "message": "the DICOMweb server refused GET with 403",
        "details": {"status": 403},
    }


# -- retryable errors: raise, no event ------------------------------------------------------------


@pytest.mark.parametrize("attempt", [None, 1, 4])
def test_retryable_error_raises_and_publishes_nothing(publisher: FakePublisher, attempt: int | None) -> None:
    worker = make_worker(publisher, FakeAction(RetryableError("GET answered 503 after retries")))

    with pytest.raises(RetryableError, match="503"):
        worker.handle(search_message(delivery_attempt=attempt))

    assert publisher.published == []


@pytest.mark.parametrize("attempt", [5, 6, 100])
def test_retryable_error_on_the_last_attempt_is_a_failed_event(
    publisher: FakePublisher, attempt: int
) -> None:
    worker = make_worker(publisher, FakeAction(RetryableError("GET answered 503 after retries")))

    event = worker.handle(search_message(delivery_attempt=attempt))

    assert event is not None
    published = only_event(publisher)
    assert published.attributes["errorCode"] == "retries_exhausted"
    assert published.attributes["status"] == "failed"
    assert published.attributes["requestId"] == "req-1"
    error = published.json()["error"]
    assert error["code"] == "retries_exhausted"
    assert error["message"] == f"gave up after {attempt} deliveries: GET answered 503 after retries"


def test_last_attempt_is_configurable(publisher: FakePublisher) -> None:
    settings = dataclasses.replace(SETTINGS, max_delivery_attempts=2)
    worker = make_worker(publisher, FakeAction(RetryableError("timeout")), settings)

    with pytest.raises(RetryableError):
        worker.handle(search_message(delivery_attempt=1))
    worker.handle(search_message(delivery_attempt=2))

    assert only_event(publisher).attributes["errorCode"] == "retries_exhausted"


def test_an_unexpected_error_is_retried_then_reported_without_its_text(publisher: FakePublisher) -> None:
    """A defect is treated as transient (a redelivery may pass) and, on the last attempt, reported by its
    type only: an exception's text could carry anything."""
    worker = make_worker(publisher, FakeAction(KeyError("Doe^Jane")))

    with pytest.raises(KeyError):
        worker.handle(search_message(delivery_attempt=1))
    worker.handle(search_message(delivery_attempt=5))

    error = only_event(publisher).json()["error"]
    assert error == {
        "code": "retries_exhausted",
        "message": "gave up after 5 deliveries: unexpected KeyError",
    }


# -- messages that cannot be parsed ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code", "text"),
    [
        (b"\xff\xfe", "invalid_message", "message data is not UTF-8"),
        (b"not json", "invalid_message", "message data is not JSON"),
        (b"[1, 2]", "invalid_message", "message data must be a JSON object"),
        (b'{"action": "search", "series": "studies/1/series/x"}', "invalid_request", "SeriesInstanceUID"),
        (
            b'{"action": "search", "series": "studies/1/series/2", "requestId": "a b"}',
            "invalid_request",
            "requestId",
        ),
    ],
)
def test_bad_message_gets_a_failed_event_under_the_message_id(
    publisher: FakePublisher, data: bytes, code: str, text: str
) -> None:
    action = FakeAction()

    event = make_worker(publisher, action).handle(message(data, message_id="777000111"))

    assert event is not None
    assert action.jobs == []
    published = only_event(publisher)
    assert published.attributes == {"requestId": "777000111", "status": "failed", "errorCode": code}
    body = published.json()
    assert body["requestId"] == "777000111"
    assert body["series"] is None
    assert body["action"] is None
    assert body["error"]["code"] == code
    assert text in body["error"]["message"]


@pytest.mark.parametrize(
    ("request_id", "reported"),
    [("caller-42", "caller-42"), ("bad id!", "777000111"), (17, "777000111")],
)
def test_a_rejected_request_keeps_its_own_valid_request_id(
    publisher: FakePublisher, request_id: object, reported: str
) -> None:
    """A caller that correlates by requestId sees the failure of its own request."""
    data = {"action": "search", "series": SERIES_PATH, "requestId": request_id, "destination": "http://x"}
    make_worker(publisher).handle(message(data, message_id="777000111"))

    published = only_event(publisher)
    assert published.json()["requestId"] == reported
    assert published.attributes["errorCode"] == "invalid_request"


def test_a_message_the_json_parser_chokes_on_is_still_acknowledged(publisher: FakePublisher) -> None:
    """Valid JSON that Python cannot convert (an integer of more than 4300 digits) is a poison message."""
    data = b'{"action": "search", "series": "studies/1/series/2", "continuation": ' + b"9" * 5000 + b"}"

    event = make_worker(publisher).handle(message(data, delivery_attempt=1))

    assert event is not None
    assert only_event(publisher).attributes["errorCode"] == "invalid_message"


def test_bad_message_event_carries_a_known_action_attribute(publisher: FakePublisher) -> None:
    make_worker(publisher).handle(message(b"not json", {"action": "retrieve"}))

    published = only_event(publisher)
    assert published.attributes["action"] == "retrieve"
    assert published.json()["action"] == "retrieve"


def test_bad_message_event_drops_an_unknown_action_attribute(publisher: FakePublisher) -> None:
    make_worker(publisher).handle(message(b"not json", {"action": "rm -rf"}))

    published = only_event(publisher)
    assert "action" not in published.attributes
    assert published.json()["action"] is None


def test_bad_message_is_acknowledged_even_on_the_first_attempt(publisher: FakePublisher) -> None:
    event = make_worker(publisher).handle(message(b"{}", delivery_attempt=1))

    assert event is not None
    assert event.error is not None
    assert event.error.code is Code.INVALID_REQUEST
    assert event.request_id == MESSAGE_ID


# -- refusals before the action runs --------------------------------------------------------------


@pytest.mark.parametrize("action_name", ["delete", "archive"])
def test_delete_and_archive_need_delete_enabled(publisher: FakePublisher, action_name: str) -> None:
    action = FakeAction()
    worker = make_worker(publisher, action, settings=replace(SETTINGS, delete_enabled=False))

    worker.handle(message({"action": action_name, "series": SERIES_PATH}))

    assert action.jobs == []
    published = only_event(publisher)
    assert published.attributes["errorCode"] == "delete_disabled"
    assert published.attributes["action"] == action_name
    assert (
        published.json()["error"]["message"]
        == "delete and archive need DELETE_ENABLED=true; nothing was deleted"
    )


def test_restore_needs_restore_enabled(publisher: FakePublisher) -> None:
    action = FakeAction()
    worker = make_worker(publisher, action)  # DELETE_ENABLED does not enable restore

    worker.handle(message({"action": "restore", "series": SERIES_PATH}))

    assert action.jobs == []
    published = only_event(publisher)
    assert published.attributes["errorCode"] == "restore_disabled"
    assert published.json()["error"]["message"] == (
        "restore needs RESTORE_ENABLED=true; nothing was written to the store"
    )


@pytest.mark.parametrize("action_name", ["restore", "verify"])
def test_restore_and_verify_run_with_delete_disabled(publisher: FakePublisher, action_name: str) -> None:
    action = FakeAction()
    settings = replace(SETTINGS, delete_enabled=False, restore_enabled=True)
    worker = make_worker(publisher, action, settings=settings)

    worker.handle(message({"action": action_name, "series": SERIES_PATH}))

    assert len(action.jobs) == 1


@pytest.mark.parametrize("action_name", ["search", "retrieve"])
def test_reading_actions_run_with_delete_disabled(publisher: FakePublisher, action_name: str) -> None:
    action = FakeAction()
    worker = make_worker(publisher, action, settings=replace(SETTINGS, delete_enabled=False))

    worker.handle(message({"action": action_name, "series": SERIES_PATH}))

    assert len(action.jobs) == 1
    assert only_event(publisher).attributes["status"] == "succeeded"


@pytest.mark.parametrize(
    ("patterns", "series", "runs"),
    [
        ((f"projects/{PROJECT}/locations/*/datasets/*/dicomStores/*",), SERIES_PATH, True),
        ((STORE,), SERIES_PATH, True),
        (("projects/other-project/*",), SERIES_PATH, False),
        ((f"{STORE}-archive",), SERIES_PATH, False),
        (("projects/*",), DICOMWEB_SERIES_PATH, False),
        (("dicomweb",), DICOMWEB_SERIES_PATH, True),
    ],
)
def test_allowed_dicom_stores(
    publisher: FakePublisher, patterns: tuple[str, ...], series: str, runs: bool
) -> None:
    action = FakeAction()
    worker = make_worker(publisher, action, settings=replace(SETTINGS, allowed_dicom_stores=patterns))

    worker.handle(message({"action": "search", "series": series}))

    assert len(action.jobs) == (1 if runs else 0)
    published = only_event(publisher)
    if runs:
        assert published.attributes["status"] == "succeeded"
    else:
        assert published.attributes["errorCode"] == "store_not_allowed"
        assert published.json()["error"]["message"] == "the series' store is not in ALLOWED_DICOM_STORES"


# -- publishing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "outcome",
    [{"instanceCount": 0}, PermanentError(Code.SERIES_NOT_FOUND, "no instances")],
    ids=["succeeded", "failed"],
)
def test_a_failed_publish_is_retried(outcome: Outcome | Exception) -> None:
    worker = make_worker(FakePublisher(fail=True), FakeAction(outcome))

    with pytest.raises(RetryableError, match="publishing"):
        worker.handle(search_message())


def test_a_failed_publish_of_a_bad_message_event_is_retried() -> None:
    with pytest.raises(RetryableError):
        make_worker(FakePublisher(fail=True)).handle(message(b"not json"))


class _Future:
    def __init__(self, result: str | Exception) -> None:
        self._result = result

    def result(self, timeout: float | None = None) -> str:
        if isinstance(self._result, Exception):
            raise self._result
        return self._result


class _FakePubSubClient:
    def __init__(self, result: str | Exception) -> None:
        self.result = result
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []

    def publish(self, topic: str, data: bytes, **attributes: str) -> _Future:
        self.calls.append((topic, data, attributes))
        return _Future(self.result)


def test_publisher_waits_for_the_message_id() -> None:
    client = _FakePubSubClient("1234")

    assert Publisher(client).publish(COMPLETION_TOPIC, b"{}", {"status": "succeeded"}) == "1234"
    assert client.calls == [(COMPLETION_TOPIC, b"{}", {"status": "succeeded"})]


@pytest.mark.parametrize("failure", [TimeoutError(), RuntimeError("NotFound: topic")])
def test_publisher_failure_is_retryable(failure: Exception) -> None:
    with pytest.raises(RetryableError, match=f"publishing to {COMPLETION_TOPIC} failed"):
        Publisher(_FakePubSubClient(failure)).publish(COMPLETION_TOPIC, b"{}", {})


def test_worker_with_the_real_publisher_retries_when_the_publish_fails() -> None:
    worker = make_worker(Publisher(_FakePubSubClient(TimeoutError())))

    with pytest.raises(RetryableError):
        worker.handle(search_message())


# -- handing on -----------------------------------------------------------------------------------


def signed(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "signature": KEYS.sign(body)}


def handing_on(**changes: Any) -> FakeAction:
    return FakeAction(lambda job: job.hand_on("deadline", **changes))


def test_handed_on_request_has_no_completion_event_yet(publisher: FakePublisher) -> None:
    event = make_worker(publisher, handing_on()).handle(search_message())

    assert event is None
    assert publisher.to(COMPLETION_TOPIC) == []
    assert len(publisher.to(REQUEST_TOPIC)) == 1


def test_hand_on_publishes_the_same_request_with_continuation_plus_one(publisher: FakePublisher) -> None:
    original = message(
        signed(
            {
                "action": "retrieve",
                "series": SERIES_PATH,
                "requestId": "req-9",
                "destination": "gs://my-bucket/in",
                "options": {"mode": "series", "includeMetadata": True},
                "continuation": 2,
            }
        )
    )

    make_worker(publisher, handing_on()).handle(original)

    (follow_up,) = publisher.to(REQUEST_TOPIC)
    assert follow_up.attributes == {"action": "retrieve", "requestId": "req-9", "continuation": "1"}
    parsed = parse_request(Message(follow_up.data, follow_up.attributes, "new-message-id"), KEYS)
    assert parsed == replace(parse_request(original, KEYS), continuation=3)
    assert json.loads(follow_up.data)["continuation"] == 3


def test_hand_on_carries_the_changes(publisher: FakePublisher) -> None:
    make_worker(publisher, handing_on(operation=OPERATION)).handle(
        message({"action": "delete", "series": SERIES_PATH})
    )

    (follow_up,) = publisher.to(REQUEST_TOPIC)
    parsed = parse_request(Message(follow_up.data, {}, "new-message-id"), KEYS)
    assert parsed.operation == OPERATION
    assert parsed.continuation == 1
    assert parsed.request_id == MESSAGE_ID


def test_hand_on_without_request_topic_is_retryable(publisher: FakePublisher) -> None:
    worker = make_worker(publisher, handing_on(), settings=replace(SETTINGS, request_topic=None))

    with pytest.raises(RetryableError, match="REQUEST_TOPIC is not set"):
        worker.handle(search_message())
    assert publisher.published == []


def test_hand_on_stops_after_max_continuations(publisher: FakePublisher) -> None:
    body = {"action": "search", "series": SERIES_PATH, "continuation": MAX_CONTINUATIONS}

    make_worker(publisher, handing_on()).handle(message(signed(body)))

    published = only_event(publisher)
    assert published.attributes["errorCode"] == "retries_exhausted"
    assert published.json()["error"]["message"] == (
        f"the request was handed on {MAX_CONTINUATIONS} times without finishing"
    )


def test_hand_on_signs_the_whole_follow_up(publisher: FakePublisher) -> None:
    make_worker(publisher, handing_on(operation=OPERATION)).handle(
        message({"action": "delete", "series": SERIES_PATH, "requestId": "req-3"})
    )

    (follow_up,) = publisher.to(REQUEST_TOPIC)
    body = follow_up.json()
    assert body["signature"].startswith("v1:worker-1:")
    unsigned = {name: value for name, value in body.items() if name != "signature"}
    assert unsigned == {
        "action": "delete",
        "series": SERIES_PATH,
        "requestId": "req-3",
        "continuation": 1,
        "operation": OPERATION,
    }
    assert KEYS.verify(unsigned, body["signature"])


def test_the_worker_takes_its_own_follow_up(publisher: FakePublisher) -> None:
    """The follow-up, delivered back to a worker with the same keys, goes on where the first stopped."""
    make_worker(publisher, handing_on(operation=OPERATION)).handle(
        message({"action": "delete", "series": SERIES_PATH})
    )
    (follow_up,) = publisher.to(REQUEST_TOPIC)
    action = FakeAction({"deleted": True})

    make_worker(FakePublisher(), action).handle(Message(follow_up.data, follow_up.attributes, "second-id"))

    [job] = action.jobs
    assert (job.request.operation, job.request.continuation) == (OPERATION, 1)


@pytest.mark.parametrize(
    "forged",
    [
        {"action": "delete", "series": SERIES_PATH, "operation": OPERATION},
        {"action": "archive", "series": SERIES_PATH, "operation": OPERATION, "continuation": 1},
        {"action": "retrieve", "series": SERIES_PATH, "instance": SOP, "continuation": 1},
    ],
    ids=["delete-operation", "archive-operation", "retrieve-instance"],
)
def test_a_forged_follow_up_is_refused_and_nothing_is_claimed(
    publisher: FakePublisher, forged: dict[str, Any]
) -> None:
    """Operation names are public (completion events carry them): a sender must not be able to make the
    worker report a series deleted by naming one."""
    action = FakeAction({"deleted": True, "verified": True})

    make_worker(publisher, action).handle(message({**forged, "requestId": "forged-1"}))

    assert action.jobs == []
    published = only_event(publisher)
    assert published.attributes == {
        "requestId": "forged-1",
        "status": "failed",
        "errorCode": "invalid_request",
    }
    body = published.json()
    assert body["status"] == "failed"
    assert "deleted" not in body and "verified" not in body
    assert body["error"]["message"] == (
        "fields the worker sets on its own follow-up messages (operation, instance, continuation, signature)"
        " need its signature"
    )


def test_a_follow_up_signature_moved_to_another_series_is_refused(publisher: FakePublisher) -> None:
    make_worker(publisher, handing_on(operation=OPERATION)).handle(
        message({"action": "delete", "series": SERIES_PATH})
    )
    (follow_up,) = publisher.to(REQUEST_TOPIC)
    moved = {**follow_up.json(), "series": SERIES_PATH.replace(SERIES, SERIES + ".1")}
    action = FakeAction({"deleted": True})
    second = FakePublisher()

    make_worker(second, action).handle(message(moved))

    assert action.jobs == []
    assert only_event(second).attributes["errorCode"] == "invalid_request"


def test_a_worker_with_request_topic_needs_continuation_keys() -> None:
    with pytest.raises(SettingsError, match="REQUEST_TOPIC needs CONTINUATION_KEYS"):
        make_worker(FakePublisher(), settings=replace(SETTINGS, continuation_keys=None))

    make_worker(FakePublisher(), settings=replace(SETTINGS, continuation_keys=None, request_topic=None))


# -- Job.destination ------------------------------------------------------------------------------


def job(destination: str | None, settings: Settings) -> Job:
    request = SeriesRequest(
        Action.RETRIEVE,
        SeriesRef.parse(SERIES_PATH),
        "req-1",
        destination=GcsLocation.parse(destination) if destination else None,
    )
    return Job(request, settings, Ports(no_dicomweb(), no_storage(), FakePublisher()), deadline=0.0)


def test_destination_from_the_request() -> None:
    settings = replace(SETTINGS, allowed_buckets=(GcsLocation("my-bucket", ""),))

    assert job("gs://my-bucket/x", settings).destination() == GcsLocation("my-bucket", "x")


def test_destination_defaults_to_default_destination() -> None:
    settings = replace(SETTINGS, default_destination=GcsLocation("my-bucket", "in"))

    assert job(None, settings).destination() == GcsLocation("my-bucket", "in")


def test_destination_missing() -> None:
    with pytest.raises(PermanentError) as error:
        job(None, SETTINGS).destination()

    assert error.value.code is Code.DESTINATION_MISSING
    assert error.value.message == "no destination in the request and no DEFAULT_DESTINATION is set"


@pytest.mark.parametrize(
    ("destination", "settings"),
    [
        ("gs://my-bucket/x", SETTINGS),
        ("gs://other-bucket/x", replace(SETTINGS, default_destination=GcsLocation("my-bucket", "in"))),
        ("gs://my-bucket/inbox", replace(SETTINGS, allowed_buckets=(GcsLocation("my-bucket", "in"),))),
    ],
)
def test_destination_not_allowed(destination: str, settings: Settings) -> None:
    with pytest.raises(PermanentError) as error:
        job(destination, settings).destination()

    assert error.value.code is Code.DESTINATION_NOT_ALLOWED
    assert error.value.message == "the destination is outside ALLOWED_BUCKETS; nothing was written"


def test_destination_not_allowed_is_a_failed_event(publisher: FakePublisher) -> None:
    action = FakeAction(lambda job: {"destination": job.destination().uri()})

    make_worker(publisher, action).handle(
        message({"action": "retrieve", "series": SERIES_PATH, "destination": "gs://elsewhere/x"})
    )

    assert only_event(publisher).attributes["errorCode"] == "destination_not_allowed"


def test_remaining_time_follows_the_clock() -> None:
    now: Iterator[float] = iter([10.0, 25.0])
    the_job = replace(job(None, SETTINGS), deadline=100.0, clock=lambda: next(now))

    assert the_job.remaining() == 90.0
    assert the_job.remaining() == 75.0
