"""From a CloudEvent to a handled delivery: message decoding, then ack (2xx) or retry (5xx) over HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient

from tests.unit.fakes import COMPLETION_TOPIC, SERIES_PATH, FakePublisher, no_dicomweb, no_storage
from worker import cloud_event, logs
from worker.delivery import Worker
from worker.errors import RetryableError
from worker.job import Job, Outcome
from worker.ports import Ports
from worker.request import Action, Message
from worker.settings import Settings

MAIN = Path(__file__).resolve().parents[2] / "main.py"
REQUEST = {"action": "search", "series": SERIES_PATH, "requestId": "req-1"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def envelope(data: bytes = b"", **message: Any) -> dict[str, Any]:
    """The data of a `google.cloud.pubsub.topic.v1.messagePublished` CloudEvent."""
    body: dict[str, Any] = {"data": b64(data), "messageId": "2070443601311540", **message}
    return {"message": body, "subscription": "projects/my-project/subscriptions/worker"}


# -- message_from_cloud_event ---------------------------------------------------------------------


def test_data_attributes_and_message_id_are_decoded() -> None:
    data = json.dumps(REQUEST).encode()
    event = envelope(
        data, attributes={"action": "search", "origin": "test"}, publishTime="2024-01-01T00:00:00Z"
    )

    assert cloud_event.message_from_cloud_event(event, "event-id") == Message(
        data, {"action": "search", "origin": "test"}, "2070443601311540", None
    )


def test_binary_data_is_kept_byte_exact() -> None:
    data = bytes(range(256))

    assert cloud_event.message_from_cloud_event(envelope(data), "event-id").data == data


def test_message_id_falls_back_to_the_event_id() -> None:
    event = {"message": {"data": b64(b"{}")}}

    assert cloud_event.message_from_cloud_event(event, "event-77").message_id == "event-77"


@pytest.mark.parametrize(
    ("event", "attempt"),
    [
        ({**envelope(b"{}"), "deliveryAttempt": 5}, 5),
        (envelope(b"{}", deliveryAttempt=3), 3),
        ({**envelope(b"{}", deliveryAttempt=3), "deliveryAttempt": 4}, 4),
        (envelope(b"{}"), None),
        ({**envelope(b"{}"), "deliveryAttempt": "5"}, None),
        ({**envelope(b"{}"), "deliveryAttempt": True}, None),
        ({**envelope(b"{}"), "deliveryAttempt": 5.0}, None),
    ],
    ids=["top-level", "in-message", "top-level-wins", "absent", "string", "bool", "float"],
)
def test_delivery_attempt(event: dict[str, Any], attempt: int | None) -> None:
    assert cloud_event.message_from_cloud_event(event, "e").delivery_attempt == attempt


def test_attribute_values_become_strings() -> None:
    event = envelope(b"{}", attributes={"n": 1, "flag": True})

    assert cloud_event.message_from_cloud_event(event, "e").attributes == {"n": "1", "flag": "True"}


@pytest.mark.parametrize(
    "event",
    [
        None,
        "not an object",
        {},
        {"message": None},
        {"message": {"attributes": ["x"]}},
        {"message": {"data": None, "attributes": None}},
        {"message": {"data": 12}},
    ],
)
def test_malformed_envelopes_give_an_empty_message(event: object) -> None:
    message = cloud_event.message_from_cloud_event(event, "event-1")

    assert message == Message(b"", {}, "event-1", None)


@pytest.mark.parametrize("data", ["not base64!", "YWJjZA", "eyJ9\n", "e30=e30="])
def test_bad_base64_is_undecodable_data(data: str) -> None:
    message = cloud_event.message_from_cloud_event({"message": {"data": data, "messageId": "1"}}, "e")

    with pytest.raises(UnicodeDecodeError):
        message.data.decode("utf-8")


# -- through the Worker ---------------------------------------------------------------------------


class Recorder:
    def __init__(self, error: Exception | None = None) -> None:
        self.jobs: list[Job] = []
        self.traces: list[str | None] = []
        self.error = error

    def __call__(self, job: Job) -> Outcome:
        self.jobs.append(job)
        self.traces.append(logs.trace_var.get())
        if self.error is not None:
            raise self.error
        return {"instanceCount": 0}


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def action() -> Recorder:
    return Recorder()


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch, publisher: FakePublisher, action: Recorder) -> Worker:
    """The process's worker, replaced by one with fakes (get_worker builds nothing then)."""
    settings = Settings(completion_topic=COMPLETION_TOPIC)
    fake = Worker(settings, Ports(no_dicomweb(), no_storage(), publisher), dict.fromkeys(Action, action))
    monkeypatch.setattr(cloud_event, "_worker", fake)
    return fake


def test_get_worker_returns_the_one_worker(worker: Worker) -> None:
    assert cloud_event.get_worker() is worker


def test_bad_base64_is_a_failed_invalid_message_event(worker: Worker, publisher: FakePublisher) -> None:
    cloud_event.handle_cloud_event({"message": {"data": "%%%not base64%%%", "messageId": "31337"}}, "event-1")

    (published,) = publisher.published
    assert published.attributes == {"requestId": "31337", "status": "failed", "errorCode": "invalid_message"}
    assert published.json()["error"]["code"] == "invalid_message"


def test_handle_cloud_event_runs_the_request(
    worker: Worker, publisher: FakePublisher, action: Recorder
) -> None:
    cloud_event.handle_cloud_event(envelope(json.dumps(REQUEST).encode()), "event-1")

    assert len(action.jobs) == 1
    (published,) = publisher.published
    assert published.attributes["status"] == "succeeded"
    assert published.attributes["requestId"] == "req-1"


def test_handle_cloud_event_raises_to_retry(
    worker: Worker, publisher: FakePublisher, action: Recorder
) -> None:
    action.error = RetryableError("GET answered 503 after retries")

    with pytest.raises(RetryableError):
        cloud_event.handle_cloud_event(envelope(json.dumps(REQUEST).encode()), "event-1")
    assert publisher.published == []


def test_last_delivery_attempt_from_the_envelope_ends_the_retries(
    worker: Worker, publisher: FakePublisher, action: Recorder
) -> None:
    action.error = RetryableError("GET answered 503 after retries")

    cloud_event.handle_cloud_event(
        {**envelope(json.dumps(REQUEST).encode()), "deliveryAttempt": 5}, "event-1"
    )

    (published,) = publisher.published
    assert published.attributes["errorCode"] == "retries_exhausted"


def test_trace_is_set_from_traceparent(
    worker: Worker, action: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "my-project")
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    cloud_event.handle_cloud_event(envelope(json.dumps(REQUEST).encode()), "e", {"traceparent": traceparent})

    assert action.traces == ["projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736"]
    assert logs.trace_var.get() is None


def test_no_trace_without_a_project(
    worker: Worker, action: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)

    cloud_event.handle_cloud_event(
        envelope(json.dumps(REQUEST).encode()), "e", {"traceparent": "00-abc-def-01"}
    )

    assert action.traces == [None]


# -- main.py through functions-framework ----------------------------------------------------------


@pytest.fixture(scope="module")
def app_client() -> Iterator[FlaskClient]:
    app = functions_framework.create_app(
        target="handle_series_request", source=str(MAIN), signature_type="cloudevent"
    )
    yield app.test_client()


def post(client: FlaskClient, data: dict[str, Any]) -> int:
    headers = {
        "ce-id": "event-1",
        "ce-specversion": "1.0",
        "ce-source": "//pubsub.googleapis.com/projects/my-project/topics/requests",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "Content-Type": "application/json",
    }
    return client.post("/", headers=headers, data=json.dumps(data)).status_code


def test_a_handled_request_is_acknowledged(
    app_client: FlaskClient, worker: Worker, publisher: FakePublisher
) -> None:
    assert post(app_client, envelope(json.dumps(REQUEST).encode())) == 200
    assert publisher.published[0].attributes["status"] == "succeeded"


def test_a_bad_message_is_acknowledged(
    app_client: FlaskClient, worker: Worker, publisher: FakePublisher
) -> None:
    assert post(app_client, envelope(b"not json")) == 200
    assert publisher.published[0].attributes["errorCode"] == "invalid_message"


def test_a_transient_failure_answers_500(
    app_client: FlaskClient, worker: Worker, publisher: FakePublisher, action: Recorder
) -> None:
    action.error = RetryableError("GET answered 503 after retries")

    assert post(app_client, envelope(json.dumps(REQUEST).encode())) == 500
    assert publisher.published == []


def raw_push(data: bytes, **extra: Any) -> dict[str, Any]:
    """What a Pub/Sub push subscription POSTs (and the emulator too): converted by functions-framework."""
    return {
        "subscription": "projects/my-project/subscriptions/requests-push",
        "message": {"data": base64.b64encode(data).decode(), "messageId": "m-1", "attributes": {}},
        **extra,
    }


def test_the_last_push_delivery_attempt_ends_with_a_failed_event(
    app_client: FlaskClient, worker: Worker, publisher: FakePublisher, action: Recorder
) -> None:
    """functions-framework drops deliveryAttempt when it converts a push body; main.py reads it itself."""
    action.error = RetryableError("GET answered 503 after retries")
    response = app_client.post("/", json=raw_push(json.dumps(REQUEST).encode(), deliveryAttempt=5))
    assert response.status_code == 200
    (event,) = publisher.published
    assert event.attributes["errorCode"] == "retries_exhausted"


def test_an_earlier_push_delivery_attempt_is_retried(
    app_client: FlaskClient, worker: Worker, publisher: FakePublisher, action: Recorder
) -> None:
    action.error = RetryableError("GET answered 503 after retries")
    response = app_client.post("/", json=raw_push(json.dumps(REQUEST).encode(), deliveryAttempt=2))
    assert response.status_code == 500
    assert publisher.published == []
