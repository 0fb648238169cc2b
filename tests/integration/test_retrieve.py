"""Retrieve end to end: byte-exact copies, both modes, idempotent under redelivery, faults and deadlines."""

from __future__ import annotations

import base64
import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import google_crc32c
import pytest
import requests

from infra.local.dicom_factory import Series, pydicom_test_series, stow
from infra.local.stack import Deployment, Stack
from tests.integration.helpers import EmulatorAdmin, list_bucket, read_bucket, series_path

pytestmark = pytest.mark.integration

SC = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def module_bucket(stack: Stack) -> str:
    return stack.create_bucket(f"retrieve-{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def copier(stack: Stack, module_bucket: str) -> Iterator[Deployment]:
    deployment = stack.deploy({"DEFAULT_DESTINATION": f"gs://{module_bucket}/archive"})
    yield deployment
    deployment.stop()


def folder(prefix: str, series: Series) -> str:
    return f"{prefix}/{series.study_uid}/{series.series_uid}"


def assert_copied(
    storage_client: Any, bucket: str, prefix: str, series: Series, data: list[bytes], event: dict[str, Any]
) -> None:
    """Every object is byte-identical to what was stored, and nothing else is under the series."""
    objects = read_bucket(storage_client, bucket, folder(prefix, series) + "/")
    expected = {
        f"{folder(prefix, series)}/{sop}.dcm": body for sop, body in zip(series.sop_uids, data, strict=True)
    }
    dcm = {name: body for name, body in objects.items() if name.endswith(".dcm")}
    assert dcm.keys() == expected.keys()
    for name, body in expected.items():
        assert dcm[name] == body, f"{name} differs from the stored instance"
    assert event["status"] == "succeeded", event
    assert event["instanceCount"] == len(data)
    assert event["bytes"] == sum(len(body) for body in data)
    assert event["destination"] == f"gs://{bucket}/{folder(prefix, series)}"
    manifest = json.loads(objects[f"{folder(prefix, series)}/manifest.json"])
    assert event["manifestUri"] == f"gs://{bucket}/{folder(prefix, series)}/manifest.json"
    assert manifest["instanceCount"] == len(data)
    for entry in manifest["instances"]:
        body = expected[entry["object"]]
        assert entry["size"] == len(body)
        assert entry["crc32c"] == base64.b64encode(google_crc32c.Checksum(body).digest()).decode()


@pytest.mark.parametrize("mode", ["auto", "instances", "series"])
@pytest.mark.parametrize("count", [1, 3])
def test_small_series_byte_identical(
    copier: Deployment,
    module_bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
    count: int,
    mode: str,
) -> None:
    series, data = emulator.stow_series(dicom_store, count, pixel_bytes=2048)
    copier.publish(
        {"action": "retrieve", "series": series_path(dicom_store, series), "options": {"mode": mode}}
    )
    (event,) = copier.pull_events(1, timeout=60)
    assert_copied(storage_client, module_bucket, "archive", series, data, event.data)
    assert event.data["uploadedCount"] == count
    assert event.data["mode"] == ("series" if mode == "auto" else mode)  # auto: small instances


@pytest.mark.parametrize("mode", ["auto", "instances", "series"])
def test_instances_above_8_mib_are_streamed_byte_identical(
    copier: Deployment,
    module_bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
    mode: str,
) -> None:
    """Parts with a Content-Length above 8 MiB go in one streamed request and a final one with the
    CRC32C, through the permission front (which checks that CRC32C as Cloud Storage does)."""
    series, data = emulator.stow_series(dicom_store, 3, pixel_bytes=12 * 1024 * 1024 + 12345)
    copier.publish(
        {"action": "retrieve", "series": series_path(dicom_store, series), "options": {"mode": mode}}
    )
    (event,) = copier.pull_events(1, timeout=120)
    assert_copied(storage_client, module_bucket, "archive", series, data, event.data)
    assert event.data["mode"] == ("instances" if mode == "auto" else mode)  # auto: large instances


def test_object_metadata_and_content_type(
    copier: Deployment, module_bucket: str, dicom_store: str, emulator: EmulatorAdmin, storage_client: Any
) -> None:
    series, _ = emulator.stow_series(dicom_store, 1)
    copier.publish({"action": "retrieve", "series": series_path(dicom_store, series)})
    copier.pull_events(1, timeout=60)
    blob = storage_client.bucket(module_bucket).get_blob(
        f"{folder('archive', series)}/{series.sop_uids[0]}.dcm"
    )
    assert blob.content_type == "application/dicom"
    assert blob.metadata["studyInstanceUID"] == series.study_uid
    assert blob.metadata["seriesInstanceUID"] == series.series_uid
    assert blob.metadata["sopInstanceUID"] == series.sop_uids[0]
    assert blob.metadata["sopClassUID"] == SC
    assert blob.metadata["transferSyntaxUID"] == "1.2.840.10008.1.2.1"
    assert blob.metadata["sourceStore"] == dicom_store


@pytest.mark.parametrize("mode", ["instances", "series"])
def test_pydicom_files_of_many_transfer_syntaxes(
    copier: Deployment,
    module_bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
    mode: str,
) -> None:
    series, data = pydicom_test_series()
    stow(emulator.dicomweb(dicom_store), data)
    copier.publish(
        {"action": "retrieve", "series": series_path(dicom_store, series), "options": {"mode": mode}}
    )
    (event,) = copier.pull_events(1, timeout=60)
    assert_copied(storage_client, module_bucket, "archive", series, data, event.data)
    syntaxes = {entry["transferSyntaxUID"] for entry in _manifest(storage_client, event.data)["instances"]}
    assert {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2",
    } <= syntaxes


@pytest.mark.parametrize("mode", ["instances", "series"])
def test_five_hundred_instances(
    copier: Deployment,
    module_bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
    mode: str,
) -> None:
    series, data = emulator.stow_series(dicom_store, 500, pixel_bytes=1024)
    copier.publish(
        {"action": "retrieve", "series": series_path(dicom_store, series), "options": {"mode": mode}}
    )
    (event,) = copier.pull_events(1, timeout=120)
    assert_copied(storage_client, module_bucket, "archive", series, data, event.data)


def _manifest(storage_client: Any, event: dict[str, Any]) -> Any:
    bucket, _, name = event["manifestUri"][len("gs://") :].partition("/")
    return json.loads(storage_client.bucket(bucket).blob(name).download_as_bytes())


def _source_digest(emulator: EmulatorAdmin, store: str, series: Series, sop: str) -> tuple[int, str]:
    """Size and CRC32C of an instance's stored bytes, read from the emulator as a stream."""
    url = f"{emulator.dicomweb(store)}/studies/{series.study_uid}/series/{series.series_uid}/instances/{sop}"
    checksum = google_crc32c.Checksum()
    size = 0
    with requests.get(
        url, headers={"Accept": "application/dicom; transfer-syntax=*"}, stream=True, timeout=120
    ) as r:
        r.raise_for_status()
        for chunk in r.iter_content(1 << 20):
            checksum.update(chunk)
            size += len(chunk)
    return size, base64.b64encode(checksum.digest()).decode()


@pytest.mark.parametrize("mode", ["auto", "instances", "series"])
def test_a_300_mb_instance(
    copier: Deployment,
    module_bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
    mode: str,
) -> None:
    series = Series(
        "1.2.826.0.1.3680043.8.498.2", f"1.2.826.0.1.3680043.8.498.2.{uuid.uuid4().int % 10**9}", ()
    )
    seeded = emulator.seed(dicom_store, series, count=1, size=300 * 1024 * 1024)
    sop = seeded["firstSopInstanceUid"]
    copier.publish(
        {"action": "retrieve", "series": series_path(dicom_store, series), "options": {"mode": mode}}
    )
    (event,) = copier.pull_events(1, timeout=300)
    assert event.data["status"] == "succeeded", event.data
    blob = storage_client.bucket(module_bucket).get_blob(f"{folder('archive', series)}/{sop}.dcm")
    assert (blob.size, blob.crc32c) == _source_digest(emulator, dicom_store, series, sop)
    assert blob.size > 300 * 1024 * 1024
    assert event.data["mode"] == ("instances" if mode == "auto" else mode)


def test_three_deliveries_at_once_then_again(
    copier: Deployment, module_bucket: str, dicom_store: str, emulator: EmulatorAdmin, storage_client: Any
) -> None:
    series, data = emulator.stow_series(dicom_store, 40)
    request = {"action": "retrieve", "series": series_path(dicom_store, series), "requestId": "same-request"}
    threads = [threading.Thread(target=copier.publish, args=(request,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = copier.pull_events(3, timeout=120)
    copier.publish(request)
    events += copier.pull_events(1, timeout=60)
    for event in events:
        assert_copied(storage_client, module_bucket, "archive", series, data, event.data)
    manifests = {json.dumps(_manifest(storage_client, event.data), sort_keys=True) for event in events}
    assert len(manifests) == 1
    assert events[-1].data["uploadedCount"] == 0
    assert events[-1].data["skippedCount"] == 40
    names = list_bucket(storage_client, module_bucket, folder("archive", series) + "/")
    assert len(names) == 41  # one object per instance, and the manifest


def test_redelivery_after_sigkill_finishes_without_reuploading(
    deploy: Callable[..., Deployment],
    bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
) -> None:
    series, data = emulator.stow_series(dicom_store, 60, pixel_bytes=4096)
    deployment = deploy({"DEFAULT_DESTINATION": f"gs://{bucket}/archive", "CONCURRENCY": "2"})
    emulator.faults({"method": "GET", "path": f"{series.series_uid}/instances/", "latency": 0.1})
    deployment.publish(  # mode instances: the latency is of RetrieveInstance
        {"action": "retrieve", "series": series_path(dicom_store, series), "options": {"mode": "instances"}}
    )
    prefix = folder("archive", series) + "/"
    deadline = time.monotonic() + 60
    while len(list_bucket(storage_client, bucket, prefix)) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    deployment.function.kill(signal.SIGKILL)
    done_before = set(list_bucket(storage_client, bucket, prefix))
    assert 10 <= len(done_before) < 60, "the kill must land halfway through the copy"
    emulator.clear_requests()
    emulator.clear_faults()
    deployment.function.restart()
    (event,) = deployment.pull_events(1, timeout=120)
    assert_copied(storage_client, bucket, "archive", series, data, event.data)
    assert event.data["skippedCount"] >= len(done_before)
    assert event.data["uploadedCount"] == 60 - event.data["skippedCount"]
    fetched = {r["path"].rsplit("/", 1)[1] for r in emulator.requests() if "/instances/" in r["path"]}
    assert not {name.rsplit("/", 1)[1][: -len(".dcm")] for name in done_before} & fetched


def test_faults_429_503_and_dropped_bodies(
    copier: Deployment, module_bucket: str, dicom_store: str, emulator: EmulatorAdmin, storage_client: Any
) -> None:
    series, data = emulator.stow_series(dicom_store, 50, pixel_bytes=8192)
    emulator.faults(
        {
            "method": "GET",
            "path": f"{series.series_uid}/instances/",
            "status": 429,
            "retryAfter": 1,
            "times": 3,
        },
        {"method": "GET", "path": f"{series.series_uid}/instances/", "dropAfterBytes": 2000, "times": 5},
        {"method": "GET", "path": f"{series.series_uid}/instances", "status": 503, "rate": 0.1, "seed": 7},
    )
    request = {
        "action": "retrieve",
        "series": series_path(dicom_store, series),
        "options": {"mode": "instances"},
    }
    copier.publish(request)  # the faults are of RetrieveInstance
    (event,) = copier.pull_events(1, timeout=120)
    assert_copied(storage_client, module_bucket, "archive", series, data, event.data)
    assert all(rule["fired"] > 0 for rule in emulator.fired())


def test_series_mode_survives_a_dropped_series_body(
    copier: Deployment, module_bucket: str, dicom_store: str, emulator: EmulatorAdmin, storage_client: Any
) -> None:
    series, data = emulator.stow_series(dicom_store, 20, pixel_bytes=8192)
    emulator.faults(
        {"method": "GET", "path": f"series/{series.series_uid}$", "dropAfterBytes": 60_000, "times": 1}
    )
    copier.publish(
        {"action": "retrieve", "series": series_path(dicom_store, series), "options": {"mode": "series"}}
    )
    (event,) = copier.pull_events(1, timeout=120)
    assert_copied(storage_client, module_bucket, "archive", series, data, event.data)
    assert emulator.fired()[0]["fired"] == 1


def test_continuations_at_the_deadline(
    deploy: Callable[..., Deployment],
    bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
) -> None:
    series, data = emulator.stow_series(dicom_store, 500, pixel_bytes=256)
    deployment = deploy(
        {"DEFAULT_DESTINATION": f"gs://{bucket}/archive", "DEADLINE_SECONDS": "1", "CONCURRENCY": "4"}
    )
    tap = deployment.tap_requests()
    emulator.faults({"method": "GET", "path": f"{series.series_uid}/instances/", "latency": 0.02})
    deployment.publish(  # mode instances: the latency is of RetrieveInstance
        {
            "action": "retrieve",
            "series": series_path(dicom_store, series),
            "requestId": "long-one",
            "options": {"mode": "instances"},
        }
    )
    (event,) = deployment.pull_events(1, timeout=180)
    assert_copied(storage_client, bucket, "archive", series, data, event.data)
    assert event.data["requestId"] == "long-one"
    continuations = [m for m in tap.drain(1.0) if m.attributes.get("continuation")]
    assert len(continuations) >= 2
    assert all(m.data["requestId"] == "long-one" for m in continuations)
    assert deployment.no_more_events(wait=2.0) == []


def test_destination_outside_the_allowed_buckets_is_refused(
    copier: Deployment, dicom_store: str, emulator: EmulatorAdmin, stack: Stack, storage_client: Any
) -> None:
    other = stack.create_bucket(f"other-{uuid.uuid4().hex[:10]}")
    series, _ = emulator.stow_series(dicom_store, 1)
    copier.publish(
        {"action": "retrieve", "series": series_path(dicom_store, series), "destination": f"gs://{other}/x"}
    )
    (event,) = copier.pull_events(1, timeout=60)
    assert event.data["status"] == "failed"
    assert event.data["error"]["code"] == "destination_not_allowed"
    assert list_bucket(storage_client, other) == {}


def test_store_notification_copies_one_instance(
    copier: Deployment, module_bucket: str, dicom_store: str, emulator: EmulatorAdmin, storage_client: Any
) -> None:
    series, data = emulator.stow_series(dicom_store, 3)
    copier.publish(f"{series_path(dicom_store, series)}/instances/{series.sop_uids[1]}")
    (event,) = copier.pull_events(1, timeout=60)
    assert event.data["status"] == "succeeded", event.data
    assert event.data["action"] == "retrieve"
    name = f"{folder('archive', series)}/{series.sop_uids[1]}.dcm"
    assert event.data["objectUri"] == f"gs://{module_bucket}/{name}"
    assert read_bucket(storage_client, module_bucket, folder("archive", series) + "/") == {name: data[1]}


def test_include_metadata_and_transcoding_option(
    copier: Deployment, module_bucket: str, dicom_store: str, emulator: EmulatorAdmin, storage_client: Any
) -> None:
    series, _ = emulator.stow_series(dicom_store, 2)
    copier.publish(
        {
            "action": "retrieve",
            "series": series_path(dicom_store, series),
            "destination": f"gs://{module_bucket}/implicit",
            "options": {"transferSyntax": "1.2.840.10008.1.2", "includeMetadata": True},
        }
    )
    (event,) = copier.pull_events(1, timeout=60)
    assert event.data["status"] == "succeeded", event.data
    metadata = json.loads(
        storage_client.bucket(module_bucket)
        .blob(f"{folder('implicit', series)}/metadata.json")
        .download_as_bytes()
    )
    assert {item["00080018"]["Value"][0] for item in metadata} == set(series.sop_uids)
    manifest = _manifest(storage_client, event.data)
    assert {entry["transferSyntaxUID"] for entry in manifest["instances"]} == {"1.2.840.10008.1.2"}
