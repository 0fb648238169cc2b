"""The action contract (worker/job.py): where results may go, and the signed hand-on of a request."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.unit.fakes import ACTION_SETTINGS, DESTINATION, KEYS, OPERATIONS, REQUEST_TOPIC, Fakes
from worker.continuation import KeyRing
from worker.errors import Code, PermanentError, RetryableError
from worker.job import MAX_CONTINUATIONS, HandedOn
from worker.models import GcsLocation
from worker.request import Action, Message, parse_request


def test_the_request_destination_wins_over_the_default() -> None:
    inbox = GcsLocation("my-bucket", "inbox")

    assert Fakes().job(Action.RETRIEVE, destination=inbox).destination() == inbox
    assert Fakes().job(Action.RETRIEVE).destination() == DESTINATION


def test_a_destination_in_another_bucket_than_the_default_is_refused() -> None:
    with pytest.raises(PermanentError) as error:
        Fakes().job(Action.RETRIEVE, destination=GcsLocation("other-bucket", "x")).destination()

    assert error.value.code is Code.DESTINATION_NOT_ALLOWED


def test_allowed_buckets_are_matched_by_whole_path_components() -> None:
    settings = replace(ACTION_SETTINGS, allowed_buckets=(GcsLocation("my-bucket", "in"),))
    fakes = Fakes()

    assert fakes.job(
        Action.RETRIEVE, settings=settings, destination=GcsLocation("my-bucket", "in/a")
    ).destination()
    with pytest.raises(PermanentError) as error:
        fakes.job(
            Action.RETRIEVE, settings=settings, destination=GcsLocation("my-bucket", "inbox")
        ).destination()
    assert error.value.code is Code.DESTINATION_NOT_ALLOWED


def test_hand_on_publishes_the_same_request_signed_with_the_changes() -> None:
    fakes = Fakes()
    job = fakes.job(Action.DELETE)

    outcome = job.hand_on("operation still running", operation=f"{OPERATIONS}/1")

    assert outcome == HandedOn("operation still running")
    (handed,) = fakes.publisher.published
    assert handed.topic == REQUEST_TOPIC
    assert handed.attributes == {"action": "delete", "requestId": "req-1", "continuation": "1"}
    request = parse_request(Message(handed.data, handed.attributes, "m-2"), KEYS)
    assert request == replace(job.request, continuation=1, operation=f"{OPERATIONS}/1")


def test_a_hand_on_is_refused_under_another_key() -> None:
    fakes = Fakes()
    fakes.job(Action.ARCHIVE).hand_on("deadline")
    (handed,) = fakes.publisher.published
    other = KeyRing.parse("worker-1=" + "x" * 32)

    with pytest.raises(PermanentError) as error:
        parse_request(Message(handed.data, handed.attributes, "m-2"), other)
    assert error.value.code is Code.INVALID_REQUEST


def test_a_changed_hand_on_no_longer_verifies() -> None:
    fakes = Fakes()
    fakes.job(Action.ARCHIVE).hand_on("deadline")
    body = fakes.publisher.published[0].json()
    body["continuation"] = 5

    with pytest.raises(PermanentError) as error:
        parse_request(Message(json.dumps(body).encode(), {}, "m-2"), KEYS)
    assert error.value.code is Code.INVALID_REQUEST


def test_hand_on_counts_the_continuations_up_to_the_cap() -> None:
    fakes = Fakes()
    job = fakes.job(Action.RETRIEVE, continuation=MAX_CONTINUATIONS - 1)

    job.hand_on("deadline")
    assert fakes.publisher.published[0].json()["continuation"] == MAX_CONTINUATIONS

    with pytest.raises(PermanentError) as error:
        fakes.job(Action.RETRIEVE, continuation=MAX_CONTINUATIONS).hand_on("deadline")
    assert error.value.code is Code.RETRIES_EXHAUSTED
    assert error.value.message == f"the request was handed on {MAX_CONTINUATIONS} times without finishing"
    assert len(fakes.publisher.published) == 1


def test_hand_on_without_a_request_topic_asks_for_redelivery() -> None:
    fakes = Fakes()
    settings = replace(ACTION_SETTINGS, request_topic=None, continuation_keys=None)

    with pytest.raises(RetryableError, match="REQUEST_TOPIC is not set: cannot hand the rest on"):
        fakes.job(Action.RETRIEVE, settings=settings).hand_on("deadline")
    assert fakes.publisher.published == []


def test_remaining_and_progress_follow_the_job() -> None:
    fakes = Fakes()
    reported: list[tuple[int, int]] = []
    job = replace(
        fakes.job(Action.RETRIEVE, remaining=30.0), progress=lambda n, size: reported.append((n, size))
    )

    fakes.clock.advance(10.0)
    job.report(1, 512)

    assert job.remaining() == 20.0
    assert reported == [(1, 512)]
