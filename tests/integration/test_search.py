"""Search end to end: published to the request topic, pushed to the function, event read back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from infra.local.dicom_factory import Series
from infra.local.stack import Deployment, Stack
from tests.integration.helpers import EmulatorAdmin, series_path

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def searcher(stack: Stack) -> Iterator[Deployment]:
    bucket = stack.create_bucket(f"search-{uuid.uuid4().hex[:10]}")
    deployment = stack.deploy({"DEFAULT_DESTINATION": f"gs://{bucket}/results", "SEARCH_PAGE_SIZE": "10"})
    yield deployment
    deployment.stop()


def _instances(event: dict[str, Any], storage_client: Any) -> list[dict[str, Any]]:
    if "instances" in event:
        return list(event["instances"])
    bucket, _, name = event["instancesUri"][len("gs://") :].partition("/")
    return list(json.loads(storage_client.bucket(bucket).blob(name).download_as_bytes())["instances"])


def test_three_instances(searcher: Deployment, dicom_store: str, emulator: EmulatorAdmin) -> None:
    series, _ = emulator.stow_series(dicom_store, 3)
    searcher.publish(
        {"action": "search", "series": series_path(dicom_store, series), "requestId": "search-3"}
    )
    (event,) = searcher.pull_events(1, timeout=30)
    assert event.data["status"] == "succeeded", event.data
    assert event.data["requestId"] == "search-3"
    assert event.data["instanceCount"] == 3
    assert [item["sopInstanceUID"] for item in event.data["instances"]] == list(series.sop_uids)
    assert [item["instanceNumber"] for item in event.data["instances"]] == [1, 2, 3]
    assert {item["sopClassUID"] for item in event.data["instances"]} == {"1.2.840.10008.5.1.4.1.1.7"}
    assert event.data["series"] == series_path(dicom_store, series)
    assert event.attributes == {
        "action": "search",
        "status": "succeeded",
        "requestId": "search-3",
        "studyInstanceUID": series.study_uid,
        "seriesInstanceUID": series.series_uid,
    }


def test_separate_fields_and_action_attribute(
    searcher: Deployment, dicom_store: str, emulator: EmulatorAdmin
) -> None:
    series, _ = emulator.stow_series(dicom_store, 2)
    project, location, dataset, store = dicom_store.split("/")[1::2]
    message = {
        "projectsId": project,
        "locationsId": location,
        "datasetsId": dataset,
        "dicomStoresId": store,
        "studiesId": series.study_uid,
        "seriesId": series.series_uid,
    }
    message_id = searcher.publish(message, {"action": "search"})
    (event,) = searcher.pull_events(1, timeout=30)
    assert event.data["status"] == "succeeded", event.data
    assert event.data["requestId"] == message_id  # defaults to the Pub/Sub message id
    assert event.data["instanceCount"] == 2


def test_larger_than_a_page_pages_with_explicit_limits(
    searcher: Deployment, dicom_store: str, emulator: EmulatorAdmin
) -> None:
    series, _ = emulator.stow_series(dicom_store, 25)
    emulator.clear_requests()
    searcher.publish({"action": "search", "series": series_path(dicom_store, series)})
    (event,) = searcher.pull_events(1, timeout=30)
    assert event.data["instanceCount"] == 25
    assert sorted(item["sopInstanceUID"] for item in event.data["instances"]) == sorted(series.sop_uids)
    searches = [r for r in emulator.requests() if r["path"].endswith("/instances") and r["method"] == "GET"]
    queries = [r["query"] for r in searches]
    assert all("limit=10" in q for q in queries), queries
    assert [next(p for p in q.split("&") if p.startswith("offset=")) for q in queries] == [
        "offset=0",
        "offset=10",
        "offset=20",
        "offset=25",
    ]


def test_sixty_thousand_instances_come_back_whole(
    deploy: Callable[..., Deployment],
    bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
) -> None:
    """More than the Healthcare API's maximum page of 50,000: paged by offset, complete, no duplicates."""
    series = Series("1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.1.60000", ())
    emulator.seed(dicom_store, series, count=60_000)
    deployment = deploy({"DEFAULT_DESTINATION": f"gs://{bucket}/results", "SEARCH_PAGE_SIZE": "50000"})
    deployment.publish({"action": "search", "series": series_path(dicom_store, series)})
    (event,) = deployment.pull_events(1, timeout=120)
    assert event.data["status"] == "succeeded", event.data
    assert event.data["instanceCount"] == 60_000
    listed = [item["sopInstanceUID"] for item in _instances(event.data, storage_client)]
    assert len(listed) == len(set(listed)) == 60_000
    assert set(listed) == {f"{series.series_uid}.{i}" for i in range(1, 60_001)}


def test_a_list_too_large_for_an_event_goes_to_the_destination(
    deploy: Callable[..., Deployment],
    bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
) -> None:
    series, _ = emulator.stow_series(dicom_store, 40)
    deployment = deploy({"DEFAULT_DESTINATION": f"gs://{bucket}/results", "EVENT_INLINE_BYTES": "1024"})
    deployment.publish({"action": "search", "series": series_path(dicom_store, series)})
    (event,) = deployment.pull_events(1, timeout=30)
    assert event.data["status"] == "succeeded", event.data
    assert "instances" not in event.data
    assert event.data["instancesUri"] == (
        f"gs://{bucket}/results/{series.study_uid}/{series.series_uid}/instances.json"
    )
    listed = _instances(event.data, storage_client)
    assert sorted(item["sopInstanceUID"] for item in listed) == sorted(series.sop_uids)


def test_empty_series_is_zero_instances(searcher: Deployment, dicom_store: str) -> None:
    series = Series("1.2.3.4", "1.2.3.4.5", ())
    searcher.publish({"action": "search", "series": series_path(dicom_store, series)})
    (event,) = searcher.pull_events(1, timeout=30)
    assert event.data["status"] == "succeeded", event.data
    assert event.data["instanceCount"] == 0
    assert event.data["instances"] == []


def test_series_in_a_store_that_does_not_exist(searcher: Deployment) -> None:
    store = "projects/local-project/locations/local/datasets/tests/dicomStores/no-such-store"
    series = Series("1.2.3.4", "1.2.3.4.5", ())
    searcher.publish({"action": "search", "series": series_path(store, series)})
    (event,) = searcher.pull_events(1, timeout=30)
    assert event.data["status"] == "failed"
    assert event.data["error"]["code"] == "series_not_found"
    assert event.attributes["errorCode"] == "series_not_found"


def test_retrieve_of_a_series_that_does_not_exist(searcher: Deployment, dicom_store: str) -> None:
    series = Series("1.2.3.4", "1.2.3.4.6", ())
    searcher.publish({"action": "retrieve", "series": series_path(dicom_store, series)})
    (event,) = searcher.pull_events(1, timeout=30)
    assert event.data["status"] == "failed"
    assert event.data["error"] == {
        "code": "series_not_found",
        "message": "the series has no instances in the source",
    }


def test_malformed_message_is_reported_once_and_not_retried(searcher: Deployment) -> None:
    message_id = searcher.publish(b"{not json", {"action": "search"})
    (event,) = searcher.pull_events(1, timeout=30)
    assert event.data["status"] == "failed"
    assert event.data["requestId"] == message_id
    assert event.data["error"] == {"code": "invalid_message", "message": "message data is not JSON"}
    assert searcher.no_more_events(wait=3.0) == []  # acknowledged: no redelivery, no second event
    assert searcher.no_more_dead_letters(wait=0.5) == []
    assert searcher.function.log_text().count('"message":"rejected a message"') == 1
