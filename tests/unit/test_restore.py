"""Action `restore` (worker/restore.py) against the fakes: STOW-RS of every archived instance the store
lacks, streamed from its object; instances already there compared, never overwritten; then a read-back
of the round trip; `verified: true` only when it is byte-identical."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

import worker.restore
import worker.search
from tests.unit.fakes import (
    ACTION_SETTINGS,
    BUCKET,
    COMPLETION_TOPIC,
    DESTINATION,
    SERIES_PATH,
    Fakes,
    message,
    sop,
)
from worker.delivery import Worker
from worker.errors import Code, PermanentError, RetryableError, SourceGone
from worker.job import HandedOn
from worker.models import Instance, SeriesRef
from worker.request import Action, RestoreMethod, RetrieveOptions
from worker.restore import restore
from worker.retrieve import copy_series
from worker.wiring import actions

RESTORE_SETTINGS = replace(ACTION_SETTINGS, restore_enabled=True)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    made = Fakes()
    monkeypatch.setattr(worker.search, "time", made.clock)
    monkeypatch.setattr(worker.restore, "time", made.clock)
    yield made
    assert made.source.calls["delete_instance"] + made.source.calls["delete_series"] == 0


def archived(fakes: Fakes, count: int) -> dict[str, bytes]:
    """A series copied into the destination (objects and manifest), then gone from the store."""
    originals = fakes.source.add_series(count)
    copy_series(fakes.job(Action.RETRIEVE, destination=DESTINATION))
    fakes.source.instances.clear()
    fakes.source.calls.clear()  # calls are counted from here
    fakes.bucket.uploads.clear()
    return originals


def run(fakes: Fakes) -> dict[str, object]:
    result = restore(fakes.job(Action.RESTORE, destination=DESTINATION))
    assert isinstance(result, dict)
    return result


def store_bytes(fakes: Fakes) -> dict[str, bytes]:
    return {uid: body for uid, (_, body) in fakes.source.instances.items()}


def test_restore_stores_every_archived_instance_and_proves_the_round_trip(fakes: Fakes) -> None:
    originals = archived(fakes, 3)

    result = run(fakes)

    assert result == {
        "instanceCount": 3,
        "restoredCount": 3,
        "skippedCount": 0,
        "bytes": sum(len(data) for data in originals.values()),
        "verified": True,
        "destination": fakes.folder().uri,
        "manifestUri": f"gs://{BUCKET}/{fakes.folder().record('manifest.json')}",
    }
    assert store_bytes(fakes) == originals
    assert sorted(fakes.source.stored) == sorted(originals)
    assert fakes.source.calls["retrieve_instance"] == 3  # each stored instance read back once
    assert fakes.bucket.uploads == []  # restore writes nothing to the bucket


def test_a_second_delivery_of_the_same_restore_changes_nothing(fakes: Fakes) -> None:
    originals = archived(fakes, 3)
    run(fakes)
    fakes.source.stored.clear()

    again = run(fakes)

    assert (again["restoredCount"], again["skippedCount"], again["verified"]) == (0, 3, True)
    assert fakes.source.calls["store_instance"] == 3  # none in the second delivery
    assert store_bytes(fakes) == originals


def test_instances_already_in_the_store_with_the_archives_bytes_are_skipped(fakes: Fakes) -> None:
    originals = archived(fakes, 3)
    fakes.source.add(sop(2), originals[sop(2)], number=2)

    result = run(fakes)

    assert (result["restoredCount"], result["skippedCount"]) == (2, 1)
    assert sorted(fakes.source.stored) == [sop(1), sop(3)]
    assert store_bytes(fakes) == originals


def test_an_instance_in_the_store_with_other_bytes_is_a_conflict_and_never_overwritten(fakes: Fakes) -> None:
    archived(fakes, 3)
    fakes.source.add(sop(2), b"other bytes")

    with pytest.raises(PermanentError) as error:
        run(fakes)

    assert error.value.code is Code.RESTORE_CONFLICT
    assert error.value.details["sopInstanceUID"] == sop(2)
    assert error.value.details["object"] == f"gs://{BUCKET}/{fakes.folder().instance(sop(2))}"
    assert store_bytes(fakes)[sop(2)] == b"other bytes"


@pytest.mark.parametrize(("same", "code"), [(True, None), (False, Code.RESTORE_CONFLICT)])
def test_an_instance_stored_between_the_search_and_its_stow_is_compared(
    fakes: Fakes, same: bool, code: Code | None
) -> None:
    originals = archived(fakes, 2)
    body = originals[sop(1)] if same else b"someone else's instance"
    fakes.source.at("store_instance", 1, lambda: fakes.source.add(sop(1), body))

    if code is None:
        result = run(fakes)
        assert (result["restoredCount"], result["skippedCount"]) == (1, 1)
    else:
        with pytest.raises(PermanentError) as error:
            run(fakes)
        assert error.value.code is code
    assert store_bytes(fakes)[sop(1)] == body


def test_every_manifest_of_the_series_counts_not_only_the_newest(fakes: Fakes) -> None:
    # An archive redelivered part-way writes one manifest per delivery, each listing what it handled.
    originals = fakes.source.add_series(3)
    copy_series(fakes.job(Action.RETRIEVE, destination=DESTINATION))
    fakes.source.instances.pop(sop(1))
    fakes.source.instances.pop(sop(2))
    later = copy_series(fakes.job(Action.RETRIEVE, destination=DESTINATION, request_id="req-2"))
    assert isinstance(later, dict) and later["manifestUri"].endswith("/manifest.2.json")
    fakes.source.instances.clear()

    result = run(fakes)

    assert (result["instanceCount"], result["restoredCount"]) == (3, 3)
    assert result["manifestUri"] == later["manifestUri"]
    assert store_bytes(fakes) == originals


def test_without_a_manifest_the_folders_dcm_objects_are_restored(fakes: Fakes) -> None:
    bodies = {sop(n): fakes.source.add(sop(n), number=n) for n in (1, 2)}
    fakes.source.instances.clear()
    for uid, body in bodies.items():
        fakes.bucket.put(BUCKET, fakes.folder().instance(uid), body)
    fakes.bucket.put(BUCKET, fakes.folder().record("notes.txt"), b"not an instance")

    result = run(fakes)

    assert "manifestUri" not in result
    assert (result["instanceCount"], result["restoredCount"]) == (2, 2)
    assert store_bytes(fakes) == bodies


@pytest.mark.parametrize("damage", ["object_differs", "object_missing"])
def test_an_archive_that_does_not_match_its_manifest_restores_nothing(fakes: Fakes, damage: str) -> None:
    archived(fakes, 3)
    name = fakes.folder().instance(sop(2))
    if damage == "object_differs":
        fakes.bucket.replace(BUCKET, name, b"changed")
    else:
        fakes.bucket.remove(BUCKET, name)

    with pytest.raises(PermanentError) as error:
        run(fakes)

    assert error.value.code is Code.VERIFICATION_FAILED
    assert error.value.message.endswith("nothing was restored")
    assert error.value.details["differences"] == [{"sopInstanceUID": sop(2), "problem": damage}]
    assert fakes.source.calls["store_instance"] == 0


def test_no_archive_of_the_series_is_series_not_found(fakes: Fakes) -> None:
    with pytest.raises(PermanentError) as error:
        run(fakes)

    assert error.value.code is Code.SERIES_NOT_FOUND
    assert fakes.source.calls["store_instance"] == 0


def test_a_read_back_that_differs_is_verification_failed(fakes: Fakes) -> None:
    archived(fakes, 2)
    # the store keeps other bytes than it was sent (the first read-back is the verification's)
    fakes.source.at("retrieve_instance", 1, lambda: fakes.source.add(sop(1), b"transcoded"))

    with pytest.raises(PermanentError) as error:
        run(fakes)

    assert error.value.code is Code.VERIFICATION_FAILED
    assert error.value.details["differences"] == [{"sopInstanceUID": sop(1), "problem": "instance_differs"}]


def test_an_instance_the_search_after_the_restore_lacks_is_not_in_store(fakes: Fakes) -> None:
    archived(fakes, 2)
    fakes.source.at("search_instances", 2, lambda: fakes.source.instances.pop(sop(2)))

    with pytest.raises(PermanentError) as error:
        run(fakes)

    assert error.value.code is Code.VERIFICATION_FAILED
    assert error.value.details["differences"] == [{"sopInstanceUID": sop(2), "problem": "not_in_store"}]


def test_a_search_lagging_behind_the_stows_is_searched_again(fakes: Fakes) -> None:
    archived(fakes, 2)
    hidden = {"searches": 0}
    real_search = fakes.source.search_instances

    def lagging(series: SeriesRef, page_size: int) -> list[Instance]:
        hidden["searches"] += 1
        found = real_search(series, page_size)
        lags = hidden["searches"] == 2  # the search and the series metrics both lag
        fakes.source.metrics_offset = -1 if lags else 0
        return [i for i in found if i.sop_uid != sop(2)] if lags else found

    fakes.source.search_instances = lagging  # type: ignore[method-assign]
    settings = replace(RESTORE_SETTINGS, search_settle_seconds=10.0)

    result = restore(fakes.job(Action.RESTORE, destination=DESTINATION, settings=settings))

    assert isinstance(result, dict) and result["verified"] is True
    assert hidden["searches"] == 3  # the one before, the lagging one, the one that lists it
    assert fakes.clock.slept == [0.25]


def test_a_transient_stow_failure_is_retried_for_that_instance_alone(fakes: Fakes) -> None:
    originals = archived(fakes, 2)
    fakes.source.refuse("store_instance", RetryableError("503"), call=1)

    result = run(fakes)

    assert result["restoredCount"] == 2
    assert fakes.source.calls["store_instance"] == 3
    assert store_bytes(fakes) == originals


def test_a_lost_stow_answer_is_retried_and_finds_the_instance_present(fakes: Fakes) -> None:
    originals = archived(fakes, 1)
    fakes.source.lose_answer("store_instance", 1)

    result = run(fakes)

    assert (result["restoredCount"], result["skippedCount"], result["verified"]) == (0, 1, True)
    assert store_bytes(fakes) == originals


def test_bytes_read_other_than_archived_never_make_a_whole_stow(
    fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    originals = archived(fakes, 1)
    real_read = fakes.bucket.read
    reads = []

    def corrupt_first(bucket: str, name: str, generation: int) -> Iterator[bytes]:
        reads.append(name)
        for chunk in real_read(bucket, name, generation):
            yield chunk if len(reads) > 1 else chunk[:-1] + bytes([chunk[-1] ^ 1])

    monkeypatch.setattr(fakes.bucket, "read", corrupt_first)

    result = run(fakes)

    assert result["restoredCount"] == 1
    assert len(reads) == 2  # the corrupt stream broke off; the retry read the object again
    assert store_bytes(fakes) == originals


def test_instances_stream_from_the_bucket_in_chunks(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    archived(fakes, 1)
    fakes.bucket.read_chunk_bytes = 100
    real_store = fakes.source.store_instance
    chunk_sizes: list[int] = []

    def watching(
        series: object, sop_uid: str, chunks: Iterator[bytes], size: int, **kwargs: object
    ) -> object:
        def watched() -> Iterator[bytes]:
            for chunk in chunks:
                chunk_sizes.append(len(chunk))
                yield chunk

        return real_store(fakes.source.series, sop_uid, watched(), size)

    monkeypatch.setattr(fakes.source, "store_instance", watching)

    run(fakes)

    assert len(chunk_sizes) > 2 and max(chunk_sizes) <= 100  # never the whole object at once


def test_an_object_that_holds_another_instance_is_never_stored_as_this_one(fakes: Fakes) -> None:
    body = fakes.source.add(sop(2))
    fakes.source.instances.clear()
    fakes.bucket.put(BUCKET, fakes.folder().instance(sop(1)), body)  # no manifest: the object is the entry

    with pytest.raises(PermanentError) as error:
        run(fakes)

    assert error.value.code is Code.INSTANCE_UNREADABLE
    assert fakes.source.instances == {}


def test_a_store_that_answers_404_to_stow_is_series_not_found(fakes: Fakes) -> None:
    archived(fakes, 1)
    fakes.source.refuse("store_instance", SourceGone())

    with pytest.raises(PermanentError) as error:
        run(fakes)

    assert error.value.code is Code.SERIES_NOT_FOUND


def test_at_the_deadline_the_rest_is_handed_on_and_the_continuation_finishes(fakes: Fakes) -> None:
    originals = archived(fakes, 6)
    job = fakes.job(Action.RESTORE, destination=DESTINATION, remaining=0.0)

    handed = restore(job)

    assert isinstance(handed, HandedOn)
    assert fakes.source.calls["store_instance"] == ACTION_SETTINGS.concurrency  # the first batch only
    result = restore(fakes.follow_up(job))
    assert isinstance(result, dict)
    assert (result["restoredCount"], result["skippedCount"], result["verified"]) == (2, 4, True)
    assert store_bytes(fakes) == originals


def test_restore_needs_restore_enabled(fakes: Fakes) -> None:
    archived(fakes, 1)
    body = {"action": "restore", "series": SERIES_PATH, "destination": DESTINATION.uri()}

    event = Worker(ACTION_SETTINGS, fakes.ports, actions()).handle(message(body))

    assert event is not None and event.error is not None
    assert event.error.code is Code.RESTORE_DISABLED
    assert fakes.source.calls["store_instance"] == 0


def test_the_restore_event_through_the_worker(fakes: Fakes) -> None:
    archived(fakes, 2)
    body = {"action": "restore", "series": SERIES_PATH, "destination": DESTINATION.uri()}

    event = Worker(RESTORE_SETTINGS, fakes.ports, actions()).handle(message(body))

    assert event is not None and event.status == "succeeded"
    (published,) = fakes.publisher.to(COMPLETION_TOPIC)  # validated against the schema on the way
    assert published.json()["restoredCount"] == 2
    assert published.attributes["action"] == "restore"


def test_restore_obeys_allowed_dicom_stores(fakes: Fakes) -> None:
    archived(fakes, 1)
    settings = replace(
        RESTORE_SETTINGS, allowed_dicom_stores=("projects/other/locations/l/datasets/d/dicomStores/s",)
    )
    body = {"action": "restore", "series": SERIES_PATH, "destination": DESTINATION.uri()}

    event = Worker(settings, fakes.ports, actions()).handle(message(body))

    assert event is not None and event.error is not None
    assert event.error.code is Code.STORE_NOT_ALLOWED
    assert fakes.source.calls["store_instance"] == 0


# -- options.method import: dicomStores.import of the series folder, its operation, the same proof ---------


def run_import(fakes: Fakes) -> object:
    options = RetrieveOptions(method=RestoreMethod.IMPORT)
    return restore(fakes.job(Action.RESTORE, destination=DESTINATION, options=options))


def importing(fakes: Fakes, originals: dict[str, bytes]) -> None:
    """The fake store imports the archived instances when asked for the series folder's .dcm objects."""
    pattern = fakes.folder().destination.uri(f"{fakes.folder().name}/*.dcm")
    fakes.source.importable = lambda uri: dict(originals) if uri == pattern else {}


def test_restore_by_import_imports_the_series_folder_and_proves_the_round_trip(fakes: Fakes) -> None:
    originals = archived(fakes, 3)
    importing(fakes, originals)
    fakes.source.operation_polls = 2

    result = run_import(fakes)

    assert isinstance(result, dict)
    assert result["operation"].startswith("projects/")
    assert (result["instanceCount"], result["restoredCount"], result["skippedCount"]) == (3, 3, 0)
    assert result["verified"] is True
    assert fakes.source.imports == [fakes.folder().destination.uri(f"{fakes.folder().name}/*.dcm")]
    assert fakes.source.calls["store_instance"] == 0  # no STOW: the import stored them
    assert fakes.source.calls["retrieve_instance"] == 3  # each imported instance read back
    assert store_bytes(fakes) == originals


def test_restore_by_import_refuses_a_conflict_before_importing(fakes: Fakes) -> None:
    originals = archived(fakes, 2)
    importing(fakes, originals)
    first = sorted(originals)[0]
    fakes.source.add(first, originals[first] + b"other")

    with pytest.raises(PermanentError) as caught:
        run_import(fakes)

    assert caught.value.code is Code.RESTORE_CONFLICT
    assert fakes.source.imports == []


def test_an_import_that_fails_is_import_failed_and_not_verified(fakes: Fakes) -> None:
    originals = archived(fakes, 2)
    importing(fakes, originals)
    fakes.source.operation_error = {"code": 3, "message": "some files are not DICOM"}

    with pytest.raises(PermanentError) as caught:
        run_import(fakes)

    assert caught.value.code is Code.IMPORT_FAILED
    assert caught.value.details["operationErrorCode"] == 3


def test_a_slow_import_is_waited_on_by_a_follow_up_that_never_imports_again(fakes: Fakes) -> None:
    originals = archived(fakes, 2)
    importing(fakes, originals)
    fakes.source.operation_polls = 10_000
    job = fakes.job(
        Action.RESTORE,
        destination=DESTINATION,
        options=RetrieveOptions(method=RestoreMethod.IMPORT),
        settings=RESTORE_SETTINGS,
        remaining=6.0,
    )

    assert isinstance(restore(job), HandedOn)

    follow_up = fakes.follow_up(job)
    assert follow_up.request.operation is not None
    fakes.source.operations[follow_up.request.operation] = 1
    result = restore(follow_up)
    assert isinstance(result, dict)
    assert result["verified"] is True and result["operation"] == follow_up.request.operation
    assert "restoredCount" not in result  # the follow-up cannot tell which instances the import added
    assert len(fakes.source.imports) == 1


def test_import_needs_the_healthcare_api(fakes: Fakes) -> None:
    originals = archived(fakes, 1)
    importing(fakes, originals)
    job = fakes.job(
        Action.RESTORE, destination=DESTINATION, options=RetrieveOptions(method=RestoreMethod.IMPORT)
    )
    dicomweb_job = replace(
        job,
        request=replace(
            job.request, series=SeriesRef(None, job.request.series.study_uid, job.request.series.series_uid)
        ),
    )

    with pytest.raises(PermanentError) as caught:
        restore(dicomweb_job)

    assert caught.value.code is Code.INVALID_REQUEST
