"""Storage classes in the Healthcare API emulator: ``dicomStores.setBlobStorageSettings`` with a filter file
read from a real fake-gcs-server on 127.0.0.1, its operation, and ``instances.getStorageInfo``."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from .conftest import STORE, ImportEnv
from .test_import import wait_done

METHOD = "google.cloud.healthcare.v1.dicom.DicomService.SetBlobStorageSettings"
STUDY = "1.2.826.0.1.3680043.8.498.9"


def set_class(env: ImportEnv, storage_class: str, filter_name: str, **extra: object) -> requests.Response:
    body = {
        "blobStorageSettings": {"blobStorageClass": storage_class},
        "filterConfig": {"resourcePathsGcsUri": f"gs://{env.bucket}/{filter_name}"},
        **extra,
    }
    return env.http.post(f"{env.url}/v1/{STORE}:setBlobStorageSettings", json=body, timeout=30)


def run(env: ImportEnv, storage_class: str, filter_name: str) -> dict[str, Any]:
    started = set_class(env, storage_class, filter_name)
    assert started.status_code == 200, started.text
    assert "done" not in started.json()
    return wait_done(env, started.json()["name"])


def info(env: ImportEnv, series: str, number: int) -> requests.Response:
    url = f"{env.root}/studies/{STUDY}/series/{series}/instances/{series}.{number}:getStorageInfo"
    return env.http.get(url, timeout=30)


def storage_class(env: ImportEnv, series: str, number: int) -> str:
    answer = info(env, series, number)
    assert answer.status_code == 200, answer.text
    value: str = answer.json()["blobStorageInfo"]["storageClass"]
    return value


@pytest.fixture
def seeded(importing: ImportEnv) -> ImportEnv:
    importing.seed(STUDY, "1.1", 3)
    importing.seed(STUDY, "1.2", 2)
    return importing


def test_every_instance_starts_standard_and_reports_its_storage_info(seeded: ImportEnv) -> None:
    answer = info(seeded, "1.1", 1).json()

    assert answer["referencedResource"] == f"{STORE}/dicomWeb/studies/{STUDY}/series/1.1/instances/1.1.1"
    assert answer["blobStorageInfo"]["storageClass"] == "STANDARD"
    assert int(answer["blobStorageInfo"]["sizeBytes"]) > 0
    assert "storageClassUpdateTime" not in answer["blobStorageInfo"]


def test_the_named_series_moves_to_the_class_after_the_operation(seeded: ImportEnv) -> None:
    seeded.upload("filters/one.txt", f"/studies/{STUDY}/series/1.1\n".encode())

    started = set_class(seeded, "ARCHIVE", "filters/one.txt")
    assert storage_class(seeded, "1.1", 1) == "STANDARD"  # not before the operation is done
    op = wait_done(seeded, started.json()["name"])

    assert op["done"] is True and "error" not in op
    assert op["metadata"]["apiMethodName"] == METHOD
    assert op["metadata"]["counter"] == {"success": "3"}
    assert [storage_class(seeded, "1.1", n) for n in (1, 2, 3)] == ["ARCHIVE"] * 3
    assert [storage_class(seeded, "1.2", n) for n in (1, 2)] == ["STANDARD"] * 2
    assert "storageClassUpdateTime" in info(seeded, "1.1", 1).json()["blobStorageInfo"]


def test_a_filter_of_studies_series_and_instances_with_crlf(seeded: ImportEnv) -> None:
    lines = f"/studies/{STUDY}/series/1.2/instances/1.2.1\r\n\r\n/studies/{STUDY}/series/1.1\r\n"
    seeded.upload("filters/mixed.txt", lines.encode())

    op = run(seeded, "COLDLINE", "filters/mixed.txt")

    assert "error" not in op and op["metadata"]["counter"] == {"success": "4"}
    assert [storage_class(seeded, "1.2", n) for n in (1, 2)] == ["COLDLINE", "STANDARD"]


def test_a_path_that_names_nothing_fails_the_operation_after_the_rest(seeded: ImportEnv) -> None:
    seeded.upload(
        "filters/missing.txt", f"/studies/{STUDY}/series/1.1\n/studies/{STUDY}/series/9.9\n".encode()
    )

    op = run(seeded, "NEARLINE", "filters/missing.txt")

    assert op["error"]["code"] == 5
    assert op["metadata"]["counter"] == {"success": "3", "failure": "1"}
    assert storage_class(seeded, "1.1", 1) == "NEARLINE"


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"studies/1.2/series/3\n", 3), (b"\n\n", 3), (b"/studies/1.2/series/x\n", 3), (None, 5)],
)
def test_an_unusable_filter_file_is_an_operation_error_and_changes_nothing(
    seeded: ImportEnv, content: bytes | None, code: int
) -> None:
    if content is not None:
        seeded.upload("filters/bad.txt", content)

    op = run(seeded, "ARCHIVE", "filters/bad.txt")

    assert op["error"]["code"] == code
    assert storage_class(seeded, "1.1", 1) == "STANDARD"


def test_a_fault_rule_fails_the_operation(seeded: ImportEnv) -> None:
    seeded.upload("filters/one.txt", f"/studies/{STUDY}/series/1.1\n".encode())
    rule = {
        "method": "POST",
        "path": ":setBlobStorageSettings",
        "operationError": {"code": 13, "message": "x"},
    }
    seeded.admin("POST", "faults", {"rules": [rule]})

    op = run(seeded, "ARCHIVE", "filters/one.txt")

    assert op["error"] == {"code": 13, "message": "x"}
    assert storage_class(seeded, "1.1", 1) == "STANDARD"


@pytest.mark.parametrize(
    "body",
    [
        {"blobStorageSettings": {"blobStorageClass": "ARCHIVE"}},
        {
            "blobStorageSettings": {"blobStorageClass": "GLACIER"},
            "filterConfig": {"resourcePathsGcsUri": "gs://b-1/f"},
        },
        {"blobStorageSettings": {}, "filterConfig": {"resourcePathsGcsUri": "gs://b-1/f"}},
        {
            "blobStorageSettings": {"blobStorageClass": "ARCHIVE"},
            "filterConfig": {"resourcePathsGcsUri": "gs://b-1/*"},
        },
        {"blobStorageSettings": {"blobStorageClass": "ARCHIVE"}, "filterConfig": {"uri": "gs://b-1/f"}},
        {"blobStorageSettings": {"blobStorageClass": "ARCHIVE"}, "filterConfig": {}, "updateMask": "x"},
    ],
)
def test_bad_requests_answer_400(seeded: ImportEnv, body: dict[str, Any]) -> None:
    answer = seeded.http.post(f"{seeded.url}/v1/{STORE}:setBlobStorageSettings", json=body, timeout=30)

    assert answer.status_code == 400, answer.text


def test_storage_info_of_an_unknown_instance_is_404(seeded: ImportEnv) -> None:
    assert info(seeded, "1.1", 9).status_code == 404
    url = f"{seeded.root}/studies/{STUDY}/series/1.2/instances/1.1.1:getStorageInfo"  # another series'
    assert seeded.http.get(url, timeout=30).status_code == 404


def test_without_cloud_storage_the_method_answers_501(env: Any) -> None:
    body = {
        "blobStorageSettings": {"blobStorageClass": "ARCHIVE"},
        "filterConfig": {"resourcePathsGcsUri": "gs://b-1/f.txt"},
    }
    answer = env.http.post(f"{env.url}/v1/{STORE}:setBlobStorageSettings", json=body, timeout=30)

    assert answer.status_code == 501
