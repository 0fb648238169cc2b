"""Sweep end to end on the local stack: the series of an emulator store matching the filters, one request
per series published onto REQUEST_TOPIC and worked by the same function; and a store larger than the
emulator's lowered search limits (pages of 500, offsets up to 2,000) listed completely, studies without
a date included, every series published exactly once."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from infra.local.stack import Deployment, Stack
from infra.local.stack.pubsub import PubSubRest
from tests.integration.helpers import EmulatorAdmin
from tests.schemas import assert_valid_request

pytestmark = pytest.mark.integration


def seed_study(
    admin: EmulatorAdmin, store: str, study: str, series: int, *, date: str, modality: str, instances: int = 1
) -> list[str]:
    """`series` series `{study}.9.{k}` of one study; their paths."""
    admin.seed_study(
        store, study, f"{study}.9", count=instances, seriesCount=series, studyDate=date, modality=modality
    )
    return [f"{store}/dicomWeb/studies/{study}/series/{study}.9.{k}" for k in range(1, series + 1)]


def a_study() -> str:
    return f"2.25.{uuid.uuid4().int % 10**20}"


def test_a_sweep_archives_exactly_the_matching_series(
    stack: Stack, deploy: Callable[..., Deployment], dicom_store: str, emulator: EmulatorAdmin
) -> None:
    bucket = stack.create_bucket(f"sweep-{uuid.uuid4().hex[:10]}")
    ct_2015 = seed_study(emulator, dicom_store, a_study(), 2, date="20150601", modality="CT", instances=3)
    mr_2015 = seed_study(emulator, dicom_store, a_study(), 1, date="20150701", modality="MR")
    ct_2023 = seed_study(emulator, dicom_store, a_study(), 1, date="20230101", modality="CT")
    deployment = deploy({"DELETE_ENABLED": "true", "ALLOWED_BUCKETS": f"gs://{bucket}"})
    tap = deployment.tap_requests()

    sweep = {
        "action": "sweep",
        "store": dicom_store,
        "filters": {"modality": "CT", "studyDate": "20100101-20191231"},
        "then": {"action": "archive", "destination": f"gs://{bucket}/archive"},
        "requestId": "nightly-ct",
    }
    deployment.publish(sweep)
    events = {event.data["requestId"]: event.data for event in deployment.pull_events(3, timeout=120)}

    swept = events.pop("nightly-ct")
    assert (swept["status"], swept["seriesCount"], swept["published"]) == ("succeeded", 2, 2), swept
    assert {event["series"] for event in events.values()} == set(ct_2015)
    for request_id, event in events.items():
        assert request_id.startswith("nightly-ct.")
        assert (event["action"], event["status"], event["deleted"]) == ("archive", "succeeded", True), event
        assert event["instanceCount"] == 3
    children = [event.data for event in tap.pull(3, timeout=30) if event.data.get("action") == "archive"]
    assert sorted(child["series"] for child in children) == sorted(ct_2015)
    for path in mr_2015 + ct_2023:  # the others are still there
        study, series = path.split("/studies/")[1].split("/series/")
        assert emulator.instance_uids(dicom_store, study, series)
    assert deployment.no_more_events() == []


@pytest.fixture
def lowered_limits(emulator: EmulatorAdmin) -> Iterator[None]:
    emulator.config(qidoMaxLimit=500, qidoMaxOffset=2000)
    yield
    emulator.config(qidoMaxLimit=0, qidoMaxOffset=1_000_000)


def test_a_sweep_past_the_search_limits_publishes_every_series_once(
    stack: Stack,
    deploy: Callable[..., Deployment],
    dicom_store: str,
    emulator: EmulatorAdmin,
    lowered_limits: None,
) -> None:
    assert stack.pubsub is not None
    rest = PubSubRest(stack.pubsub.url)
    children_topic = rest.create_topic(rest.topic_path(f"sweep-children-{uuid.uuid4().hex[:8]}"))
    children = rest.subscription_path(f"sweep-children-{uuid.uuid4().hex[:8]}-pull")
    rest.create_subscription(children, children_topic)
    seeded: list[str] = []
    for number in range(38):  # 19,000 dated series, 500 a study, over 38 dates in 2008-2026
        day = f"{2008 + number // 2}{1 + 6 * (number % 2):02d}15"
        seeded += seed_study(emulator, dicom_store, a_study(), 500, date=day, modality="CT")
    for _ in range(2):  # 1,000 without a date
        seeded += seed_study(emulator, dicom_store, a_study(), 500, date="", modality="CT")
    assert len(seeded) == 20_000
    env = {"REQUEST_TOPIC": children_topic, "SEARCH_PAGE_SIZE": "500", "SEARCH_MAX_OFFSET": "2000"}
    deployment = deploy(env)  # the children go to a topic no function is pushed from: they are counted

    emulator.clear_requests()
    started = time.monotonic()
    deployment.publish(
        {"action": "sweep", "store": dicom_store, "then": {"action": "search"}, "requestId": "all"}
    )
    (event,) = deployment.pull_events(1, timeout=180)
    elapsed = time.monotonic() - started

    assert (event.data["status"], event.data["published"]) == ("succeeded", 20_000), event.data
    published = rest.pull(children, 20_000, timeout=120)
    for message in published[:200]:
        assert_valid_request(message.data)
    counted = Counter(message.data["series"] for message in published)
    assert counted == Counter(seeded)  # each series once, the undated too
    assert rest.drain(children, 1.0) == []
    requests: list[dict[str, Any]] = emulator.requests()
    offsets = [int(r["query"].split("offset=")[1].split("&")[0]) for r in requests if "offset=" in r["query"]]
    assert max(offsets) <= 2000
    print(f"sweep of 20,000 series past the lowered limits: {elapsed:.1f} s")


def test_a_sweep_handed_on_at_every_page_still_publishes_each_series_once(
    deploy: Callable[..., Deployment], dicom_store: str, emulator: EmulatorAdmin
) -> None:
    """DEADLINE_SECONDS=1: the sweep hands itself on after every page, with its signed cursor, through the
    real request topic; 60 series over three dates and no date, pages of 10, offsets up to 20 (so the
    store is partitioned too): every series searched once, the sweep's event counting 60."""
    emulator.config(qidoMaxLimit=10, qidoMaxOffset=20)
    try:
        seeded: list[str] = []
        for day in ("20150601", "20160601", "20170601", ""):
            seeded += seed_study(emulator, dicom_store, a_study(), 15, date=day, modality="MR")
        deployment = deploy({"DEADLINE_SECONDS": "1", "SEARCH_PAGE_SIZE": "10", "SEARCH_MAX_OFFSET": "20"})
        tap = deployment.tap_requests()

        sweep = {"action": "sweep", "store": dicom_store, "then": {"action": "search"}, "requestId": "paged"}
        deployment.publish(sweep)
        events = deployment.pull_events(61, timeout=180)
    finally:
        emulator.config(qidoMaxLimit=0, qidoMaxOffset=1_000_000)

    (swept,) = [event.data for event in events if event.data["action"] == "sweep"]
    assert (swept["status"], swept["seriesCount"], swept["published"]) == ("succeeded", 60, 60), swept
    searched = Counter(event.data["series"] for event in events if event.data["action"] == "search")
    assert searched == Counter(seeded)
    follow_ups = [event for event in tap.drain(2.0) if "continuation" in event.attributes]
    assert len(follow_ups) >= 6  # at least one hand-on per page of 10
    assert all("cursor" in event.data and "signature" in event.data for event in follow_ups)
    assert deployment.no_more_events() == []
