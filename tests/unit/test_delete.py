"""Action `delete` (worker/delete.py) against the fake source: the operation waited on, handed on near
the deadline, and `deleted: true` only for a series a search then finds empty."""

from __future__ import annotations

from dataclasses import replace

import pytest

import worker.search
from tests.unit.fakes import ACTION_SETTINGS, OPERATIONS, REQUEST_TOPIC, Fakes, FakeSource, sop
from worker.delete import delete
from worker.errors import Code, PermanentError, RetryableError
from worker.job import HandedOn
from worker.models import SeriesRef
from worker.request import Action


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    made = Fakes()
    made.source.add_series(3)
    monkeypatch.setattr(worker.search, "time", made.clock)
    return made


def test_delete_waits_on_the_operation_and_reports_an_empty_series_deleted(fakes: Fakes) -> None:
    fakes.source.operation_polls = 2

    result = delete(fakes.job(Action.DELETE))

    assert result == {"operation": f"{OPERATIONS}/1", "alreadyAbsent": False, "deleted": True}
    assert fakes.source.calls["get_operation"] == 2
    assert fakes.source.uids() == []


def test_a_server_without_operations_is_searched_at_once() -> None:
    fakes = Fakes(source=FakeSource(SeriesRef.parse(f"studies/{sop(0)}/series/{sop(1)}"), healthcare=False))
    fakes.source.add(sop(1))

    assert delete(fakes.job(Action.DELETE)) == {"alreadyAbsent": False, "deleted": True}
    assert fakes.source.calls["get_operation"] == 0


def test_an_absent_series_is_already_absent_and_not_claimed_deleted(fakes: Fakes) -> None:
    fakes.source.absent = True

    assert delete(fakes.job(Action.DELETE)) == {"alreadyAbsent": True}


def test_an_operation_ending_not_found_is_already_absent(fakes: Fakes) -> None:
    fakes.source.operation_error = {"code": 5, "message": "not found"}

    assert delete(fakes.job(Action.DELETE)) == {"operation": f"{OPERATIONS}/1", "alreadyAbsent": True}


def test_an_operation_ending_with_another_error_is_delete_failed(fakes: Fakes) -> None:
    fakes.source.operation_error = {"code": 13, "message": "internal"}

    with pytest.raises(PermanentError) as error:
        delete(fakes.job(Action.DELETE))

    assert error.value.code is Code.DELETE_FAILED
    assert error.value.message == (
        "the delete operation finished with an error; the series was not reported deleted"
    )
    assert error.value.details == {"operation": f"{OPERATIONS}/1", "operationErrorCode": 13}


def test_a_follow_up_waits_on_its_operation_and_never_deletes_again(fakes: Fakes) -> None:
    operation = f"{OPERATIONS}/7"
    fakes.source.operations[operation] = 1
    for uid in fakes.source.uids():
        fakes.source.delete_instance(fakes.source.series, uid)

    result = delete(fakes.job(Action.DELETE, operation=operation, continuation=1))

    assert result == {"operation": operation, "alreadyAbsent": False, "deleted": True}
    assert fakes.source.calls["delete_series"] == 0


def test_an_unknown_operation_is_delete_failed(fakes: Fakes) -> None:
    operation = f"{OPERATIONS}/99"

    with pytest.raises(PermanentError) as error:
        delete(fakes.job(Action.DELETE, operation=operation, continuation=1))

    assert error.value.code is Code.DELETE_FAILED
    assert error.value.message == (
        "the delete operation is not found (unknown or expired); the series was not reported deleted"
    )
    assert error.value.details == {"operation": operation}
    assert fakes.source.calls["delete_series"] == 0


def test_an_operation_on_a_series_without_a_store_is_an_invalid_request() -> None:
    fakes = Fakes(source=FakeSource(SeriesRef.parse(f"studies/{sop(0)}/series/{sop(1)}"), healthcare=False))

    with pytest.raises(PermanentError) as error:
        delete(fakes.job(Action.DELETE, operation=f"{OPERATIONS}/1", continuation=1))

    assert error.value.code is Code.INVALID_REQUEST
    assert error.value.message == "only a Healthcare API series has operations"


def test_near_the_deadline_the_wait_is_handed_on_with_the_operation(fakes: Fakes) -> None:
    job = fakes.job(Action.DELETE, remaining=4.0)

    outcome = delete(job)

    assert outcome == HandedOn("no time left to wait on the operation")
    assert fakes.source.calls["get_operation"] == 0
    follow_up = fakes.follow_up(job)
    assert follow_up.request.operation == f"{OPERATIONS}/1"
    assert follow_up.request.continuation == 1
    assert delete(follow_up) == {"operation": f"{OPERATIONS}/1", "alreadyAbsent": False, "deleted": True}
    assert fakes.source.calls["delete_series"] == 1  # the follow-up only waited


def test_an_operation_still_running_at_the_deadline_is_handed_on(fakes: Fakes) -> None:
    fakes.source.operation_polls = 1000

    outcome = delete(fakes.job(Action.DELETE, remaining=6.0))  # one second to poll

    assert outcome == HandedOn("operation still running")
    assert [p.json()["operation"] for p in fakes.publisher.to(REQUEST_TOPIC)] == [f"{OPERATIONS}/1"]


def test_polling_that_fails_is_handed_on_rather_than_deleting_again(fakes: Fakes) -> None:
    fakes.source.refuse("get_operation", RetryableError("503"))

    outcome = delete(fakes.job(Action.DELETE))

    assert outcome == HandedOn("operation polling failed")
    assert fakes.publisher.to(REQUEST_TOPIC)[0].json()["operation"] == f"{OPERATIONS}/1"
    assert fakes.source.calls["delete_series"] == 1


def test_an_instance_stored_during_the_delete_is_series_not_empty(fakes: Fakes) -> None:
    fakes.source.store_at("get_operation", 1, sop(9))

    with pytest.raises(PermanentError) as error:
        delete(fakes.job(Action.DELETE))

    assert error.value.code is Code.SERIES_NOT_EMPTY
    assert error.value.message == "the series is not empty after the delete; it was not reported deleted"
    assert error.value.details == {"operation": f"{OPERATIONS}/1", "remainingCount": 1}
    assert fakes.source.uids() == [sop(9)]


def test_a_series_not_empty_near_the_deadline_is_handed_on_to_wait_again(fakes: Fakes) -> None:
    fakes.source.store_at("get_operation", 1, sop(9))

    outcome = delete(fakes.job(Action.DELETE, remaining=8.0))

    assert outcome == HandedOn("the series is not empty yet")
    assert fakes.publisher.to(REQUEST_TOPIC)[0].json()["operation"] == f"{OPERATIONS}/1"


def test_a_search_lagging_behind_the_delete_is_waited_out(fakes: Fakes) -> None:
    fakes.source.search_lag = 2
    settings = replace(ACTION_SETTINGS, search_settle_seconds=30.0)

    result = delete(fakes.job(Action.DELETE, settings=settings))

    assert result == {"operation": f"{OPERATIONS}/1", "alreadyAbsent": False, "deleted": True}
    assert fakes.clock.slept == [0.25, 0.5]


def test_a_search_that_still_lags_after_settling_is_not_reported_deleted(fakes: Fakes) -> None:
    fakes.source.search_lag = 1000
    settings = replace(ACTION_SETTINGS, search_settle_seconds=5.0)

    with pytest.raises(PermanentError) as error:
        delete(fakes.job(Action.DELETE, settings=settings))

    assert error.value.code is Code.SERIES_NOT_EMPTY
    assert error.value.details["remainingCount"] == 3
