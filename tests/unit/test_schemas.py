"""The published schemas (schemas/*.json) against what the worker really publishes and accepts."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

import worker.search
from tests.schemas import EVENT_SCHEMA, REQUEST_SCHEMA, assert_valid_event, assert_valid_request, problems
from tests.unit.fakes import ACTION_SETTINGS, COMPLETION_TOPIC, DESTINATION, KEYS, SERIES_PATH, Fakes, message
from worker.delivery import Worker
from worker.errors import Code, PermanentError
from worker.events import CompletionEvent
from worker.models import SeriesRef
from worker.request import Action, parse_request
from worker.wiring import actions


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    made = Fakes()
    made.source.add_series(3)
    monkeypatch.setattr(worker.search, "time", made.clock)
    return made


@pytest.mark.parametrize(
    "body",
    [
        {"action": "search", "series": SERIES_PATH, "requestId": "s-1"},
        {
            "action": "retrieve",
            "series": SERIES_PATH,
            "requestId": "r-1",
            "options": {"includeMetadata": True},
        },
        {"action": "retrieve", "series": SERIES_PATH, "requestId": "r-2", "options": {"mode": "series"}},
        {"action": "archive", "series": SERIES_PATH, "requestId": "a-1", "destination": DESTINATION.uri()},
        {"action": "delete", "series": SERIES_PATH, "requestId": "d-1"},
        {"action": "verify", "series": SERIES_PATH, "requestId": "v-1", "destination": DESTINATION.uri()},
        {"action": "restore", "series": SERIES_PATH, "requestId": "rs-1", "destination": DESTINATION.uri()},
        {
            "action": "tier",
            "series": SERIES_PATH,
            "requestId": "t-1",
            "destination": DESTINATION.uri(),
            "options": {"storageClass": "ARCHIVE"},
        },
    ],
)
def test_the_event_of_every_action_validates(fakes: Fakes, body: dict[str, Any]) -> None:
    assert_valid_request(body)
    if body["action"] in ("verify", "restore"):  # an archive of the series to check, or to restore from
        archive_first = {"action": "archive", "series": SERIES_PATH, "requestId": "a-0"}
        Worker(ACTION_SETTINGS, fakes.ports, actions()).handle(message(archive_first))
        fakes.publisher.published.clear()
    settings = replace(ACTION_SETTINGS, restore_enabled=True)
    the_worker = Worker(settings, fakes.ports, actions())

    event = the_worker.handle(message(body))

    assert event is not None and event.status == "succeeded", event
    (published,) = fakes.publisher.to(COMPLETION_TOPIC)  # FakePublisher validated it on the way
    assert problems(EVENT_SCHEMA, published.json()) == []


def test_a_failed_event_validates(fakes: Fakes) -> None:
    fakes.source.metrics_offset = 1
    Worker(ACTION_SETTINGS, fakes.ports, actions()).handle(
        message({"action": "search", "series": SERIES_PATH})
    )

    (published,) = fakes.publisher.to(COMPLETION_TOPIC)
    assert published.json()["error"]["code"] == "search_incomplete"


@pytest.mark.parametrize("code", list(Code))
def test_a_failed_event_of_every_code_validates(code: Code) -> None:
    error = PermanentError(code, "what happened", {"count": 1})

    assert_valid_event(
        CompletionEvent.failed("r-1", "archive", SeriesRef.parse(SERIES_PATH), error).as_json()
    )


def test_the_event_of_a_message_that_names_nothing_validates() -> None:
    error = PermanentError(Code.INVALID_MESSAGE, "message data is not JSON")

    assert_valid_event(CompletionEvent.failed("m-1", None, None, error).as_json())


def test_the_follow_up_the_worker_hands_on_validates(fakes: Fakes) -> None:
    fakes.job(Action.ARCHIVE, destination=DESTINATION, continuation=3).hand_on("deadline")

    body = fakes.publisher.published[0].json()
    assert_valid_request(body)
    assert parse_request(message(body), KEYS).continuation == 4


@pytest.mark.parametrize(
    ("name", "body", "where"),
    [
        (EVENT_SCHEMA, {"version": "1", "requestId": "r", "action": "search", "status": "ok"}, "status"),
        (EVENT_SCHEMA, {"version": "1", "requestId": "r", "action": "copy", "status": "failed"}, "action"),
        (REQUEST_SCHEMA, {"action": "search", "series": SERIES_PATH, "extra": 1}, "(top)"),
        (REQUEST_SCHEMA, {"action": "search", "series": "studies/1/series/../2"}, "series"),
        (REQUEST_SCHEMA, {"action": "search"}, "(top)"),
    ],
)
def test_the_schemas_refuse_what_the_worker_never_sends_or_accepts(name: str, body: Any, where: str) -> None:
    assert any(line.startswith(f"{where}:") for line in problems(name, body))


def test_the_fake_publisher_refuses_an_event_that_does_not_validate(fakes: Fakes) -> None:
    event = {"version": "1", "requestId": "r-1", "status": "done"}

    with pytest.raises(AssertionError, match=r"event\.schema\.json"):
        fakes.publisher.publish(COMPLETION_TOPIC, json.dumps(event).encode(), {"status": "done"})


def test_finished_at_must_be_a_date_time() -> None:
    event = CompletionEvent.succeeded("r", "search", SeriesRef.parse(SERIES_PATH), {}).as_json()
    assert problems(EVENT_SCHEMA, event) == []

    assert problems(EVENT_SCHEMA, {**event, "finishedAt": "yesterday"}) != []
