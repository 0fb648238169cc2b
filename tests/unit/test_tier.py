"""Action `tier` (worker/tier.py) against the fakes: a create-only filter file naming the series,
setBlobStorageSettings with it, the operation waited on, then every instance's storage class checked."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

import worker.search
from tests.unit.fakes import (
    ACTION_SETTINGS,
    BUCKET,
    COMPLETION_TOPIC,
    DESTINATION,
    DICOMWEB_SERIES_PATH,
    OPERATIONS,
    SERIES_PATH,
    Fakes,
    FakeSource,
    message,
)
from worker.delivery import Worker
from worker.errors import Code, PermanentError
from worker.job import HandedOn, Job
from worker.layout import SeriesFolder
from worker.models import SeriesRef
from worker.request import Action, RetrieveOptions, StorageClass, parse_request
from worker.tier import tier, write_filter
from worker.wiring import actions

ARCHIVE = RetrieveOptions(storage_class=StorageClass.ARCHIVE)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    made = Fakes()
    monkeypatch.setattr(worker.search, "time", made.clock)
    yield made
    assert made.source.calls["delete_instance"] + made.source.calls["delete_series"] == 0


def tier_job(fakes: Fakes, *, remaining: float = 60.0, options: RetrieveOptions = ARCHIVE) -> Job:
    return fakes.job(Action.TIER, destination=DESTINATION, options=options, remaining=remaining)


def filter_name(fakes: Fakes, suffix: str = "") -> str:
    return SeriesFolder(DESTINATION, fakes.source.series).record(f"tier-ARCHIVE{suffix}.txt")


def test_tier_writes_the_filter_sets_the_class_and_checks_every_instance(fakes: Fakes) -> None:
    fakes.source.add_series(3)
    fakes.source.operation_polls = 2

    result = tier(tier_job(fakes))

    assert isinstance(result, dict)
    operation = result.pop("operation")
    assert operation.startswith("projects/")
    assert result == {"storageClass": "ARCHIVE", "instanceCount": 3, "inClassCount": 3, "verified": True}
    name = filter_name(fakes)
    assert fakes.source.tiers == [("ARCHIVE", DESTINATION.uri(name))]
    series = fakes.source.series
    assert (
        fakes.bucket.data(BUCKET, name)
        == f"/studies/{series.study_uid}/series/{series.series_uid}\n".encode()
    )
    assert fakes.source.calls["instance_storage_class"] == 3
    assert fakes.source.calls["get_operation"] == 2


def test_instances_not_in_the_class_are_counted_and_not_verified(fakes: Fakes) -> None:
    fakes.source.add_series(3)
    fakes.source.tier_applies = False
    fakes.source.storage_classes[sorted(fakes.source.instances)[0]] = "ARCHIVE"

    result = tier(tier_job(fakes))

    assert isinstance(result, dict)
    assert (result["instanceCount"], result["inClassCount"], result["verified"]) == (3, 1, False)


def test_an_instance_gone_before_its_check_is_not_in_the_class(fakes: Fakes) -> None:
    fakes.source.add_series(2)
    gone = sorted(fakes.source.instances)[0]
    fakes.source.at("instance_storage_class", 1, lambda: fakes.source.instances.pop(gone))

    result = tier(tier_job(fakes))

    assert isinstance(result, dict)
    assert (result["instanceCount"], result["inClassCount"], result["verified"]) == (2, 1, False)


def test_an_operation_that_ends_with_an_error_is_tier_failed(fakes: Fakes) -> None:
    fakes.source.add_series(2)
    fakes.source.operation_error = {"code": 9, "message": "failed precondition"}

    with pytest.raises(PermanentError) as caught:
        tier(tier_job(fakes))

    assert caught.value.code is Code.TIER_FAILED
    assert caught.value.details["operationErrorCode"] == 9
    assert fakes.source.calls["instance_storage_class"] == 0


def test_an_unknown_operation_is_tier_failed(fakes: Fakes) -> None:
    fakes.source.add_series(1)
    job = tier_job(fakes)
    follow = replace(job, request=replace(job.request, operation=f"{OPERATIONS}/9"))

    with pytest.raises(PermanentError) as caught:
        tier(follow)

    assert caught.value.code is Code.TIER_FAILED
    assert fakes.source.tiers == []


def test_a_slow_operation_is_waited_on_by_a_follow_up_that_never_sets_the_class_again(fakes: Fakes) -> None:
    fakes.source.add_series(2)
    fakes.source.operation_polls = 10_000
    job = tier_job(fakes, remaining=6.0)

    assert isinstance(tier(job), HandedOn)

    follow_up = fakes.follow_up(job)
    assert follow_up.request.operation is not None
    assert follow_up.request.options.storage_class is StorageClass.ARCHIVE
    fakes.source.operations[follow_up.request.operation] = 1
    result = tier(follow_up)
    assert isinstance(result, dict)
    assert result["verified"] is True and result["operation"] == follow_up.request.operation
    assert len(fakes.source.tiers) == 1


def test_a_deadline_during_the_checks_hands_on_the_finished_operation(fakes: Fakes) -> None:
    fakes.source.add_series(5)
    settings = replace(ACTION_SETTINGS, concurrency=1)
    job = replace(tier_job(fakes), settings=settings)
    fakes.source.at("instance_storage_class", 1, lambda: fakes.clock.advance(120))

    assert isinstance(tier(job), HandedOn)

    follow_up = fakes.follow_up(job)
    assert follow_up.request.operation is not None  # the follow-up checks; it starts nothing
    result = tier(follow_up)
    assert isinstance(result, dict) and result["verified"] is True
    assert len(fakes.source.tiers) == 1


def test_the_filter_file_is_never_replaced(fakes: Fakes) -> None:
    fakes.source.add_series(1)
    fakes.bucket.put(BUCKET, filter_name(fakes), b"/studies/1.2/series/3.4\n")

    result = tier(tier_job(fakes))

    assert isinstance(result, dict) and result["verified"] is True
    assert fakes.bucket.data(BUCKET, filter_name(fakes)) == b"/studies/1.2/series/3.4\n"
    assert fakes.source.tiers == [("ARCHIVE", DESTINATION.uri(filter_name(fakes, ".2")))]


def test_a_filter_file_with_these_bytes_is_used_as_it_is(fakes: Fakes) -> None:
    fakes.source.add_series(1)
    first = write_filter(
        tier_job(fakes), SeriesFolder(DESTINATION, fakes.source.series), StorageClass.ARCHIVE
    )

    tier(tier_job(fakes))

    assert fakes.source.tiers == [("ARCHIVE", first)]
    assert fakes.bucket.uploads == [filter_name(fakes)]


def test_a_filter_written_meanwhile_by_another_delivery_is_compared(fakes: Fakes) -> None:
    fakes.source.add_series(1)
    job = tier_job(fakes)
    folder = SeriesFolder(DESTINATION, fakes.source.series)
    original_stat = fakes.bucket.stat
    calls = []

    def racing_stat(bucket: str, name: str) -> object:
        calls.append(name)
        if len(calls) == 1:  # free when looked at, taken by the time of the upload
            fakes.bucket.put(bucket, name, b"/studies/9/series/9\n")
            return None
        return original_stat(bucket, name)

    fakes.bucket.stat = racing_stat  # type: ignore[method-assign,assignment]

    uri = write_filter(job, folder, StorageClass.ARCHIVE)

    assert uri == DESTINATION.uri(filter_name(fakes, ".2"))


def test_every_filter_name_taken_is_a_destination_conflict(fakes: Fakes) -> None:
    fakes.source.add_series(1)
    for version in range(1, 21):
        fakes.bucket.put(BUCKET, filter_name(fakes, "" if version == 1 else f".{version}"), b"other\n")

    with pytest.raises(PermanentError) as caught:
        tier(tier_job(fakes))

    assert caught.value.code is Code.DESTINATION_CONFLICT
    assert fakes.source.tiers == []


def test_an_empty_series_is_series_not_found(fakes: Fakes) -> None:
    with pytest.raises(PermanentError) as caught:
        tier(tier_job(fakes))

    assert caught.value.code is Code.SERIES_NOT_FOUND
    assert fakes.source.tiers == [] and fakes.bucket.uploads == []


def test_tier_on_a_dicomweb_server_is_not_supported() -> None:
    fakes = Fakes(source=FakeSource(SeriesRef.parse(DICOMWEB_SERIES_PATH), healthcare=False))
    fakes.source.add_series(1)

    with pytest.raises(PermanentError) as caught:
        tier(tier_job(fakes))

    assert caught.value.code is Code.TIER_NOT_SUPPORTED
    assert fakes.bucket.uploads == []


def test_tier_needs_a_storage_class(fakes: Fakes) -> None:
    fakes.source.add_series(1)

    with pytest.raises(PermanentError) as caught:
        tier(tier_job(fakes, options=RetrieveOptions()))

    assert caught.value.code is Code.INVALID_REQUEST


def test_the_tier_event_through_the_worker(fakes: Fakes) -> None:
    fakes.source.add_series(2)
    body = {
        "action": "tier",
        "series": SERIES_PATH,
        "destination": DESTINATION.uri(),
        "options": {"storageClass": "COLDLINE"},
    }

    event = Worker(ACTION_SETTINGS, fakes.ports, actions()).handle(message(body))

    assert event is not None and event.status == "succeeded"
    (published,) = fakes.publisher.to(COMPLETION_TOPIC)  # validated against the schema on the way
    data = published.json()
    assert (data["storageClass"], data["inClassCount"], data["verified"]) == ("COLDLINE", 2, True)
    assert published.attributes["action"] == "tier"


def test_a_failed_operation_is_a_failed_event_through_the_worker(fakes: Fakes) -> None:
    fakes.source.add_series(1)
    fakes.source.operation_error = {"code": 13}
    body = {"action": "tier", "series": SERIES_PATH, "options": {"storageClass": "ARCHIVE"}}

    event = Worker(ACTION_SETTINGS, fakes.ports, actions()).handle(message(body))

    assert event is not None and event.error is not None
    assert event.error.code is Code.TIER_FAILED


@pytest.mark.parametrize(
    ("options", "wanted"),
    [
        (None, "options.storageClass is required for tier"),
        ({}, "options.storageClass is required for tier"),
        (
            {"storageClass": "GLACIER"},
            "options.storageClass must be one of STANDARD, NEARLINE, COLDLINE, ARCHIVE",
        ),
        ({"storageClass": 3}, "options.storageClass must be one of STANDARD, NEARLINE, COLDLINE, ARCHIVE"),
        (
            {"method": "import", "storageClass": "ARCHIVE"},
            "unknown options for tier: 1; accepted: storageClass",
        ),
    ],
)
def test_tier_requests_are_checked(options: object, wanted: str) -> None:
    body = {"action": "tier", "series": SERIES_PATH, "options": options}

    with pytest.raises(PermanentError) as caught:
        parse_request(message({k: v for k, v in body.items() if v is not None}))

    assert caught.value.code is Code.INVALID_REQUEST
    assert caught.value.message == wanted


def test_a_tier_request_parses_with_its_class() -> None:
    body = {"action": "tier", "series": SERIES_PATH, "options": {"storageClass": "NEARLINE"}}

    request = parse_request(message(body))

    assert request.options.storage_class is StorageClass.NEARLINE
    assert request.as_json()["options"] == {"storageClass": "NEARLINE"}
