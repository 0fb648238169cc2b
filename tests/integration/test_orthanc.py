"""The worker against a real third-party DICOMweb server: Orthanc 1.10 with its DICOMweb plugin.

Deployments serve ``DICOMWEB_URL=<orthanc>/dicom-web`` and name series as ``studies/{study}/series/{series}``.
Every instance is stored with STOW-RS first and every copied object is compared with the stowed bytes.
Where Orthanc differs from the Healthcare API (its 200 ``[]`` for no match, no DICOMweb DELETE, parts
without a transfer-syntax parameter), the test says so next to the assertion that relies on it.
"""

from __future__ import annotations

import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests

from infra.local.dicom_factory import Series, make_series, pydicom_test_series, stow
from infra.local.stack import Deployment, Event, Orthanc, Stack
from tests.integration.helpers import list_bucket, read_bucket

pytestmark = [pytest.mark.integration, pytest.mark.orthanc]

PREFIX = "orthanc"
HEALTHCARE_STORE = "projects/local-project/locations/local/datasets/tests/dicomStores/elsewhere"


# -- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def orthanc_bucket(stack: Stack) -> str:
    return stack.create_bucket(f"orthanc-{uuid.uuid4().hex[:10]}")


def orthanc_env(server: Orthanc, bucket: str, **extra: str) -> dict[str, str]:
    return {
        "DICOMWEB_URL": server.dicomweb_url,
        "DICOMWEB_AUTH": "none",
        "DEFAULT_DESTINATION": f"gs://{bucket}/{PREFIX}",
        **extra,
    }


@pytest.fixture(scope="module")
def worker(stack: Stack, orthanc: Orthanc, orthanc_bucket: str) -> Iterator[Deployment]:
    """The default delete (a DICOMweb DELETE, which Orthanc refuses), and a small search page."""
    deployment = stack.deploy(
        orthanc_env(orthanc, orthanc_bucket, SEARCH_PAGE_SIZE="7", DELETE_ENABLED="true")
    )
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def orthanc_deleter(stack: Stack, orthanc: Orthanc, orthanc_bucket: str) -> Iterator[Deployment]:
    """Deletes through Orthanc's own REST API (DICOMWEB_DELETE=orthanc)."""
    deployment = stack.deploy(
        orthanc_env(orthanc, orthanc_bucket, DICOMWEB_DELETE="orthanc", DELETE_ENABLED="true")
    )
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def pydicom_series(orthanc: Orthanc) -> tuple[Series, list[bytes]]:
    series, data = pydicom_test_series()
    stow(orthanc.dicomweb_url, data)
    return series, data


@pytest.fixture(scope="module")
def large_series(orthanc: Orthanc) -> tuple[Series, list[bytes]]:
    series, data = make_series(500, pixel_bytes=1024)
    stow(orthanc.dicomweb_url, data)
    return series, data


# -- helpers -------------------------------------------------------------------------------------------------


def path_of(series: Series, study_uid: str | None = None) -> str:
    return f"studies/{study_uid or series.study_uid}/series/{series.series_uid}"


def folder(series: Series, prefix: str = PREFIX) -> str:
    return f"{prefix}/{series.study_uid}/{series.series_uid}"


def stow_new(server: Orthanc, count: int, *, pixel_bytes: int = 512) -> tuple[Series, list[bytes]]:
    series, data = make_series(count, pixel_bytes=pixel_bytes)
    stow(server.dicomweb_url, data, auth=server.auth)
    return series, data


def qido(server: Orthanc, series: Series, **params: str) -> requests.Response:
    response = server.session().get(
        f"{server.dicomweb_url}/{path_of(series)}/instances",
        params=params,
        headers={"Accept": "application/dicom+json"},
        timeout=30,
    )
    response.raise_for_status()
    return response


def sops_in_orthanc(server: Orthanc, series: Series) -> list[str]:
    """The series' SOP instance UIDs as Orthanc lists them now (an empty list when it has none)."""
    response = qido(server, series, limit="100000")
    body = response.json() if response.content.strip() else []
    return [item["00080018"]["Value"][0] for item in body]


def lookup(server: Orthanc, uid: str) -> list[Any]:
    response = server.session().post(f"{server.url}/tools/lookup", data=uid, timeout=30)
    response.raise_for_status()
    return list(response.json())


def request_once(deployment: Deployment, body: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    deployment.publish(body)
    (event,) = deployment.pull_events(1, timeout=timeout)
    return dict(event.data)


def assert_copied(
    storage_client: Any,
    bucket: str,
    series: Series,
    data: list[bytes],
    event: dict[str, Any],
    prefix: str = PREFIX,
) -> dict[str, Any]:
    """Byte-identical objects for every stowed instance, nothing else but the manifest; returns it."""
    assert event["status"] == "succeeded", json.dumps(event)
    objects = read_bucket(storage_client, bucket, folder(series, prefix) + "/")
    expected = {
        f"{folder(series, prefix)}/{sop}.dcm": body for sop, body in zip(series.sop_uids, data, strict=True)
    }
    manifest_name = f"{folder(series, prefix)}/manifest.json"
    assert objects.keys() == {*expected, manifest_name}
    differing = [name for name, body in expected.items() if objects[name] != body]
    assert differing == [], f"{len(differing)} objects differ from the stowed instances"
    assert event["instanceCount"] == len(data)
    assert event["bytes"] == sum(len(body) for body in data)
    assert event["destination"] == f"gs://{bucket}/{folder(series, prefix)}"
    assert event["manifestUri"] == f"gs://{bucket}/{manifest_name}"
    manifest: dict[str, Any] = json.loads(objects[manifest_name])
    assert manifest["sourceStore"] == "dicomweb"
    assert manifest["series"] == path_of(series)
    assert {entry["object"]: entry["size"] for entry in manifest["instances"]} == {
        name: len(body) for name, body in expected.items()
    }
    return manifest


class OrthancLog:
    """Orthanc's log at verbose level: one `(http) METHOD /uri` line per request it receives, and the
    arguments of every QIDO-RS request."""

    def __init__(self, server: Orthanc) -> None:
        self.server = server
        self.start = 0

    def mark(self) -> None:
        self.start = len(self.server.log_text())

    def since_mark(self) -> str:
        return self.server.log_text()[self.start :]

    def requests(self) -> list[tuple[str, str]]:
        return re.findall(r"\(http\) ([A-Z]+) (\S+)", self.since_mark())

    def qido_arguments(self) -> list[str]:
        return re.findall(r"Arguments of QIDO-RS request: (.*)", self.since_mark())


@pytest.fixture
def orthanc_log(orthanc: Orthanc) -> Iterator[OrthancLog]:
    session = orthanc.session()
    session.put(f"{orthanc.url}/tools/log-level", data="verbose", timeout=10).raise_for_status()
    try:
        yield OrthancLog(orthanc)
    finally:
        session.put(f"{orthanc.url}/tools/log-level", data="default", timeout=10).raise_for_status()


# -- 1. search -----------------------------------------------------------------------------------------------


def test_orthanc_honours_offset_and_answers_200_empty(orthanc: Orthanc) -> None:
    """What the worker's paging relies on, asked of Orthanc directly."""
    series, _ = stow_new(orthanc, 25)
    pages = [
        qido(orthanc, series, limit="7", offset=str(offset), includefield="00200013").json()
        for offset in (0, 7, 14, 21, 25)
    ]
    numbers = [[item["00200013"]["Value"][0] for item in page] for page in pages]
    # Orthanc honours offset: disjoint pages that cover the series, then an empty page.
    assert numbers == [list(range(1, 8)), list(range(8, 15)), list(range(15, 22)), [22, 23, 24, 25], []]
    # No match: Orthanc answers 200 with `[]` where the Healthcare API answers 204 No Content.
    absent = qido(orthanc, Series(series.study_uid, "1.2.3.999", ()), limit="7", offset="0")
    assert (absent.status_code, absent.json()) == (200, [])


def test_search_pages_through_25_instances_with_a_page_of_7(
    worker: Deployment, orthanc: Orthanc, orthanc_log: OrthancLog
) -> None:
    series, _ = stow_new(orthanc, 25)
    orthanc_log.mark()
    event = request_once(worker, {"action": "search", "series": path_of(series), "requestId": "orthanc-25"})
    # Orthanc honours offset (previous test), so the worker lists the whole series in four pages of at
    # most 7 and an empty one. Were offset ignored, the second page would repeat the first and the worker
    # would have to fail with `search_incomplete` rather than report seven instances.
    assert event["status"] == "succeeded", json.dumps(event)
    assert event["requestId"] == "orthanc-25"
    assert event["series"] == path_of(series)
    assert event["instanceCount"] == 25
    assert [item["sopInstanceUID"] for item in event["instances"]] == list(series.sop_uids)
    assert [item["instanceNumber"] for item in event["instances"]] == list(range(1, 26))
    assert {item["sopClassUID"] for item in event["instances"]} == {"1.2.840.10008.5.1.4.1.1.7"}
    fields = "[includefield=00080016] [includefield=00200013]"
    assert orthanc_log.qido_arguments() == [
        f"{fields} [limit=7] [offset={offset}]" for offset in (0, 7, 14, 21, 25)
    ]
    assert sops_in_orthanc(orthanc, series) == list(series.sop_uids)


def test_search_of_a_mixed_series(worker: Deployment, pydicom_series: tuple[Series, list[bytes]]) -> None:
    series, data = pydicom_series
    event = request_once(worker, {"action": "search", "series": path_of(series)})
    assert event["status"] == "succeeded", json.dumps(event)
    assert event["instanceCount"] == len(data)
    assert {item["sopInstanceUID"] for item in event["instances"]} == set(series.sop_uids)
    classes = {
        sop: pydicom.dcmread(io.BytesIO(body)).SOPClassUID
        for sop, body in zip(series.sop_uids, data, strict=True)
    }
    assert {item["sopInstanceUID"]: item["sopClassUID"] for item in event["instances"]} == classes


def test_absent_series_search_is_empty_and_retrieve_not_found(
    worker: Deployment, orthanc_bucket: str, storage_client: Any
) -> None:
    series = Series(
        "1.2.826.0.1.3680043.8.498.7", f"1.2.826.0.1.3680043.8.498.7.{uuid.uuid4().int % 10**12}", ()
    )
    # Orthanc's 200 `[]` reads as "no instances", as the Healthcare API's 204 does.
    searched = request_once(worker, {"action": "search", "series": path_of(series)})
    assert searched["status"] == "succeeded", json.dumps(searched)
    assert (searched["instanceCount"], searched["instances"]) == (0, [])
    retrieved = request_once(worker, {"action": "retrieve", "series": path_of(series)})
    assert retrieved["status"] == "failed"
    assert retrieved["error"]["code"] == "series_not_found"
    assert list_bucket(storage_client, orthanc_bucket, folder(series) + "/") == {}


# -- 2. retrieve: byte-exact ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["instances", "series"])
def test_pydicom_files_byte_identical(
    worker: Deployment,
    orthanc_bucket: str,
    storage_client: Any,
    pydicom_series: tuple[Series, list[bytes]],
    mode: str,
) -> None:
    series, data = pydicom_series
    prefix = f"pydicom-{mode}"
    event = request_once(
        worker,
        {
            "action": "retrieve",
            "series": path_of(series),
            "destination": f"gs://{orthanc_bucket}/{prefix}",
            "options": {"mode": mode},
        },
    )
    manifest = assert_copied(storage_client, orthanc_bucket, series, data, event, prefix)
    assert event["uploadedCount"] == len(data)
    # Orthanc's parts carry no transfer-syntax parameter: the worker reads each from the file meta header.
    stowed = {
        sop: str(pydicom.dcmread(io.BytesIO(body)).file_meta.TransferSyntaxUID)
        for sop, body in zip(series.sop_uids, data, strict=True)
    }
    assert {entry["sopInstanceUID"]: entry["transferSyntaxUID"] for entry in manifest["instances"]} == stowed
    assert {
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.5",
    } <= set(stowed.values())


@pytest.mark.parametrize("mode", ["instances", "series"])
def test_five_hundred_instances_byte_identical(
    worker: Deployment,
    orthanc_bucket: str,
    storage_client: Any,
    large_series: tuple[Series, list[bytes]],
    orthanc_log: OrthancLog,
    mode: str,
) -> None:
    series, data = large_series
    prefix = f"large-{mode}"
    orthanc_log.mark()
    event = request_once(
        worker,
        {
            "action": "retrieve",
            "series": path_of(series),
            "destination": f"gs://{orthanc_bucket}/{prefix}",
            "options": {"mode": mode},
        },
        timeout=120,
    )
    assert_copied(storage_client, orthanc_bucket, series, data, event, prefix)
    assert event["uploadedCount"] == 500
    retrieves = [uri for method, uri in orthanc_log.requests() if method == "GET" and "/instances" not in uri]
    fetched = [uri for method, uri in orthanc_log.requests() if method == "GET" and "/instances/" in uri]
    if mode == "series":  # one RetrieveSeries request, split as it streamed: no fallback to instances
        assert (retrieves, fetched) == ([f"/dicom-web/{path_of(series)}"], [])
    else:  # one RetrieveInstance request per instance, none fetched twice
        assert retrieves == []
        assert sorted(fetched) == sorted(
            f"/dicom-web/{path_of(series)}/instances/{sop}" for sop in series.sop_uids
        )


def test_object_metadata_and_series_metadata(
    worker: Deployment, orthanc: Orthanc, orthanc_bucket: str, storage_client: Any
) -> None:
    series, _ = stow_new(orthanc, 2)
    event = request_once(
        worker, {"action": "retrieve", "series": path_of(series), "options": {"includeMetadata": True}}
    )
    assert event["status"] == "succeeded", json.dumps(event)
    bucket = storage_client.bucket(orthanc_bucket)
    blob = bucket.get_blob(f"{folder(series)}/{series.sop_uids[0]}.dcm")
    assert blob.content_type == "application/dicom"
    assert blob.metadata["sourceStore"] == "dicomweb"
    assert blob.metadata["sopInstanceUID"] == series.sop_uids[0]
    assert blob.metadata["transferSyntaxUID"] == "1.2.840.10008.1.2.1"
    assert blob.metadata["requestedTransferSyntax"] == "*"
    assert event["metadataUri"] == f"gs://{orthanc_bucket}/{folder(series)}/metadata.json"
    metadata = json.loads(bucket.blob(f"{folder(series)}/metadata.json").download_as_bytes())
    assert {item["00080018"]["Value"][0] for item in metadata} == set(series.sop_uids)


# -- 3. duplicates and redelivery ----------------------------------------------------------------------------


def test_three_deliveries_at_once_then_again(
    worker: Deployment, orthanc: Orthanc, orthanc_bucket: str, storage_client: Any
) -> None:
    series, data = stow_new(orthanc, 40)
    request = {"action": "retrieve", "series": path_of(series), "requestId": "orthanc-same-request"}
    threads = [threading.Thread(target=worker.publish, args=(request,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events: list[Event] = worker.pull_events(3, timeout=120)
    worker.publish(request)
    events += worker.pull_events(1, timeout=60)
    manifests = set()
    for event in events:
        manifest = assert_copied(storage_client, orthanc_bucket, series, data, event.data)
        manifests.add(json.dumps(manifest, sort_keys=True))
    assert len(manifests) == 1
    # Create-only writes: no instance is reported uploaded by two deliveries. (Not `== 40`: two deliveries
    # racing on the manifest can send one back for redelivery, and that attempt's uploads go unreported.)
    assert sum(event.data["uploadedCount"] for event in events[:3]) <= 40
    assert (events[-1].data["uploadedCount"], events[-1].data["skippedCount"]) == (0, 40)
    assert len(list_bucket(storage_client, orthanc_bucket, folder(series) + "/")) == 41


# -- 4. delete and archive -----------------------------------------------------------------------------------


def test_standard_delete_is_not_supported(worker: Deployment, orthanc: Orthanc) -> None:
    series, _ = stow_new(orthanc, 2)
    event = request_once(worker, {"action": "delete", "series": path_of(series)})
    # Orthanc has no DICOMweb DELETE: 405 (Allow: GET), reported as such and never retried.
    assert event["status"] == "failed"
    assert event["error"]["code"] == "delete_not_supported"
    assert "deleted" not in event
    assert sops_in_orthanc(orthanc, series) == list(series.sop_uids)


def test_standard_archive_copies_then_reports_delete_not_supported(
    worker: Deployment, orthanc: Orthanc, orthanc_bucket: str, storage_client: Any
) -> None:
    series, data = stow_new(orthanc, 3)
    event = request_once(worker, {"action": "archive", "series": path_of(series)})
    assert event["status"] == "failed"
    assert event["error"]["code"] == "delete_not_supported"
    assert event.get("deleted") is not True
    objects = read_bucket(storage_client, orthanc_bucket, folder(series) + "/")
    assert [objects[f"{folder(series)}/{sop}.dcm"] for sop in series.sop_uids] == data
    assert sops_in_orthanc(orthanc, series) == list(series.sop_uids)


def test_delete_through_orthanc_rest(orthanc_deleter: Deployment, orthanc: Orthanc) -> None:
    series, _ = stow_new(orthanc, 3)
    other, _ = stow_new(orthanc, 2)
    event = request_once(orthanc_deleter, {"action": "delete", "series": path_of(series)})
    assert event["status"] == "succeeded", json.dumps(event)
    assert (event["deleted"], event["alreadyAbsent"]) == (True, False)
    assert sops_in_orthanc(orthanc, series) == []
    assert lookup(orthanc, series.series_uid) == []
    assert sops_in_orthanc(orthanc, other) == list(other.sop_uids)  # only that series went


def test_delete_of_an_absent_series_through_orthanc_rest(orthanc_deleter: Deployment) -> None:
    series = Series(
        "1.2.826.0.1.3680043.8.498.8", f"1.2.826.0.1.3680043.8.498.8.{uuid.uuid4().int % 10**12}", ()
    )
    event = request_once(orthanc_deleter, {"action": "delete", "series": path_of(series)})
    assert event["status"] == "succeeded", json.dumps(event)
    assert event["alreadyAbsent"] is True
    assert event.get("deleted") is not True


def test_delete_naming_another_study_leaves_the_series(orthanc_deleter: Deployment, orthanc: Orthanc) -> None:
    """The series UID is found by Orthanc's lookup, but under another study: not that series, not deleted."""
    series, _ = stow_new(orthanc, 2)
    event = request_once(
        orthanc_deleter,
        {"action": "delete", "series": path_of(series, study_uid="1.2.826.0.1.3680043.8.498.9")},
    )
    assert event["status"] == "succeeded", json.dumps(event)
    assert event["alreadyAbsent"] is True
    assert sops_in_orthanc(orthanc, series) == list(series.sop_uids)


@pytest.mark.parametrize("mode", ["instances", "series"])
def test_archive_through_orthanc_rest(
    orthanc_deleter: Deployment, orthanc: Orthanc, orthanc_bucket: str, storage_client: Any, mode: str
) -> None:
    series, data = stow_new(orthanc, 12, pixel_bytes=4096)
    event = request_once(
        orthanc_deleter, {"action": "archive", "series": path_of(series), "options": {"mode": mode}}
    )
    assert_copied(storage_client, orthanc_bucket, series, data, event)
    assert (event["verified"], event["deleted"], event["alreadyAbsent"]) == (True, True, False)
    assert sops_in_orthanc(orthanc, series) == []
    assert lookup(orthanc, series.series_uid) == []


def two_patient_series(server: Orthanc) -> tuple[Series, list[bytes]]:
    """One series (one study, one series UID) whose instances carry two PatientIDs.

    Orthanc keys its resources by PatientID as well as by UID, so it keeps this as two Orthanc series
    under two Orthanc studies: QIDO-RS lists all four instances, RetrieveInstance serves each, but
    RetrieveSeries answers 404 ("inexistent series"), and /tools/lookup of the series UID gives two ids.
    pydicom's test files regrouped by `pydicom_test_series()` are such a series too (14 PatientIDs).
    """
    series, data = make_series(4)
    for index in (2, 3):
        dataset = pydicom.dcmread(io.BytesIO(data[index]))
        dataset.PatientID = "SYNTH-0002"
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        data[index] = buffer.getvalue()
    stow(server.dicomweb_url, data, auth=server.auth)
    assert len([item for item in lookup(server, series.series_uid) if item["Type"] == "Series"]) == 2
    return series, data


def test_series_split_by_patient_retrieve_in_series_mode(
    worker: Deployment, orthanc: Orthanc, orthanc_bucket: str, storage_client: Any
) -> None:
    series, data = two_patient_series(orthanc)
    event = request_once(
        worker, {"action": "retrieve", "series": path_of(series), "options": {"mode": "series"}}
    )
    # The search listed four instances, so RetrieveSeries' 404 is not "series not found": the worker
    # must go on instance by instance, as it does when a series body breaks off.
    assert_copied(storage_client, orthanc_bucket, series, data, event)


def test_series_split_by_patient_delete_through_orthanc_rest(
    orthanc_deleter: Deployment, orthanc: Orthanc
) -> None:
    series, _ = two_patient_series(orthanc)
    event = request_once(orthanc_deleter, {"action": "delete", "series": path_of(series)})
    assert event["status"] == "succeeded", json.dumps(event)
    assert event["deleted"] is True
    # "deleted" must mean the whole series: both of Orthanc's series of that study and series UID.
    assert sops_in_orthanc(orthanc, series) == []
    assert lookup(orthanc, series.series_uid) == []


# -- 5. basic authentication ---------------------------------------------------------------------------------


def basic_env(server: Orthanc, bucket: str, password_file: Path, password: str) -> dict[str, str]:
    password_file.write_text(password + "\n")  # a mounted secret often ends with a newline
    assert server.username is not None
    return orthanc_env(
        server,
        bucket,
        DICOMWEB_AUTH="basic",
        DICOMWEB_USERNAME=server.username,
        DICOMWEB_PASSWORD_FILE=str(password_file),
        DICOMWEB_DELETE="orthanc",
        DELETE_ENABLED="true",
    )


def test_basic_auth_retrieve_and_delete(
    deploy: Callable[..., Deployment],
    orthanc_basic: Orthanc,
    orthanc_bucket: str,
    storage_client: Any,
    tmp_path: Path,
) -> None:
    assert requests.get(f"{orthanc_basic.dicomweb_url}/studies", timeout=10).status_code == 401
    series, data = stow_new(orthanc_basic, 5)
    assert orthanc_basic.password is not None
    deployment = deploy(
        basic_env(orthanc_basic, orthanc_bucket, tmp_path / "password", orthanc_basic.password)
    )
    event = request_once(deployment, {"action": "retrieve", "series": path_of(series)})
    assert_copied(storage_client, orthanc_bucket, series, data, event)
    # Orthanc's REST API (lookup, then DELETE) takes the same credentials.
    deleted = request_once(deployment, {"action": "delete", "series": path_of(series)})
    assert deleted["status"] == "succeeded", json.dumps(deleted)
    assert deleted["deleted"] is True
    assert sops_in_orthanc(orthanc_basic, series) == []


def test_basic_auth_wrong_password_is_refused(
    deploy: Callable[..., Deployment],
    orthanc_basic: Orthanc,
    orthanc_bucket: str,
    storage_client: Any,
    tmp_path: Path,
) -> None:
    series, _ = stow_new(orthanc_basic, 2)
    deployment = deploy(basic_env(orthanc_basic, orthanc_bucket, tmp_path / "password", "not-the-password"))
    event = request_once(deployment, {"action": "retrieve", "series": path_of(series)})
    assert event["status"] == "failed"
    assert event["error"]["code"] == "source_refused"
    assert "401" in event["error"]["message"]
    assert list_bucket(storage_client, orthanc_bucket, folder(series) + "/") == {}
    deleted = request_once(deployment, {"action": "delete", "series": path_of(series)})
    assert deleted["status"] == "failed"
    assert deleted["error"]["code"] == "source_refused"
    assert sops_in_orthanc(orthanc_basic, series) == list(series.sop_uids)


# -- 6. a Healthcare API path is refused ---------------------------------------------------------------------


def test_healthcare_store_path_is_refused_without_asking_orthanc(
    orthanc_deleter: Deployment,
    orthanc: Orthanc,
    orthanc_bucket: str,
    storage_client: Any,
    orthanc_log: OrthancLog,
) -> None:
    series, _ = stow_new(orthanc, 2)
    orthanc_log.mark()
    healthcare_path = f"{HEALTHCARE_STORE}/dicomWeb/{path_of(series)}"
    for action in ("search", "retrieve", "delete", "archive"):
        event = request_once(orthanc_deleter, {"action": action, "series": healthcare_path})
        assert event["status"] == "failed", json.dumps(event)
        assert event["error"]["code"] == "store_not_allowed"
    assert "(http) " not in orthanc_log.since_mark()
    assert series.series_uid not in orthanc_log.since_mark()
    assert sops_in_orthanc(orthanc, series) == list(series.sop_uids)
    assert list_bucket(storage_client, orthanc_bucket, folder(series) + "/") == {}
    # The log does show the requests that do reach Orthanc: the same series named the DICOMweb way.
    event = request_once(orthanc_deleter, {"action": "search", "series": path_of(series)})
    assert event["instanceCount"] == 2
    assert f"(http) GET /dicom-web/{path_of(series)}/instances" in orthanc_log.since_mark()
