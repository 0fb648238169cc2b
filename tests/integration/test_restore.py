"""Restore and verify end to end, on the Healthcare API emulator and on Orthanc: archive a series of
pydicom's test files (many transfer syntaxes), see the store empty, restore it by STOW-RS, retrieve it
again: every object byte-identical to the first copy; a second delivery changes nothing; verify names a
changed object, a missing one and an extra instance in the store, and changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from pydicom.uid import generate_uid

from infra.local.dicom_factory import Series, make_instance, make_series, pydicom_test_series, stow
from infra.local.stack import Deployment, Orthanc, Stack
from tests.integration.helpers import EmulatorAdmin, list_bucket, read_bucket, series_path

pytestmark = pytest.mark.integration

ARCHIVE = "archive"


@dataclass
class Backend:
    """One DICOMweb server with a deployment that archives, restores and verifies against it."""

    name: str
    deployment: Deployment
    dicomweb_root: str  # where the test stores and searches directly
    store: str | None  # the Healthcare store, None for the DICOMWEB_URL server
    bucket: str

    def path(self, series: Series) -> str:
        if self.store is None:
            return f"studies/{series.study_uid}/series/{series.series_uid}"
        return series_path(self.store, series)

    def stow(self, data: list[bytes]) -> None:
        stow(self.dicomweb_root, data)

    def sops(self, series: Series) -> set[str]:
        with requests.Session() as session:
            session.trust_env = False
            response = session.get(
                f"{self.dicomweb_root}/studies/{series.study_uid}/series/{series.series_uid}/instances",
                params={"limit": "100000", "includefield": "00080018"},
                headers={"Accept": "application/dicom+json"},
                timeout=60,
            )
        if response.status_code in (204, 404) or not response.content.strip():
            return set()
        response.raise_for_status()
        return {item["00080018"]["Value"][0] for item in response.json()}

    def request(self, body: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        self.deployment.publish(body)
        (event,) = self.deployment.pull_events(1, timeout=timeout)
        return dict(event.data)

    def folder(self, series: Series, prefix: str = ARCHIVE) -> str:
        return f"{prefix}/{series.study_uid}/{series.series_uid}"


@pytest.fixture(params=["emulator", pytest.param("orthanc", marks=pytest.mark.orthanc)])
def backend(request: pytest.FixtureRequest, stack: Stack, deploy: Callable[..., Deployment]) -> Backend:
    bucket = stack.create_bucket(f"restore-{uuid.uuid4().hex[:10]}")
    env = {
        "DELETE_ENABLED": "true",
        "RESTORE_ENABLED": "true",
        "DEFAULT_DESTINATION": f"gs://{bucket}/{ARCHIVE}",
    }
    if request.param == "orthanc":
        server: Orthanc = request.getfixturevalue("orthanc")
        env.update(DICOMWEB_URL=server.dicomweb_url, DICOMWEB_AUTH="none", DICOMWEB_DELETE="orthanc")
        return Backend("orthanc", deploy(env), server.dicomweb_url, None, bucket)
    store: str = request.getfixturevalue("dicom_store")
    admin: EmulatorAdmin = request.getfixturevalue("emulator")
    return Backend("emulator", deploy(env), admin.dicomweb(store), store, bucket)


def dcm_objects(storage_client: Any, bucket: str, folder: str) -> dict[str, bytes]:
    """The folder's instance objects by SOP UID."""
    objects = read_bucket(storage_client, bucket, folder + "/")
    return {
        name.rsplit("/", 1)[1].removesuffix(".dcm"): body
        for name, body in objects.items()
        if name.endswith(".dcm")
    }


def test_archive_restore_and_retrieve_again_are_byte_identical(backend: Backend, storage_client: Any) -> None:
    series, data = pydicom_test_series()
    backend.stow(data)
    path = backend.path(series)

    archived = backend.request({"action": "archive", "series": path, "requestId": "archive-1"})
    assert (archived["status"], archived["deleted"]) == ("succeeded", True), archived
    first_copy = dcm_objects(storage_client, backend.bucket, backend.folder(series))
    assert first_copy == dict(zip(series.sop_uids, data, strict=True))
    assert backend.sops(series) == set()

    restore = {"action": "restore", "series": path, "requestId": "restore-1"}
    restored = backend.request(restore)
    assert restored["status"] == "succeeded", restored
    assert (restored["instanceCount"], restored["restoredCount"], restored["skippedCount"]) == (
        len(data),
        len(data),
        0,
    )
    assert restored["verified"] is True
    assert restored["bytes"] == sum(len(body) for body in data)
    assert restored["manifestUri"] == archived["manifestUri"]
    assert backend.sops(series) == set(series.sop_uids)

    again = backend.request(
        {"action": "retrieve", "series": path, "destination": f"gs://{backend.bucket}/again"}
    )
    assert again["status"] == "succeeded", again
    second_copy = dcm_objects(storage_client, backend.bucket, backend.folder(series, "again"))
    differing = sorted(uid for uid in first_copy if second_copy.get(uid) != first_copy[uid])
    assert differing == [], f"{len(differing)} instances changed on the round trip"
    assert second_copy.keys() == first_copy.keys()

    objects_before = {
        name: blob.generation for name, blob in list_bucket(storage_client, backend.bucket).items()
    }
    redelivered = backend.request(restore)
    assert redelivered["status"] == "succeeded", redelivered
    assert (redelivered["restoredCount"], redelivered["skippedCount"], redelivered["verified"]) == (
        0,
        len(data),
        True,
    )
    assert backend.sops(series) == set(series.sop_uids)
    after = {name: blob.generation for name, blob in list_bucket(storage_client, backend.bucket).items()}
    assert after == objects_before  # restore writes nothing to the bucket


def test_verify_names_a_changed_object_a_missing_one_and_an_extra_instance(
    backend: Backend, storage_client: Any, admin_storage: Any
) -> None:
    series, data = make_series(4)
    backend.stow(data)
    path = backend.path(series)
    copied = backend.request({"action": "retrieve", "series": path})
    assert copied["status"] == "succeeded", copied

    verified = backend.request({"action": "verify", "series": path})
    assert (verified["status"], verified["verified"], verified["checkedAgainst"]) == (
        "succeeded",
        True,
        "store",
    ), verified

    changed, missing = series.sop_uids[0], series.sop_uids[1]
    folder = backend.folder(series)
    admin_bucket = admin_storage.bucket(backend.bucket)
    admin_bucket.blob(f"{folder}/{changed}.dcm").upload_from_string(data[0][:-1] + b"\x00")
    admin_bucket.blob(f"{folder}/{missing}.dcm").delete()
    extra = generate_uid()
    backend.stow([make_instance(series.study_uid, series.series_uid, extra, number=99)])
    bucket_before = {
        name: blob.generation for name, blob in list_bucket(storage_client, backend.bucket).items()
    }
    store_before = backend.sops(series)

    failed = backend.request({"action": "verify", "series": path})

    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "verification_failed"
    assert sorted(failed["error"]["details"]["differences"], key=lambda d: d["sopInstanceUID"]) == sorted(
        [
            {"sopInstanceUID": changed, "problem": "object_differs"},
            {"sopInstanceUID": missing, "problem": "object_missing"},
            {"sopInstanceUID": extra, "problem": "not_in_archive"},
        ],
        key=lambda d: d["sopInstanceUID"],
    )
    after = {name: blob.generation for name, blob in list_bucket(storage_client, backend.bucket).items()}
    assert after == bucket_before
    assert backend.sops(series) == store_before


def test_verify_of_an_archived_series_checks_the_manifest(backend: Backend, storage_client: Any) -> None:
    series, data = make_series(3)
    backend.stow(data)
    path = backend.path(series)
    archived = backend.request({"action": "archive", "series": path})
    assert archived["status"] == "succeeded", archived

    verified = backend.request({"action": "verify", "series": path})

    assert (verified["status"], verified["verified"], verified["checkedAgainst"]) == (
        "succeeded",
        True,
        "manifest",
    ), verified
    assert verified["manifestUri"] == archived["manifestUri"]
    assert backend.sops(series) == set()


def test_restore_into_a_store_holding_other_bytes_is_a_conflict(backend: Backend) -> None:
    series, data = make_series(2)
    backend.stow(data)
    path = backend.path(series)
    assert backend.request({"action": "archive", "series": path})["status"] == "succeeded"
    other = make_instance(series.study_uid, series.series_uid, series.sop_uids[0], number=7)
    assert other != data[0]
    backend.stow([other])

    conflict = backend.request({"action": "restore", "series": path})

    assert conflict["status"] == "failed", conflict
    assert conflict["error"]["code"] == "restore_conflict"
    assert conflict["error"]["details"]["sopInstanceUID"] == series.sop_uids[0]
    assert series.sop_uids[0] in backend.sops(series)


def test_a_stow_refused_while_the_series_is_deleted_is_retried_until_the_delete_ends(
    stack: Stack, deploy: Callable[..., Deployment], dicom_store: str, emulator: EmulatorAdmin
) -> None:
    """The Healthcare API refuses inserts into a series while an operation deletes it (the emulator: 409,
    failure reason 0x0110): transient, so the instance goes in once the delete is done. The instances
    that delete took are then missing, and the event says so; a second delivery restores them."""
    bucket = stack.create_bucket(f"restore-{uuid.uuid4().hex[:10]}")
    backend = Backend(
        "emulator",
        deploy(
            {
                "RESTORE_ENABLED": "true",
                "DEFAULT_DESTINATION": f"gs://{bucket}/{ARCHIVE}",
                "SEARCH_SETTLE_SECONDS": "2",
            }
        ),
        emulator.dicomweb(dicom_store),
        dicom_store,
        bucket,
    )
    series, data = make_series(3)
    kept, gone = series.sop_uids[:2], series.sop_uids[2]
    backend.stow(data)
    path = backend.path(series)
    assert backend.request({"action": "retrieve", "series": path})["status"] == "succeeded"
    series_url = f"{backend.dicomweb_root}/studies/{series.study_uid}/series/{series.series_uid}"
    with requests.Session() as session:
        session.trust_env = False
        session.delete(f"{series_url}/instances/{gone}", timeout=30).raise_for_status()
        emulator.config(operationDelay=4.0)
        session.delete(series_url, timeout=30).raise_for_status()  # its operation runs for 4 s
    emulator.clear_requests()

    during = backend.request({"action": "restore", "series": path, "requestId": "during-delete"})

    assert during["status"] == "failed", during
    assert during["error"]["code"] == "verification_failed"
    assert sorted(d["sopInstanceUID"] for d in during["error"]["details"]["differences"]) == sorted(kept)
    assert {d["problem"] for d in during["error"]["details"]["differences"]} == {"not_in_store"}
    stows = [r for r in emulator.requests() if r["method"] == "POST" and r["path"].endswith("/studies")]
    assert len(stows) >= 2  # refused while the delete ran, then stored
    assert backend.sops(series) == {gone}

    after = backend.request({"action": "restore", "series": path, "requestId": "after-delete"})
    assert (after["status"], after["restoredCount"], after["skippedCount"]) == ("succeeded", 2, 1), after
    assert backend.sops(series) == set(series.sop_uids)


def test_restore_by_import_on_the_healthcare_api(
    stack: Stack,
    deploy: Callable[..., Deployment],
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
) -> None:
    """options.method import: dicomStores.import of the series folder (the emulator reads fake-gcs-server as
    the Healthcare service agent would), its operation waited on, then the same byte-for-byte proof."""
    bucket = stack.create_bucket(f"import-{uuid.uuid4().hex[:10]}")
    deployment = deploy(
        {
            "DELETE_ENABLED": "true",
            "RESTORE_ENABLED": "true",
            "DEFAULT_DESTINATION": f"gs://{bucket}/{ARCHIVE}",
        }
    )
    backend = Backend("emulator", deployment, emulator.dicomweb(dicom_store), dicom_store, bucket)
    series, data = pydicom_test_series()
    backend.stow(data)
    path = backend.path(series)
    archived = backend.request({"action": "archive", "series": path, "requestId": "archive-import"})
    assert archived["deleted"] is True, archived
    emulator.clear_requests()

    restored = backend.request(
        {"action": "restore", "series": path, "requestId": "import-1", "options": {"method": "import"}}
    )

    assert restored["status"] == "succeeded", restored
    assert restored["verified"] is True
    assert (restored["instanceCount"], restored["restoredCount"]) == (len(data), len(data))
    assert restored["operation"].startswith(dicom_store.rsplit("/dicomStores/", 1)[0] + "/operations/")
    log = emulator.requests()
    assert [r["path"] for r in log if r["method"] == "POST"] == [f"/v1/{dicom_store}:import"]
    assert not [r for r in log if r["method"] == "POST" and r["path"].endswith("/studies")]  # no STOW
    again = backend.request({"action": "retrieve", "series": path, "destination": f"gs://{bucket}/again"})
    assert again["status"] == "succeeded", again
    assert dcm_objects(storage_client, bucket, backend.folder(series, "again")) == dict(
        zip(series.sop_uids, data, strict=True)
    )
