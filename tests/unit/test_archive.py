"""Action `archive` (worker/archive.py) against the fakes: copy, check, then delete exactly what was
checked, instance by instance; rounds for instances stored meanwhile; never a series-wide delete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest

import worker.search
from tests.unit.fakes import ACTION_SETTINGS, BUCKET, REQUEST_TOPIC, Fakes, FakeSource, sop
from worker.archive import archive
from worker.errors import Code, PermanentError
from worker.job import HandedOn
from worker.models import DicomStore, GcsLocation, SeriesRef, StoredObject
from worker.request import Action, Mode, RetrieveOptions
from worker.retrieve import copy_series

INSTANCES_MODE = RetrieveOptions(mode=Mode.INSTANCES)  # tests of RetrieveInstance's faults


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    made = Fakes()
    monkeypatch.setattr(worker.search, "time", made.clock)
    yield made
    assert made.source.calls["delete_series"] == 0  # archive never deletes a series


def assert_every_deleted_instance_has_its_copy(fakes: Fakes, originals: dict[str, bytes]) -> None:
    for uid, data in originals.items():
        if uid not in fakes.source.uids():
            assert fakes.bucket.data(BUCKET, fakes.folder().instance(uid)) == data, uid


def test_archive_copies_checks_and_deletes_each_instance(fakes: Fakes) -> None:
    originals = fakes.source.add_series(3)

    result = archive(fakes.job(Action.ARCHIVE))

    assert result == {
        "instanceCount": 3,
        "bytes": sum(len(data) for data in originals.values()),
        "destination": fakes.folder().uri,
        "manifestUri": f"gs://{BUCKET}/{fakes.folder().record('manifest.json')}",
        "uploadedCount": 3,
        "skippedCount": 0,
        "verified": True,
        "deletedCount": 3,
        "alreadyAbsent": False,
        "deleted": True,
        "rounds": 1,
        "mode": "series",  # auto: the series metrics' average is small, one RetrieveSeries
    }
    assert fakes.source.uids() == []
    assert sorted(str(uid) for method, uid in fakes.source.log if method == "delete_instance") == sorted(
        originals
    )
    assert_every_deleted_instance_has_its_copy(fakes, originals)
    manifest = json.loads(fakes.bucket.data(BUCKET, fakes.folder().record("manifest.json")))
    assert [item["sopInstanceUID"] for item in manifest["instances"]] == sorted(originals)


def test_an_instance_stored_during_the_deletes_is_archived_in_a_second_round(fakes: Fakes) -> None:
    originals = fakes.source.add_series(3)
    originals[sop(4)] = fakes.source.store_at("delete_instance", 2, sop(4), number=4)

    result = archive(fakes.job(Action.ARCHIVE))

    assert isinstance(result, dict)
    assert (result["rounds"], result["instanceCount"], result["deletedCount"]) == (2, 4, 4)
    assert result["manifestUri"].endswith("/manifest.2.json")  # the second round's manifest lists all four
    assert fakes.source.uids() == []
    assert_every_deleted_instance_has_its_copy(fakes, originals)


def test_auto_archives_large_instances_one_request_each_and_the_late_ones_the_same_way(fakes: Fakes) -> None:
    """Mode auto chooses from the series metrics as retrieve does, and a later round (instances stored
    meanwhile) reads in the mode the first round chose: the event's `mode` holds for the whole delivery."""
    originals = fakes.source.add_series(3)
    fakes.source.metrics_bytes = 3 * 20_000_000  # as the Healthcare API reports them: 20 MB each
    originals[sop(4)] = fakes.source.store_at("delete_instance", 2, sop(4), number=4)

    result = archive(fakes.job(Action.ARCHIVE))

    assert isinstance(result, dict)
    assert (result["mode"], result["rounds"], result["instanceCount"]) == ("instances", 2, 4)
    assert (fakes.source.calls["retrieve_series"], fakes.source.calls["retrieve_instance"]) == (0, 4)
    assert_every_deleted_instance_has_its_copy(fakes, originals)


def test_an_instance_stored_during_the_copy_is_archived_too(fakes: Fakes) -> None:
    originals = fakes.source.add_series(2)
    originals[sop(3)] = fakes.source.store_at("retrieve_instance", 1, sop(3), number=3)

    result = archive(fakes.job(Action.ARCHIVE, options=INSTANCES_MODE))

    assert isinstance(result, dict)
    assert (result["rounds"], result["instanceCount"]) == (2, 3)
    assert_every_deleted_instance_has_its_copy(fakes, originals)


def test_instances_that_keep_arriving_are_series_not_empty_and_never_deleted_uncopied(fakes: Fakes) -> None:
    originals = fakes.source.add_series(2)
    for call in (2, 3, 4):  # before the search that ends each of the three rounds
        originals[sop(10 + call)] = fakes.source.store_at("search_instances", call, sop(10 + call))

    with pytest.raises(PermanentError) as error:
        archive(fakes.job(Action.ARCHIVE))

    assert error.value.code is Code.SERIES_NOT_EMPTY
    assert error.value.message == (
        "instances kept arriving: 4 were archived and deleted, 1 remain in the series and were not deleted"
    )
    assert error.value.details["archivedCount"] == 4
    assert error.value.details["remainingCount"] == 1
    assert fakes.source.uids() == [sop(14)]
    assert sop(14) not in [uid for method, uid in fakes.source.log if method == "delete_instance"]
    assert_every_deleted_instance_has_its_copy(fakes, originals)


def test_an_object_that_differs_from_the_source_is_verification_failed(fakes: Fakes) -> None:
    fakes.source.add_series(3)
    fakes.bucket.put(BUCKET, fakes.folder().instance(sop(2)), b"other bytes")

    with pytest.raises(PermanentError) as error:
        archive(fakes.job(Action.ARCHIVE))

    assert error.value.code is Code.VERIFICATION_FAILED
    assert error.value.details["differences"] == [{"sopInstanceUID": sop(2), "problem": "object_differs"}]
    assert fakes.source.calls["delete_instance"] == 0
    assert len(fakes.source.uids()) == 3


class ChangingBucket:
    """What happens to the bucket between the copy and the check (the second listing)."""

    def __init__(self, fakes: Fakes, change: str) -> None:
        self.fakes = fakes
        self.change = change
        self.listings = 0
        self.original_list = fakes.bucket.list

    def list(self, location: GcsLocation) -> Iterator[StoredObject]:
        self.listings += 1
        if self.listings == 2:
            name = self.fakes.folder().instance(sop(1))
            if self.change == "remove":
                self.fakes.bucket.remove(BUCKET, name)
            else:
                self.fakes.bucket.replace(BUCKET, name, b"changed")
        return self.original_list(location)


@pytest.mark.parametrize(("change", "problem"), [("remove", "object_missing"), ("replace", "object_differs")])
def test_an_object_missing_or_changed_at_the_check_is_verification_failed(
    fakes: Fakes, monkeypatch: pytest.MonkeyPatch, change: str, problem: str
) -> None:
    fakes.source.add_series(2)
    monkeypatch.setattr(fakes.bucket, "list", ChangingBucket(fakes, change).list)

    with pytest.raises(PermanentError) as error:
        archive(fakes.job(Action.ARCHIVE))

    assert error.value.code is Code.VERIFICATION_FAILED
    assert error.value.message == "1 differences between the source and the copy; nothing was deleted"
    assert error.value.details == {
        "differenceCount": 1,
        "differences": [{"sopInstanceUID": sop(1), "problem": problem}],
    }
    assert fakes.source.calls["delete_instance"] == 0


def test_a_lost_delete_answer_is_retried_and_not_counted(fakes: Fakes) -> None:
    fakes.source.add_series(3)
    fakes.source.lose_answer("delete_instance", 1)

    result = archive(fakes.job(Action.ARCHIVE, settings=replace(ACTION_SETTINGS, concurrency=1)))

    assert isinstance(result, dict)
    assert (result["instanceCount"], result["deletedCount"], result["deleted"]) == (3, 2, True)
    assert fakes.source.calls["delete_instance"] == 4  # the lost one was asked again, and was absent


# -- deliveries that find the series gone, and continuations ----------------------------------------


def test_a_redelivery_after_the_archive_reports_the_manifest_it_finds(fakes: Fakes) -> None:
    originals = fakes.source.add_series(3)
    first = archive(fakes.job(Action.ARCHIVE))
    assert isinstance(first, dict)

    again = archive(fakes.job(Action.ARCHIVE))

    assert again == {
        "instanceCount": 3,
        "bytes": sum(len(data) for data in originals.values()),
        "destination": fakes.folder().uri,
        "manifestUri": first["manifestUri"],
        "alreadyAbsent": True,
    }


def test_an_absent_store_or_study_with_a_manifest_is_already_absent(fakes: Fakes) -> None:
    fakes.source.add_series(1)
    archive(fakes.job(Action.ARCHIVE))
    fakes.source.absent = True

    result = archive(fakes.job(Action.ARCHIVE))

    assert isinstance(result, dict)
    assert result["alreadyAbsent"] is True


def test_a_manifest_of_the_same_series_in_another_store_is_not_taken_for_an_archive(fakes: Fakes) -> None:
    fakes.source.add_series(2)
    archive(fakes.job(Action.ARCHIVE))
    other_store = DicomStore("my-project", "us-central1", "my-dataset", "other-store")
    series = fakes.source.series
    other = Fakes(
        source=FakeSource(SeriesRef(other_store, series.study_uid, series.series_uid)), bucket=fakes.bucket
    )

    with pytest.raises(PermanentError) as error:
        archive(other.job(Action.ARCHIVE))

    assert error.value.code is Code.SERIES_NOT_FOUND
    assert error.value.message == "the series has no instances in the source"


def test_a_series_without_instances_or_manifest_is_series_not_found(fakes: Fakes) -> None:
    fakes.bucket.put(BUCKET, fakes.folder().record("manifest.json"), b"not json")

    with pytest.raises(PermanentError) as error:
        archive(fakes.job(Action.ARCHIVE))

    assert error.value.code is Code.SERIES_NOT_FOUND


def test_the_deadline_during_the_deletes_hands_the_rest_on(fakes: Fakes) -> None:
    originals = fakes.source.add_series(3)
    fakes.source.at("delete_instance", 1, lambda: fakes.clock.advance(120.0))
    job = fakes.job(Action.ARCHIVE, settings=replace(ACTION_SETTINGS, concurrency=1))

    outcome = archive(job)

    assert outcome == HandedOn("deadline during the deletes")
    assert len(fakes.source.uids()) == 2
    follow_up = fakes.follow_up(job)
    assert follow_up.request.continuation == 1
    read_before = fakes.source.calls["retrieve_instance"]

    result = archive(follow_up)

    assert isinstance(result, dict)
    # The event and the manifest speak for the whole request: the instance the first delivery deleted is
    # in them (it is in the first delivery's manifest of this request and its object is in the bucket);
    # deletedCount counts this delivery's deletes.
    assert (result["instanceCount"], result["deletedCount"], result["deleted"]) == (3, 2, True)
    assert result["bytes"] == sum(len(data) for data in originals.values())
    assert result["skippedCount"] == 3
    manifest = json.loads(fakes.bucket.data(BUCKET, result["manifestUri"].split(f"gs://{BUCKET}/", 1)[1]))
    assert [item["sopInstanceUID"] for item in manifest["instances"]] == sorted(originals)
    # The objects the first delivery of this request wrote are trusted: the source is not read again.
    assert fakes.source.calls["retrieve_instance"] == read_before
    assert fakes.source.uids() == []
    assert_every_deleted_instance_has_its_copy(fakes, originals)


def test_an_earlier_requests_manifest_is_not_taken_for_this_ones(fakes: Fakes) -> None:
    """Instances gone from the source that another request's manifest lists are not claimed archived by
    this request."""
    originals = fakes.source.add_series(3)
    copied = copy_series(fakes.job(Action.RETRIEVE, request_id="an-earlier-retrieve"))
    assert isinstance(copied, dict)
    gone = sorted(originals)[0]
    del fakes.source.instances[gone]  # deleted by someone else since

    result = archive(fakes.job(Action.ARCHIVE, request_id="the-archive"))

    assert isinstance(result, dict)
    assert (result["instanceCount"], result["deletedCount"]) == (2, 2)


def test_objects_written_by_another_request_are_checked_against_the_source(fakes: Fakes) -> None:
    originals = fakes.source.add_series(3)
    copied = copy_series(fakes.job(Action.RETRIEVE, request_id="an-earlier-retrieve", options=INSTANCES_MODE))
    assert isinstance(copied, dict)
    assert fakes.source.calls["retrieve_instance"] == 3

    result = archive(fakes.job(Action.ARCHIVE, request_id="the-archive", options=INSTANCES_MODE))

    assert isinstance(result, dict)
    assert (result["uploadedCount"], result["skippedCount"], result["deleted"]) == (0, 3, True)
    assert fakes.source.calls["retrieve_instance"] == 6  # each object compared with the source again
    assert_every_deleted_instance_has_its_copy(fakes, originals)


def test_an_archive_handed_on_publishes_a_signed_follow_up(fakes: Fakes) -> None:
    fakes.source.add_series(2)
    fakes.source.at("delete_instance", 1, lambda: fakes.clock.advance(120.0))

    archive(fakes.job(Action.ARCHIVE, settings=replace(ACTION_SETTINGS, concurrency=1)))

    (handed,) = fakes.publisher.to(REQUEST_TOPIC)
    assert handed.attributes == {"action": "archive", "requestId": "req-1", "continuation": "1"}
    assert handed.json()["signature"].startswith("v1:worker-1:")
