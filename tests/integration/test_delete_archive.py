"""Delete and archive end to end: nothing is claimed deleted before the operation is done, nothing is
deleted unless enabled, allowed and verified."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydicom.uid import generate_uid

from infra.local.dicom_factory import Series, make_instance, stow
from infra.local.stack import Deployment, Stack
from tests.integration.helpers import EmulatorAdmin, read_bucket, series_path

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def archive_bucket(stack: Stack) -> str:
    return stack.create_bucket(f"archive-{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def deleter(stack: Stack, archive_bucket: str) -> Iterator[Deployment]:
    deployment = stack.deploy(
        {"DELETE_ENABLED": "true", "DEFAULT_DESTINATION": f"gs://{archive_bucket}/cold"}
    )
    yield deployment
    deployment.stop()


def deletes(emulator: EmulatorAdmin, series: Series) -> list[dict[str, Any]]:
    return [
        r
        for r in emulator.requests()
        if r["method"] == "DELETE" and r["path"].endswith(f"series/{series.series_uid}")
    ]


def test_delete_waits_for_the_operation(
    deleter: Deployment, dicom_store: str, emulator: EmulatorAdmin
) -> None:
    series, _ = emulator.stow_series(dicom_store, 3)
    emulator.config(operationDelay=1.5)
    emulator.clear_requests()
    started = time.monotonic()
    deleter.publish({"action": "delete", "series": series_path(dicom_store, series)})
    (event,) = deleter.pull_events(1, timeout=60)
    assert time.monotonic() - started >= 1.5
    assert event.data["status"] == "succeeded", event.data
    assert event.data["deleted"] is True
    assert event.data["alreadyAbsent"] is False
    dataset = dicom_store.rsplit("/dicomStores/", 1)[0]
    assert event.data["operation"].startswith(f"{dataset}/operations/")
    assert emulator.instance_count(dicom_store, series) == 0
    polls = [r for r in emulator.requests() if "/operations/" in r["path"]]
    assert len(polls) >= 2
    assert len(deletes(emulator, series)) == 1


@pytest.mark.parametrize("absent", ["404", "operation"])
def test_delete_of_an_absent_series(
    deleter: Deployment, dicom_store: str, emulator: EmulatorAdmin, absent: str
) -> None:
    emulator.config(absentDelete=absent)
    series = Series("1.2.3.4", f"1.2.3.4.{uuid.uuid4().int % 10**8}", ())
    deleter.publish({"action": "delete", "series": series_path(dicom_store, series)})
    (event,) = deleter.pull_events(1, timeout=60)
    assert event.data["status"] == "succeeded", event.data
    assert event.data["alreadyAbsent"] is True


def test_delete_delivered_twice(deleter: Deployment, dicom_store: str, emulator: EmulatorAdmin) -> None:
    series, _ = emulator.stow_series(dicom_store, 2)
    request = {"action": "delete", "series": series_path(dicom_store, series), "requestId": "twice"}
    deleter.publish(request)
    (first,) = deleter.pull_events(1, timeout=60)
    deleter.publish(request)
    (second,) = deleter.pull_events(1, timeout=60)
    assert (first.data["status"], first.data["alreadyAbsent"]) == ("succeeded", False)
    assert (second.data["status"], second.data["alreadyAbsent"]) == ("succeeded", True)


def test_an_operation_that_fails_is_never_reported_deleted(
    deleter: Deployment, dicom_store: str, emulator: EmulatorAdmin
) -> None:
    series, _ = emulator.stow_series(dicom_store, 3)
    emulator.faults(
        {"method": "DELETE", "path": series.series_uid, "operationError": {"code": 13, "message": "internal"}}
    )
    deleter.publish({"action": "delete", "series": series_path(dicom_store, series)})
    (event,) = deleter.pull_events(1, timeout=60)
    assert event.data["status"] == "failed"
    assert event.data["error"]["code"] == "delete_failed"
    assert event.data["error"]["details"]["operationErrorCode"] == 13
    assert "deleted" not in event.data
    assert emulator.instance_count(dicom_store, series) == 3


def test_an_operation_slower_than_the_deadline_is_handed_on(
    deploy: Callable[..., Deployment], dicom_store: str, emulator: EmulatorAdmin
) -> None:
    series, _ = emulator.stow_series(dicom_store, 2)
    deployment = deploy({"DELETE_ENABLED": "true", "DEADLINE_SECONDS": "6"})
    tap = deployment.tap_requests()
    emulator.config(operationDelay=8)
    emulator.clear_requests()
    deployment.publish({"action": "delete", "series": series_path(dicom_store, series), "requestId": "slow"})
    (event,) = deployment.pull_events(1, timeout=90)
    assert event.data["status"] == "succeeded", event.data
    assert event.data["deleted"] is True
    follow_ups = [m for m in tap.drain(1.0) if m.attributes.get("continuation")]
    assert follow_ups, "the wait must have been handed on"
    assert all(m.data["operation"] == event.data["operation"] for m in follow_ups)
    assert len(deletes(emulator, series)) == 1
    assert deployment.no_more_events(wait=2.0) == []
    assert emulator.instance_count(dicom_store, series) == 0


def test_faults_on_delete_and_polling_never_fake_success_nor_delete_twice(
    deleter: Deployment, dicom_store: str, emulator: EmulatorAdmin
) -> None:
    series, _ = emulator.stow_series(dicom_store, 2)
    emulator.config(operationDelay=1.0)
    emulator.clear_requests()
    emulator.faults(
        {"method": "DELETE", "path": series.series_uid, "status": 429, "retryAfter": 1, "times": 1},
        {"method": "DELETE", "path": series.series_uid, "status": 503, "times": 1},
        {"method": "GET", "path": "/operations/", "status": 503, "times": 2},
        {"method": "GET", "path": "/operations/", "dropAfterBytes": 5, "times": 2},
    )
    deleter.publish({"action": "delete", "series": series_path(dicom_store, series)})
    (event,) = deleter.pull_events(1, timeout=90)
    assert event.data["status"] == "succeeded", event.data
    assert event.data["deleted"] is True
    assert emulator.instance_count(dicom_store, series) == 0
    performed = [r for r in deletes(emulator, series) if not r["faulted"]]
    assert len(performed) == 1


def test_nothing_is_deleted_unless_enabled(
    deploy: Callable[..., Deployment], bucket: str, dicom_store: str, emulator: EmulatorAdmin
) -> None:
    series, _ = emulator.stow_series(dicom_store, 2)
    deployment = deploy({"DEFAULT_DESTINATION": f"gs://{bucket}/cold"})
    emulator.clear_requests()
    for action in ("delete", "archive"):
        deployment.publish({"action": action, "series": series_path(dicom_store, series)})
    events = deployment.pull_events(2, timeout=60)
    assert {e.data["error"]["code"] for e in events} == {"delete_disabled"}
    assert not [r for r in emulator.requests() if r["method"] == "DELETE"]
    assert emulator.instance_count(dicom_store, series) == 2


def test_stores_outside_the_allowed_ones_are_refused(
    deploy: Callable[..., Deployment], dicom_store: str, emulator: EmulatorAdmin
) -> None:
    series, _ = emulator.stow_series(dicom_store, 1)
    deployment = deploy(
        {
            "DELETE_ENABLED": "true",
            "ALLOWED_DICOM_STORES": "projects/other-project/locations/*/datasets/*/dicomStores/*",
        }
    )
    deployment.publish({"action": "delete", "series": series_path(dicom_store, series)})
    (event,) = deployment.pull_events(1, timeout=60)
    assert event.data["error"]["code"] == "store_not_allowed"
    assert emulator.instance_count(dicom_store, series) == 1


def test_archive_copies_verifies_then_deletes(
    deleter: Deployment, archive_bucket: str, dicom_store: str, emulator: EmulatorAdmin, storage_client: Any
) -> None:
    series, data = emulator.stow_series(dicom_store, 12, pixel_bytes=4096)
    deleter.publish({"action": "archive", "series": series_path(dicom_store, series)})
    (event,) = deleter.pull_events(1, timeout=90)
    assert event.data["status"] == "succeeded", event.data
    assert event.data["verified"] is True
    assert event.data["deleted"] is True
    assert event.data["instanceCount"] == 12
    prefix = f"cold/{series.study_uid}/{series.series_uid}/"
    objects = read_bucket(storage_client, archive_bucket, prefix)
    assert {f"{prefix}{sop}.dcm": body for sop, body in zip(series.sop_uids, data, strict=True)}.items() <= (
        objects.items()
    )
    assert event.data["manifestUri"] == f"gs://{archive_bucket}/{prefix}manifest.json"
    assert emulator.instance_count(dicom_store, series) == 0


def test_an_instance_arriving_during_the_copy_is_archived_too(
    deleter: Deployment, archive_bucket: str, dicom_store: str, emulator: EmulatorAdmin, storage_client: Any
) -> None:
    series, _ = emulator.stow_series(dicom_store, 10)
    emulator.faults({"method": "GET", "path": f"{series.series_uid}/instances/", "latency": 2.5})
    request = {
        "action": "archive",
        "series": series_path(dicom_store, series),
        "options": {"mode": "instances"},
    }
    deleter.publish(request)  # the latency is of RetrieveInstance
    until = time.monotonic() + 60
    while not emulator.fired()[0]["fired"]:  # the copy began (after the first search): not a guess by time
        assert time.monotonic() < until, "the archive never started copying"
        time.sleep(0.05)
    late_uid = generate_uid()
    late = make_instance(series.study_uid, series.series_uid, late_uid, number=99)
    stow(emulator.dicomweb(dicom_store), [late])
    (event,) = deleter.pull_events(1, timeout=90)
    assert event.data["status"] == "succeeded", event.data
    assert (event.data["instanceCount"], event.data["deletedCount"], event.data["deleted"]) == (11, 11, True)
    assert event.data["rounds"] == 2
    prefix = f"cold/{series.study_uid}/{series.series_uid}/"
    objects = read_bucket(storage_client, archive_bucket, prefix)
    assert objects[f"{prefix}{late_uid}.dcm"] == late
    assert emulator.instance_count(dicom_store, series) == 0


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_a_server_that_caps_results_and_ignores_offset_gets_nothing_deleted(
    deleter: Deployment, archive_bucket: str, dicom_store: str, emulator: EmulatorAdmin
) -> None:
    """Issue 12, 3: the server returns at most 4 of 9 instances whatever the offset: search_incomplete."""
    series, _ = emulator.stow_series(dicom_store, 9)
    emulator.config(qidoCap=4)
    try:
        emulator.clear_requests()
        deleter.publish({"action": "archive", "series": series_path(dicom_store, series)})
        (event,) = deleter.pull_events(1, timeout=60)
    finally:
        emulator.config(qidoCap=0)
    assert event.data["status"] == "failed"
    assert event.data["error"]["code"] == "search_incomplete"
    assert "deleted" not in event.data
    assert not [r for r in emulator.requests() if r["method"] == "DELETE"]
    assert emulator.instance_count(dicom_store, series) == 9


def test_a_lost_delete_answer_is_retried_and_counted_truthfully(
    deleter: Deployment, archive_bucket: str, dicom_store: str, emulator: EmulatorAdmin, storage_client: Any
) -> None:
    """The server deletes an instance and the answer is lost: the retry finds it absent; nothing is lost,
    the event still says deleted, and every object is in the bucket."""
    series, data = emulator.stow_series(dicom_store, 4)
    emulator.faults({"method": "DELETE", "path": "/instances/", "dropAfterBytes": 0, "times": 1})
    deleter.publish({"action": "archive", "series": series_path(dicom_store, series)})
    (event,) = deleter.pull_events(1, timeout=90)
    assert [rule["fired"] for rule in emulator.fired()] == [1]
    assert event.data["status"] == "succeeded", event.data
    assert (event.data["instanceCount"], event.data["deleted"]) == (4, True)
    assert event.data["deletedCount"] == 3  # the fourth was gone when its retry came: not counted as ours
    prefix = f"cold/{series.study_uid}/{series.series_uid}/"
    objects = read_bucket(storage_client, archive_bucket, prefix)
    assert all(objects[f"{prefix}{sop}.dcm"] == body for sop, body in zip(series.sop_uids, data, strict=True))
    assert emulator.instance_count(dicom_store, series) == 0


def test_archive_refuses_a_series_with_an_instance_it_cannot_name(
    deleter: Deployment, dicom_store: str, emulator: EmulatorAdmin
) -> None:
    """A SOP Instance UID over 64 characters: never skipped (it would be deleted uncopied)."""
    series, _ = emulator.stow_series(dicom_store, 3)
    odd = make_instance(series.study_uid, series.series_uid, f"{series.series_uid}.12345678", number=4)
    stow(emulator.dicomweb(dicom_store), [odd])
    deleter.publish({"action": "archive", "series": series_path(dicom_store, series)})
    (event,) = deleter.pull_events(1, timeout=60)
    assert event.data["status"] == "failed"
    assert event.data["error"]["code"] == "unsupported_instance"
    assert emulator.instance_count(dicom_store, series) == 4


def test_archive_stops_on_an_object_that_differs(
    deleter: Deployment, archive_bucket: str, dicom_store: str, emulator: EmulatorAdmin, admin_storage: Any
) -> None:
    """An object already in the bucket, with this worker's metadata but other bytes, is caught."""
    series, data = emulator.stow_series(dicom_store, 4)
    deleter.publish({"action": "retrieve", "series": series_path(dicom_store, series)})
    (copied,) = deleter.pull_events(1, timeout=60)
    assert copied.data["status"] == "succeeded"
    name = f"cold/{series.study_uid}/{series.series_uid}/{series.sop_uids[2]}.dcm"
    blob = admin_storage.bucket(archive_bucket).get_blob(name)
    metadata = dict(blob.metadata)
    corrupted = bytearray(data[2])
    corrupted[-1] ^= 0xFF
    blob = admin_storage.bucket(archive_bucket).blob(name)
    blob.metadata = metadata
    blob.upload_from_string(bytes(corrupted), content_type="application/dicom")
    deleter.publish({"action": "archive", "series": series_path(dicom_store, series)})
    (event,) = deleter.pull_events(1, timeout=60)
    assert event.data["status"] == "failed"
    assert event.data["error"]["code"] == "verification_failed"
    assert event.data["error"]["details"]["differences"][0]["problem"] == "object_differs"
    assert emulator.instance_count(dicom_store, series) == 4


def test_archive_stops_on_an_object_missing_at_verification(
    deleter: Deployment, archive_bucket: str, dicom_store: str, emulator: EmulatorAdmin, admin_storage: Any
) -> None:
    """An object that vanishes between its upload and the check (someone with more rights than the worker
    removed it): verification_failed, nothing deleted."""
    series, _ = emulator.stow_series(dicom_store, 5)
    emulator.faults({"method": "GET", "path": f"instances/{series.sop_uids[4]}$", "latency": 3.0})
    # mode instances: the latency is of RetrieveInstance (auto reads these small instances in one stream)
    deleter.publish(
        {"action": "archive", "series": series_path(dicom_store, series), "options": {"mode": "instances"}}
    )
    victim = f"cold/{series.study_uid}/{series.series_uid}/{series.sop_uids[0]}.dcm"
    deadline = time.monotonic() + 60
    while admin_storage.bucket(archive_bucket).get_blob(victim) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    admin_storage.bucket(archive_bucket).blob(victim).delete()
    (event,) = deleter.pull_events(1, timeout=60)
    assert event.data["status"] == "failed"
    assert event.data["error"]["code"] == "verification_failed"
    assert {"sopInstanceUID": series.sop_uids[0], "problem": "object_missing"} in (
        event.data["error"]["details"]["differences"]
    )
    assert not [r for r in emulator.requests() if r["method"] == "DELETE" and series.series_uid in r["path"]]
    assert emulator.instance_count(dicom_store, series) == 5


def test_delete_reports_deleted_only_for_an_empty_series(
    deploy: Callable[..., Deployment], dicom_store: str, emulator: EmulatorAdmin
) -> None:
    """Issue 12, "delete tells the truth": an instance stored once the operation is done is still in the
    series, so the event says series_not_empty with what remains, never deleted."""
    series, _ = emulator.stow_series(dicom_store, 2)
    late = make_instance(series.study_uid, series.series_uid, generate_uid(), number=7)
    deployment = deploy({"DELETE_ENABLED": "true", "SEARCH_SETTLE_SECONDS": "2"})
    emulator.faults(
        {
            "method": "GET",
            "path": f"series/{series.series_uid}/instances$",
            "times": 1,
            "storeInstance": {"store": dicom_store, "data": b64(late)},
        }
    )
    deployment.publish({"action": "delete", "series": series_path(dicom_store, series)})
    (event,) = deployment.pull_events(1, timeout=60)
    assert [rule["fired"] for rule in emulator.fired()] == [1]
    assert event.data["status"] == "failed", event.data
    assert event.data["error"]["code"] == "series_not_empty"
    assert event.data["error"]["details"]["remainingCount"] == 1
    assert "deleted" not in event.data
    assert emulator.instance_count(dicom_store, series) == 1
