"""Action `sweep` (worker/sweep.py) against the fakes: the series of a store matching the filters, one
`then` request published per series (batched), children with derived requestIds, a signed cursor across
deadlines, and the listing partitioned past the server's paging limits (worker/enumeration.py)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from tests.unit.fakes import (
    ACTION_SETTINGS,
    COMPLETION_TOPIC,
    KEYS,
    REQUEST_TOPIC,
    STORE,
    Cataloged,
    Clock,
    Fakes,
    catalog_series,
    message,
)
from worker.delivery import Worker
from worker.enumeration import Cursor, Enumeration, Partition, SearchLimits, date_bounds
from worker.errors import Code, InvalidValue, PermanentError, RetryableError
from worker.models import DicomStore, SeriesRef
from worker.pubsub import Publisher
from worker.request import Action, Message, parse_request
from worker.sweep import sweep
from worker.sweep_request import SweepRequest, child_request_id, parse_message
from worker.wiring import actions

ARCHIVE_THEN = {"action": "archive", "destination": "gs://my-bucket/archive", "options": {"mode": "series"}}


def sweep_body(**fields: Any) -> dict[str, Any]:
    return {"action": "sweep", "store": STORE, "then": ARCHIVE_THEN, "requestId": "nightly-1", **fields}


def worker(fakes: Fakes, settings: Any = ACTION_SETTINGS) -> Worker:
    return Worker(settings, fakes.ports, actions(), clock=fakes.clock, sweep=sweep)


def children(fakes: Fakes) -> list[dict[str, Any]]:
    return [p.json() for p in fakes.publisher.to(REQUEST_TOPIC) if "continuation" not in p.attributes]


def event(fakes: Fakes) -> dict[str, Any]:
    events = fakes.publisher.to(COMPLETION_TOPIC)
    assert len(events) == 1
    body: dict[str, Any] = events[0].json()
    return body


def mixed_store(fakes: Fakes) -> dict[str, list[Cataloged]]:
    groups = {
        "ct2015": catalog_series(3, study_date="20150601", modality="CT", study=1),
        "mr2015": catalog_series(2, study_date="20150601", modality="MR", study=2),
        "ct2021": catalog_series(4, study_date="20210301", modality="CT", study=3),
        "ct_undated": catalog_series(2, study_date=None, modality="CT", study=4),
    }
    for group in groups.values():
        fakes.source.catalog.extend(group)
    return groups


def paths(entries: list[Cataloged]) -> set[str]:
    return {entry.series.source for entry in entries}


# -- the request -------------------------------------------------------------------------------------


def test_a_sweep_parses_into_its_own_request_whose_then_is_a_series_request() -> None:
    body = sweep_body(filters={"modality": "CT", "studyDate": "20100101-20191231"})

    request = parse_message(message(body))

    assert isinstance(request, SweepRequest)
    assert request.store == DicomStore.parse(STORE)
    assert request.filters == {"Modality": "CT", "StudyDate": "20100101-20191231"}
    assert request.then.action is Action.ARCHIVE
    assert request.then.destination is not None and request.then.destination.uri() == "gs://my-bucket/archive"
    assert request.as_json()["filters"] == body["filters"]
    assert request.as_json()["then"] == {**ARCHIVE_THEN}


def test_a_series_request_still_parses_through_parse_message() -> None:
    series = f"{STORE}/dicomWeb/studies/1.2/series/1.2.3"

    request = parse_message(message({"action": "search", "series": series}))

    assert not isinstance(request, SweepRequest)
    assert request.series.source == series


@pytest.mark.parametrize(
    ("fields", "wanted"),
    [
        ({"then": {"action": "sweep"}}, "sweep is not a series action"),
        ({"then": {"action": "archive", "series": "studies/1/series/2"}}, "then accepts only"),
        ({"then": "archive"}, "then must be an object"),
        ({"then": {"action": "retrieve", "options": {"method": "import"}}}, "unknown options for retrieve"),
        ({"filters": {"patientName": "X"}}, "filters accepts only"),
        ({"filters": {"modality": "ct"}}, "filters.modality"),
        ({"filters": {"studyDate": "2015"}}, "studyDate must be"),
        ({"filters": {"studyDate": "20200101-20100101"}}, "ends before it starts"),
        ({"filters": ["CT"]}, "filters must be an object"),
        ({"series": "studies/1/series/2"}, "unknown fields"),
        ({"store": "projects/p"}, ""),
        ({"cursor": "all/0"}, "need its signature"),
        ({"published": 5}, "need its signature"),
        ({"continuation": 1}, "need its signature"),
        ({"published": -1}, "published must be"),
        ({"continuation": "1"}, "continuation must be"),
    ],
)
def test_a_bad_sweep_is_invalid_request_naming_no_value(fields: dict[str, Any], wanted: str) -> None:
    with pytest.raises(PermanentError) as caught:
        parse_message(message(sweep_body(**fields)), KEYS)

    assert caught.value.code is Code.INVALID_REQUEST
    assert wanted in caught.value.message


def test_a_signed_cursor_is_accepted_and_a_bad_one_refused_even_signed() -> None:
    body = sweep_body(cursor="20150101-20151231/500", published=500, continuation=1)
    body["signature"] = KEYS.sign(body)

    request = parse_message(message(body), KEYS)

    assert isinstance(request, SweepRequest)
    assert request.cursor == Cursor(Partition("range", *date_bounds("20150101-20151231") or ()), 500)
    assert request.published == 500
    bad = sweep_body(cursor="sometime/5", continuation=1)
    bad["signature"] = KEYS.sign(bad)
    with pytest.raises(PermanentError, match="cursor must be"):
        parse_message(message(bad), KEYS)


def test_parse_request_refuses_a_sweep_the_cli_would_send_as_a_series_request() -> None:
    with pytest.raises(PermanentError, match="sweep is not a series action"):
        parse_request(message({"action": "sweep", "series": f"{STORE}/dicomWeb/studies/1/series/2"}))


def test_child_request_ids_are_derived_stable_valid_and_distinct() -> None:
    store = DicomStore.parse(STORE)
    one, two = SeriesRef(store, "1.2", "1.2.3"), SeriesRef(store, "1.2", "1.2.4")
    long_id = "x" * 128

    assert child_request_id("nightly-1", one) == child_request_id("nightly-1", one)
    assert child_request_id("nightly-1", one) != child_request_id("nightly-1", two)
    assert child_request_id("nightly-1", one) != child_request_id("nightly-2", one)
    assert child_request_id("nightly-1", one).startswith("nightly-1.")
    derived = child_request_id(long_id, one)
    assert len(derived) == 121
    parse_request(message({"action": "search", "series": one.source, "requestId": derived}))


# -- the action --------------------------------------------------------------------------------------


def test_a_sweep_publishes_one_archive_request_per_matching_series_then_its_event() -> None:
    fakes = Fakes()
    groups = mixed_store(fakes)
    body = sweep_body(filters={"modality": "CT", "studyDate": "20100101-20191231"})

    worker(fakes).handle(message(body))

    published = children(fakes)
    assert {child["series"] for child in published} == paths(groups["ct2015"])
    for child in published:
        request = parse_request(message(child))
        assert request.action is Action.ARCHIVE
        assert request.request_id == child_request_id("nightly-1", request.series)
        assert child["destination"] == "gs://my-bucket/archive"
        assert child["options"] == {"mode": "series"}
    assert event(fakes)["seriesCount"] == 3
    assert event(fakes)["published"] == 3
    assert event(fakes)["action"] == "sweep"
    assert event(fakes)["series"] is None


def test_without_filters_every_series_is_published_the_undated_too() -> None:
    fakes = Fakes()
    groups = mixed_store(fakes)

    worker(fakes).handle(message(sweep_body()))

    assert Counter(child["series"] for child in children(fakes)) == Counter(
        entry.series.source for group in groups.values() for entry in group
    )
    assert event(fakes)["published"] == 11


def test_a_modality_filter_alone_keeps_the_undated_studies_of_that_modality() -> None:
    fakes = Fakes()
    groups = mixed_store(fakes)

    worker(fakes).handle(message(sweep_body(filters={"modality": "CT"})))

    wanted = paths(groups["ct2015"]) | paths(groups["ct2021"]) | paths(groups["ct_undated"])
    assert {child["series"] for child in children(fakes)} == wanted


def test_a_page_of_requests_goes_out_as_one_batch() -> None:
    fakes = Fakes()
    fakes.source.catalog.extend(catalog_series(12))
    settings = replace(ACTION_SETTINGS, search_page_size=5)

    worker(fakes, settings).handle(message(sweep_body()))

    assert len(children(fakes)) == 12
    assert fakes.publisher.batches == 3  # pages of 5, 5 and 2


def test_a_sweep_with_no_match_publishes_nothing_and_succeeds() -> None:
    fakes = Fakes()
    mixed_store(fakes)

    worker(fakes).handle(message(sweep_body(filters={"modality": "US"})))

    assert children(fakes) == []
    assert event(fakes)["status"] == "succeeded"
    assert event(fakes)["published"] == 0


def test_archive_children_need_delete_enabled_before_anything_is_published() -> None:
    fakes = Fakes()
    mixed_store(fakes)

    worker(fakes, replace(ACTION_SETTINGS, delete_enabled=False)).handle(message(sweep_body()))

    assert children(fakes) == []
    assert event(fakes)["error"]["code"] == "delete_disabled"
    assert fakes.source.calls["search_series_page"] == 0


def test_a_store_outside_allowed_dicom_stores_is_refused() -> None:
    fakes = Fakes()
    mixed_store(fakes)
    settings = replace(
        ACTION_SETTINGS, allowed_dicom_stores=("projects/other/locations/*/datasets/*/dicomStores/*",)
    )

    worker(fakes, settings).handle(message(sweep_body()))

    assert event(fakes)["error"]["code"] == "store_not_allowed"
    assert children(fakes) == []


def test_without_request_topic_a_sweep_fails_request_topic_missing() -> None:
    fakes = Fakes()
    mixed_store(fakes)
    settings = replace(ACTION_SETTINGS, request_topic=None)

    worker(fakes, settings).handle(message(sweep_body(then={"action": "search"})))

    assert event(fakes)["error"]["code"] == "request_topic_missing"


def test_a_worker_built_without_sweep_refuses_one() -> None:
    fakes = Fakes()

    Worker(ACTION_SETTINGS, fakes.ports, actions()).handle(message(sweep_body(then={"action": "search"})))

    assert event(fakes)["error"]["code"] == "invalid_request"


def test_a_failed_publish_is_retried_by_redelivery() -> None:
    fakes = Fakes()
    mixed_store(fakes)
    fakes.publisher.fail = True

    with pytest.raises(RetryableError):
        worker(fakes).handle(message(sweep_body()))


# -- continuation ------------------------------------------------------------------------------------


class SlowSource:
    """Moves the clock on each search page, so that a sweep meets its deadline part-way."""

    def __init__(self, fakes: Fakes, seconds: float) -> None:
        self.fakes, self.seconds = fakes, seconds
        self.real = fakes.source.search_series_page

    def __call__(self, *args: Any) -> list[SeriesRef]:
        self.fakes.clock.advance(self.seconds)
        return self.real(*args)


def test_at_the_deadline_a_sweep_hands_on_its_cursor_and_every_series_is_published_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fakes = Fakes(clock=Clock())
    groups = mixed_store(fakes)
    spread = [catalog_series(4, study_date=f"201901{day:02d}", study=10 + day) for day in range(1, 11)]
    for group in spread:
        fakes.source.catalog.extend(group)
    settings = replace(ACTION_SETTINGS, search_page_size=4, search_max_offset=8, deadline_seconds=60)
    monkeypatch.setattr(fakes.source, "search_series_page", SlowSource(fakes, 7.0))
    handler = worker(fakes, settings)

    handler.handle(message(sweep_body()))
    deliveries = 1
    while not fakes.publisher.to(COMPLETION_TOPIC):
        follow_ups = [p for p in fakes.publisher.to(REQUEST_TOPIC) if "continuation" in p.attributes]
        handed = follow_ups[-1]
        assert "cursor" in handed.json() and "signature" in handed.json()
        handler.handle(Message(handed.data, handed.attributes, f"follow-up-{deliveries}"))
        deliveries += 1

    everything = [entry.series.source for group in groups.values() for entry in group]
    everything += [entry.series.source for group in spread for entry in group]
    assert deliveries > 2
    assert Counter(child["series"] for child in children(fakes)) == Counter(everything)
    assert event(fakes)["published"] == len(everything) == 51


def test_a_forged_cursor_is_refused() -> None:
    fakes = Fakes()
    mixed_store(fakes)
    body = sweep_body(cursor="undated/0", continuation=1)
    body["signature"] = "v1:worker-1:" + "A" * 43

    worker(fakes).handle(message(body))

    assert event(fakes)["error"]["code"] == "invalid_request"
    assert children(fakes) == []


# -- enumeration past the paging limits --------------------------------------------------------------


def listing(fakes: Fakes, filters: dict[str, str], page: int, offset: int) -> list[str]:
    enumeration = Enumeration(fakes.source, DicomStore.parse(STORE), filters, SearchLimits(page, offset))
    return [series.source for series in enumeration.all()]


def test_a_store_larger_than_paging_reaches_is_split_by_date_and_listed_once() -> None:
    fakes = Fakes()
    for number, day in enumerate(["19991231", "20150601", "20150602", "20210301", "20240229"], 1):
        fakes.source.catalog.extend(catalog_series(9, study_date=day, study=number))
    fakes.source.catalog.extend(catalog_series(7, study_date=None, study=9))
    fakes.source.max_limit, fakes.source.max_offset = 4, 8

    found = listing(fakes, {}, 4, 8)

    assert Counter(found) == Counter(entry.series.source for entry in fakes.source.catalog)
    dated = listing(fakes, {"StudyDate": "20150101-20211231"}, 4, 8)
    assert sorted(dated) == sorted(
        entry.series.source
        for entry in fakes.source.catalog
        if entry.study_date is not None and "20150101" <= entry.study_date <= "20211231"
    )


def test_a_store_within_reach_is_listed_in_one_partition() -> None:
    fakes = Fakes()
    fakes.source.catalog.extend(catalog_series(5, study_date=None))

    assert len(listing(fakes, {}, 10, 100)) == 5
    assert fakes.source.calls["search_series_page"] == 3  # the probe, a short page, the empty page


def test_more_series_on_one_date_than_paging_reaches_is_search_incomplete() -> None:
    fakes = Fakes()
    fakes.source.catalog.extend(catalog_series(20, study_date="20150601"))

    with pytest.raises(PermanentError) as caught:
        listing(fakes, {}, 4, 8)

    assert caught.value.code is Code.SEARCH_INCOMPLETE
    assert "on one StudyDate" in caught.value.message


def test_more_undated_series_than_paging_reaches_is_search_incomplete() -> None:
    fakes = Fakes()
    fakes.source.catalog.extend(catalog_series(20, study_date=None))

    with pytest.raises(PermanentError, match="without a StudyDate"):
        listing(fakes, {}, 4, 8)


def test_a_server_that_ignores_offset_is_search_incomplete() -> None:
    fakes = Fakes()
    fakes.source.catalog.extend(catalog_series(6))
    first = fakes.source.catalog[:4]

    def ignoring_offset(store: Any, params: Any, limit: int, offset: int) -> list[SeriesRef]:
        return [] if offset == 100 else [entry.series for entry in first]  # the probe finds nothing

    fakes.source.search_series_page = ignoring_offset  # type: ignore[method-assign]

    with pytest.raises(PermanentError, match="same page again"):
        listing(fakes, {}, 4, 100)


def test_a_server_that_caps_its_results_is_search_incomplete() -> None:
    fakes = Fakes()
    fakes.source.catalog.extend(catalog_series(6))
    pages = iter([[], [entry.series for entry in fakes.source.catalog[:3]], [fakes.source.catalog[3].series]])
    fakes.source.search_series_page = lambda *args: next(pages)  # type: ignore[method-assign]

    with pytest.raises(PermanentError, match="after a short page"):
        listing(fakes, {}, 4, 100)


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("20150101", ("20150101", "20150101")),
        ("20150101-", ("20150101", "99991231")),
        ("-20150101", ("00010101", "20150101")),
        ("20150101-20151231", ("20150101", "20151231")),
    ],
)
def test_date_filters_become_their_first_and_last_day(text: str, wanted: tuple[str, str]) -> None:
    bounds = date_bounds(text)

    assert bounds is not None
    assert tuple(day.strftime("%Y%m%d").zfill(8) for day in bounds) == wanted


@pytest.mark.parametrize("text", ["-", "2015", "20151301", "20151231-20150101", "x/1", "20150101-20151231/x"])
def test_bad_dates_and_cursors_are_invalid_values(text: str) -> None:
    with pytest.raises(InvalidValue):
        if "/" in text:
            Cursor.parse(text)
        else:
            date_bounds(text)


def test_cursors_round_trip() -> None:
    for text in ["all/0", "undated/17", "20150101-20151231/4000"]:
        assert Cursor.parse(text).encode() == text
    with pytest.raises(InvalidValue, match="end before"):
        Cursor.parse("20160101-20150101/0")


# -- the Pub/Sub batch -------------------------------------------------------------------------------


class Future:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def result(self, timeout: float) -> str:
        if self.error is not None:
            raise self.error
        return "1"


class BatchingClient:
    def __init__(self, fail_at: int | None = None, refuse_at: int | None = None) -> None:
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []
        self.fail_at, self.refuse_at = fail_at, refuse_at

    def publish(self, topic: str, data: bytes, **attributes: str) -> Future:
        if len(self.sent) == self.refuse_at:
            raise ValueError("stopped")
        self.sent.append((topic, data, attributes))
        return Future(TimeoutError() if len(self.sent) - 1 == self.fail_at else None)


def test_publish_batch_hands_every_message_over_then_waits_on_all() -> None:
    client = BatchingClient()
    publisher = Publisher(client=object(), batching_client=client)

    count = publisher.publish_batch(REQUEST_TOPIC, [(b"{}", {"a": "1"}), (b"[]", {})])

    assert count == 2
    assert client.sent == [(REQUEST_TOPIC, b"{}", {"a": "1"}), (REQUEST_TOPIC, b"[]", {})]


@pytest.mark.parametrize("client", [BatchingClient(fail_at=1), BatchingClient(refuse_at=1)])
def test_a_failed_message_of_a_batch_is_retryable_naming_no_data(client: BatchingClient) -> None:
    publisher = Publisher(client=object(), batching_client=client)

    with pytest.raises(RetryableError) as caught:
        publisher.publish_batch(REQUEST_TOPIC, [(b"{}", {}), (b"{}", {}), (b"{}", {})])

    assert "{}" not in str(caught.value)


def test_a_batch_refuses_empty_data() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Publisher(client=object(), batching_client=BatchingClient()).publish_batch(REQUEST_TOPIC, [(b"", {})])


def test_sweep_children_carry_the_then_options_only_of_their_action() -> None:
    fakes = Fakes()
    fakes.source.catalog.extend(catalog_series(1))
    then = {
        "action": "retrieve",
        "options": {"transferSyntax": "1.2.840.10008.1.2.1", "includeMetadata": True},
    }

    worker(fakes).handle(message(sweep_body(then=then)))

    (child,) = children(fakes)
    assert child["options"] == {
        "transferSyntax": "1.2.840.10008.1.2.1",
        "includeMetadata": True,
        "mode": "auto",
    }
    assert json.loads(fakes.publisher.to(REQUEST_TOPIC)[0].data)["action"] == "retrieve"


def test_a_sweep_redelivered_after_a_failure_republishes_the_same_children(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed part-way (here: the second batch fails), the redelivery starts from the message's cursor:
    the first page's requests go out again with the same requestIds and bodies (each action is
    idempotent), and the sweep's event counts each series once."""
    fakes = Fakes()
    fakes.source.catalog.extend(catalog_series(10))
    settings = replace(ACTION_SETTINGS, search_page_size=4)
    real = fakes.publisher.publish_batch
    calls = {"n": 0}

    def failing_second(topic: str, messages: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RetryableError("publishing a batch failed: DeadlineExceeded")
        return real(topic, messages)

    monkeypatch.setattr(fakes.publisher, "publish_batch", failing_second)
    with pytest.raises(RetryableError):
        worker(fakes, settings).handle(message(sweep_body(), delivery_attempt=1))
    worker(fakes, settings).handle(message(sweep_body(), delivery_attempt=2))

    sent = children(fakes)
    counted = Counter(json.dumps(child, sort_keys=True) for child in sent)
    assert len(sent) == 14 and len(counted) == 10  # the first page of 4 twice, identical
    assert max(counted.values()) == 2
    assert event(fakes)["published"] == 10
