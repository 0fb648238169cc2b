"""Action `tier` through the real stack: the worker writes the filter file into fake-gcs-server, the
emulator's setBlobStorageSettings reads it (as the Healthcare service agent would) and sets the class after
its operation's delay, and the worker checks every instance's getStorageInfo. A failed operation is a failed
event; a DICOMWEB_URL server (Orthanc) has no storage classes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests

from infra.local.dicom_factory import Series
from infra.local.stack import Deployment, Orthanc, Stack
from tests.integration.helpers import EmulatorAdmin, read_bucket, series_path

pytestmark = pytest.mark.integration

PREFIX = "tiered"


def tierer(stack: Stack, deploy: Callable[..., Deployment]) -> tuple[Deployment, str]:
    bucket = stack.create_bucket(f"tier-{uuid.uuid4().hex[:10]}")
    return deploy({"DEFAULT_DESTINATION": f"gs://{bucket}/{PREFIX}"}), bucket


def request(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    deployment.publish(body)
    (event,) = deployment.pull_events(1, timeout=120)
    return dict(event.data)


def storage_classes(emulator: EmulatorAdmin, store: str, series: Series) -> list[str]:
    found = []
    with requests.Session() as session:
        session.trust_env = False
        for sop in series.sop_uids:
            url = (
                f"{emulator.dicomweb(store)}/studies/{series.study_uid}/series/{series.series_uid}"
                f"/instances/{sop}:getStorageInfo"
            )
            answer = session.get(url, timeout=60)
            answer.raise_for_status()
            found.append(answer.json()["blobStorageInfo"]["storageClass"])
    return found


def test_tier_a_series_to_archive(
    stack: Stack,
    deploy: Callable[..., Deployment],
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
) -> None:
    deployment, bucket = tierer(stack, deploy)
    series, _ = emulator.stow_series(dicom_store, 3)
    other, _ = emulator.stow_series(dicom_store, 2)
    emulator.clear_requests()

    event = request(
        deployment,
        {
            "action": "tier",
            "series": series_path(dicom_store, series),
            "requestId": "tier-1",
            "options": {"storageClass": "ARCHIVE"},
        },
    )

    assert event["status"] == "succeeded", event
    assert (event["storageClass"], event["instanceCount"], event["inClassCount"]) == ("ARCHIVE", 3, 3)
    assert event["verified"] is True
    assert event["operation"].startswith(dicom_store.rsplit("/dicomStores/", 1)[0] + "/operations/")
    assert storage_classes(emulator, dicom_store, series) == ["ARCHIVE"] * 3
    assert storage_classes(emulator, dicom_store, other) == ["STANDARD"] * 2
    filter_name = f"{PREFIX}/{series.study_uid}/{series.series_uid}/tier-ARCHIVE.txt"
    assert read_bucket(storage_client, bucket, filter_name) == {
        filter_name: f"/studies/{series.study_uid}/series/{series.series_uid}\n".encode()
    }
    posts = [r["path"] for r in emulator.requests() if r["method"] == "POST"]
    assert posts == [f"/v1/{dicom_store}:setBlobStorageSettings"]

    again = request(
        deployment,
        {
            "action": "tier",
            "series": series_path(dicom_store, series),
            "requestId": "tier-2",
            "options": {"storageClass": "ARCHIVE"},
        },
    )
    assert (again["status"], again["verified"]) == ("succeeded", True), again
    assert list(read_bucket(storage_client, bucket, f"{PREFIX}/")) == [filter_name]  # the same file, reused


def test_a_failed_operation_is_a_failed_event(
    stack: Stack, deploy: Callable[..., Deployment], dicom_store: str, emulator: EmulatorAdmin
) -> None:
    deployment, _ = tierer(stack, deploy)
    series, _ = emulator.stow_series(dicom_store, 2)
    emulator.faults(
        {"method": "POST", "path": ":setBlobStorageSettings", "operationError": {"code": 13, "message": "x"}}
    )

    event = request(
        deployment,
        {
            "action": "tier",
            "series": series_path(dicom_store, series),
            "options": {"storageClass": "COLDLINE"},
        },
    )

    assert event["status"] == "failed", event
    assert event["error"]["code"] == "tier_failed"
    assert event["error"]["details"]["operationErrorCode"] == 13
    assert "verified" not in event
    assert storage_classes(emulator, dicom_store, series) == ["STANDARD"] * 2


@pytest.mark.orthanc
def test_tier_on_orthanc_is_not_supported(
    stack: Stack, deploy: Callable[..., Deployment], orthanc: Orthanc, storage_client: Any
) -> None:
    bucket = stack.create_bucket(f"tier-{uuid.uuid4().hex[:10]}")
    deployment = deploy(
        {
            "DICOMWEB_URL": orthanc.dicomweb_url,
            "DICOMWEB_AUTH": "none",
            "DEFAULT_DESTINATION": f"gs://{bucket}/{PREFIX}",
        }
    )

    event = request(
        deployment,
        {
            "action": "tier",
            "series": "studies/1.2.826.0.1.3680043.8.498.1/series/1.2.826.0.1.3680043.8.498.1.1",
            "options": {"storageClass": "ARCHIVE"},
        },
    )

    assert event["status"] == "failed", event
    assert event["error"]["code"] == "tier_not_supported"
    assert read_bucket(storage_client, bucket) == {}  # no filter file written


def test_a_sweep_then_tier_tiers_exactly_the_matching_series(
    stack: Stack, deploy: Callable[..., Deployment], dicom_store: str, emulator: EmulatorAdmin
) -> None:
    deployment, _ = tierer(stack, deploy)
    studies = {name: f"2.25.{uuid.uuid4().int % 10**20}" for name in ("ct_2015", "mr_2015", "ct_2023")}
    for name, date, modality, series_count in (
        ("ct_2015", "20150601", "CT", 2),
        ("mr_2015", "20150701", "MR", 1),
        ("ct_2023", "20230101", "CT", 1),
    ):
        study = studies[name]
        seed = {"store": dicom_store, "study": study, "series": f"{study}.9", "count": 2}
        seed.update(seriesCount=series_count, studyDate=date, modality=modality)
        emulator.session.post(f"{emulator.admin_url}/emulator/seed", json=seed, timeout=60).raise_for_status()

    deployment.publish(
        {
            "action": "sweep",
            "store": dicom_store,
            "filters": {"modality": "CT", "studyDate": "20100101-20191231"},
            "then": {"action": "tier", "options": {"storageClass": "ARCHIVE"}},
            "requestId": "nightly-tier",
        }
    )
    events = {event.data["requestId"]: dict(event.data) for event in deployment.pull_events(3, timeout=120)}

    swept = events.pop("nightly-tier")
    assert (swept["status"], swept["published"]) == ("succeeded", 2), swept
    matching = {f"{studies['ct_2015']}.9.{k}" for k in (1, 2)}
    assert {event["seriesInstanceUID"] for event in events.values()} == matching
    for event in events.values():
        assert (event["action"], event["status"], event["verified"]) == ("tier", "succeeded", True), event
        assert (event["instanceCount"], event["inClassCount"]) == (2, 2)

    def classes(study: str, series: str) -> set[str]:
        sops = emulator.instance_uids(dicom_store, study, series)
        found = set()
        with requests.Session() as session:
            session.trust_env = False
            for sop in sops:
                url = f"{emulator.dicomweb(dicom_store)}/studies/{study}/series/{series}/instances/{sop}"
                found.add(
                    session.get(f"{url}:getStorageInfo", timeout=60).json()["blobStorageInfo"]["storageClass"]
                )
        return found

    for series in matching:
        assert classes(studies["ct_2015"], series) == {"ARCHIVE"}
    assert classes(studies["mr_2015"], f"{studies['mr_2015']}.9.1") == {"STANDARD"}
    assert classes(studies["ct_2023"], f"{studies['ct_2023']}.9.1") == {"STANDARD"}
    assert deployment.no_more_events() == []
