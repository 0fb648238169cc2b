"""``dicomStores.import`` of the Healthcare API emulator: Google's gs:// patterns, duplicates, failures, and
the long-running operation's metadata and counters. The objects are read from a real fake-gcs-server on
127.0.0.1 (the emulator's ``--storage-url``), with no credentials."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.local.dicom_factory import make_instance
from infra.local.healthcare_emulator import HealthcareEmulator, start_emulator
from infra.local.stack import Stack

from .conftest import STORE, Env, ImportEnv

IMPORT_METHOD = "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData"
STUDY = "1.2.826.0.1.3680043.8.498.7"
DATASET = STORE.rsplit("/dicomStores/", 1)[0]


def instance(series: str, number: int, pixel_bytes: int = 256) -> bytes:
    return make_instance(STUDY, series, f"{series}.{number}", number=number, pixel_bytes=pixel_bytes)


def wait_done(env: Env, name: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        op: dict[str, Any] = env.http.get(f"{env.url}/v1/{name}", timeout=10).json()
        if op.get("done") or time.monotonic() > deadline:
            return op
        time.sleep(0.05)


def run_import(env: ImportEnv, uri: str) -> dict[str, Any]:
    resp = env.start_import(uri)
    assert resp.status_code == 200, resp.text
    return wait_done(env, resp.json()["name"])


def series_sops(env: Env, series: str) -> list[str]:
    resp = env.http.get(f"{env.root}/studies/{STUDY}/series/{series}/instances", params={"limit": "100"})
    if resp.status_code == 204:
        return []
    return sorted(item["00080018"]["Value"][0] for item in resp.json())


@pytest.fixture
def archive(importing: ImportEnv) -> ImportEnv:
    """archive/{study}/A/{1,2}.dcm, archive/{study}/B/1.dcm (one folder deeper: B/deep/2.dcm), a text
    file beside them, and one instance outside the archive."""
    importing.upload(f"archive/{STUDY}/1.1/1.dcm", instance("1.1", 1))
    importing.upload(f"archive/{STUDY}/1.1/2.dcm", instance("1.1", 2))
    importing.upload(f"archive/{STUDY}/1.2/1.dcm", instance("1.2", 1))
    importing.upload(f"archive/{STUDY}/1.2/deep/2.dcm", instance("1.2", 2))
    importing.upload(f"archive/{STUDY}/1.2/notes.txt", b"not DICOM")
    importing.upload("elsewhere/1.dcm", instance("1.3", 1))
    return importing


def test_single_star_matches_within_one_folder(archive: ImportEnv) -> None:
    op = run_import(archive, f"gs://{archive.bucket}/archive/{STUDY}/1.2/*.dcm")
    assert op["done"] is True and "error" not in op, op
    assert op["metadata"]["counter"] == {"success": "1"}
    assert series_sops(archive, "1.2") == ["1.2.1"]  # deep/2.dcm is in a sub-folder: not matched


def test_double_star_with_extension_matches_across_folders(archive: ImportEnv) -> None:
    op = run_import(archive, f"gs://{archive.bucket}/archive/**.dcm")
    assert "error" not in op and op["metadata"]["counter"] == {"success": "4"}, op
    assert series_sops(archive, "1.1") == ["1.1.1", "1.1.2"]
    assert series_sops(archive, "1.2") == ["1.2.1", "1.2.2"]
    assert series_sops(archive, "1.3") == []  # outside the prefix


def test_question_mark_and_exact_object(archive: ImportEnv) -> None:
    op = run_import(archive, f"gs://{archive.bucket}/archive/{STUDY}/1.1/?.dcm")
    assert op["metadata"]["counter"] == {"success": "2"}, op
    op = run_import(archive, f"gs://{archive.bucket}/elsewhere/1.dcm")
    assert op["metadata"]["counter"] == {"success": "1"} and series_sops(archive, "1.3") == ["1.3.1"]


def test_duplicates_are_skipped_counted_and_never_overwritten(archive: ImportEnv) -> None:
    original = instance("1.1", 1)
    stored = archive.stow([original])
    assert stored.status_code == 200, stored.text
    changed = instance("1.1", 1, pixel_bytes=512)  # the same SOP Instance UID, other bytes
    archive.upload(f"archive/{STUDY}/1.1/1.dcm", changed)
    op = run_import(archive, f"gs://{archive.bucket}/archive/{STUDY}/1.1/*")
    assert op["done"] is True and "error" not in op, op
    assert op["metadata"]["counter"] == {"success": "2"}  # the duplicate counts, as a skipped success
    again = run_import(archive, f"gs://{archive.bucket}/archive/{STUDY}/1.1/*")
    assert "error" not in again and again["metadata"]["counter"] == {"success": "2"}, again
    url = f"{archive.root}/studies/{STUDY}/series/1.1/instances/1.1.1"
    kept = archive.http.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"}, timeout=30)
    assert kept.status_code == 200 and kept.content == original  # the first copy, not the imported one


def test_non_dicom_objects_are_failures_and_the_operation_ends_with_an_error(archive: ImportEnv) -> None:
    op = run_import(archive, f"gs://{archive.bucket}/archive/{STUDY}/1.2/**")
    assert op["done"] is True and "response" not in op, op
    assert op["metadata"]["counter"] == {"success": "2", "failure": "1"}
    assert op["error"]["code"] == 3 and "1 of 3 objects" in op["error"]["message"]
    assert series_sops(archive, "1.2") == ["1.2.1", "1.2.2"]  # the instances are imported all the same


def test_nothing_imported_is_an_error(archive: ImportEnv) -> None:
    only_text = run_import(archive, f"gs://{archive.bucket}/archive/{STUDY}/1.2/*.txt")
    assert only_text["error"]["code"] == 3 and only_text["metadata"]["counter"] == {"failure": "1"}
    nothing = run_import(archive, f"gs://{archive.bucket}/archive/none/**.dcm")
    assert nothing["error"] == {
        "code": 5,
        "message": f"no Cloud Storage object matches gs://{archive.bucket}/archive/none/**.dcm",
    }
    assert nothing["metadata"]["counter"] == {}
    no_bucket = run_import(archive, "gs://no-such-bucket-here/archive/**.dcm")
    assert no_bucket["error"]["code"] == 5 and "gs://no-such-bucket-here" in no_bucket["error"]["message"]


def test_instances_of_a_series_being_deleted_fail(archive: ImportEnv) -> None:
    archive.stow([instance("1.1", 9)])
    archive.admin("POST", "config", {"operationDelay": 2.0})
    deleting = archive.http.delete(f"{archive.root}/studies/{STUDY}/series/1.1", timeout=10)
    assert deleting.status_code == 200
    archive.admin("POST", "config", {"operationDelay": 0.3})
    op = run_import(archive, f"gs://{archive.bucket}/archive/{STUDY}/1.1/*.dcm")
    assert op["metadata"]["counter"] == {"failure": "2"} and op["error"]["code"] == 3, op


def test_operation_shape_and_timing(archive: ImportEnv) -> None:
    resp = archive.start_import(f"gs://{archive.bucket}/archive/**.dcm")
    assert resp.status_code == 200
    started = resp.json()
    assert set(started) == {"name", "metadata"}
    assert started["name"].startswith(f"{DATASET}/operations/")
    assert started["metadata"]["apiMethodName"] == IMPORT_METHOD
    assert started["metadata"]["@type"] == "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata"
    assert started["metadata"]["counter"] == {} and "endTime" not in started["metadata"]
    running = archive.http.get(f"{archive.url}/v1/{started['name']}", timeout=10).json()
    assert "done" not in running  # done no sooner than the operation delay (0.3 s)
    done = wait_done(archive, started["name"])
    metadata = done["metadata"]
    assert done["done"] is True and done["name"] == started["name"]
    assert done["response"] == {
        "@type": "type.googleapis.com/google.cloud.healthcare.v1.dicom.ImportDicomDataResponse"
    }
    assert metadata["apiMethodName"] == IMPORT_METHOD and metadata["createTime"] <= metadata["endTime"]
    assert metadata["logsUrl"].startswith("https://console.cloud.google.com/")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"gcsSource": {"uri": "gs://b-1/archive/**/x.dcm"}}, "'**' must end the path"),
        ({"gcsSource": {"uri": "gs://b-1/*/archive/**"}}, "no other wildcard"),
        ({"gcsSource": {"uri": "gs://b-1/archive/**.d?m"}}, "no other wildcard"),
        ({"gcsSource": {"uri": "s3://b-1/archive/x.dcm"}}, "gs://{bucket_id}/{object_id}"),
        ({"gcsSource": {"uri": "gs://b-1"}}, "gs://{bucket_id}/{object_id}"),
        ({"gcsSource": {"uri": "gs://B_1/x.dcm"}}, "gs://{bucket_id}/{object_id}"),
        ({"gcsSource": {}}, "gcsSource.uri is required"),
        ({}, "gcsSource is required"),
        ({"gcsSource": {"uri": "gs://b-1/x", "prefix": "y"}}, 'Unknown name "gcsSource.prefix"'),
        ({"gcsSource": {"uri": "gs://b-1/x"}, "force": True}, 'Unknown name "force"'),
        ({"gcsSource": {"uri": "gs://b-1/x"}, "blobStorageSettings": {"blobStorageClass": "COLD"}}, "COLD"),
    ],
)
def test_bad_requests_answer_400_before_any_operation(
    importing: ImportEnv, body: object, message: str
) -> None:
    resp = importing.http.post(f"{importing.url}/v1/{STORE}:import", json=body, timeout=10)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and message in error["message"]
    assert importing.http.get(f"{importing.url}/v1/{STORE}:import", timeout=10).status_code == 405


def test_blob_storage_settings_are_accepted(archive: ImportEnv) -> None:
    resp = archive.start_import(
        f"gs://{archive.bucket}/elsewhere/*.dcm", blobStorageSettings={"blobStorageClass": "ARCHIVE"}
    )
    assert resp.status_code == 200, resp.text
    assert wait_done(archive, resp.json()["name"])["metadata"]["counter"] == {"success": "1"}


def test_unknown_store_and_no_storage_url(importing: ImportEnv, tmp_path: Path) -> None:
    other = STORE.replace("dicomStores/s", "dicomStores/missing")
    body = {"gcsSource": {"uri": f"gs://{importing.bucket}/x.dcm"}}
    assert importing.http.post(f"{importing.url}/v1/{other}:import", json=body).status_code == 404
    emu = start_emulator("127.0.0.1", 0, tmp_path / "plain")
    try:
        requests.post(f"{emu.url}/emulator/stores", json={"name": STORE}, timeout=10)
        resp = requests.post(f"{emu.url}/v1/{STORE}:import", json=body, timeout=10)
        assert resp.status_code == 501 and "--storage-url" in resp.json()["error"]["message"]
    finally:
        emu.stop()


def test_storage_url_must_be_loopback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        HealthcareEmulator(tmp_path, storage_url="http://192.0.2.10:4443")  # a documentation address


def test_stack_gives_the_emulator_fake_gcs_server_past_the_front(tmp_path: Path) -> None:
    """The Healthcare service agent is another principal than the function: the front is not in the way."""
    stack = Stack(tmp_path, pubsub=False)  # built, not started
    assert stack.healthcare is not None and stack.gcs is not None
    assert stack.healthcare.storage_url == stack.gcs_admin_url != stack.gcs_url


def test_command_line_refuses_a_storage_url_off_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    from infra.local.healthcare_emulator.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["--storage-url", "http://192.0.2.10:4443"])
    assert exited.value.code == 2 and "loopback" in capsys.readouterr().err
