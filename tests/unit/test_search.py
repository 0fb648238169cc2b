"""Action `search` (worker/search.py) against the fake source: complete or nothing, the series metrics
recheck, and the settling search after deletes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import worker.search
from tests.unit.fakes import ACTION_SETTINGS, BUCKET, Fakes, sop
from worker.errors import Code, PermanentError
from worker.models import GcsLocation, Instance
from worker.request import Action
from worker.search import RECHECK_SECONDS, SETTLE_MARGIN_SECONDS, find_instances, search, settled


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    """The fakes, with worker.search sleeping on the fakes' clock."""
    made = Fakes()
    monkeypatch.setattr(worker.search, "time", made.clock)
    return made


def test_search_lists_every_instance_by_number_then_uid(fakes: Fakes) -> None:
    fakes.source.add(sop(3), number=1)
    fakes.source.add(sop(1), number=2)
    fakes.source.add(sop(2))  # no instance number: last
    fakes.source.add(sop(0), number=1)

    result = search(fakes.job(Action.SEARCH))

    assert result == {
        "instanceCount": 4,
        "instances": [
            {"sopInstanceUID": uid, "sopClassUID": "1.2.840.10008.5.1.4.1.1.7", "instanceNumber": number}
            for uid, number in [(sop(0), 1), (sop(3), 1), (sop(1), 2), (sop(2), None)]
        ],
    }


def test_search_pages_through_a_series_larger_than_a_page(fakes: Fakes) -> None:
    fakes.source.add_series(7)

    found = find_instances(fakes.job(Action.SEARCH, settings=replace(ACTION_SETTINGS, search_page_size=3)))

    assert [instance.sop_uid for instance in found] == [sop(n) for n in range(1, 8)]
    assert fakes.source.pages == 4  # three pages, and the empty one that ends the listing


def test_a_count_that_disagrees_with_the_metrics_is_searched_once_more(fakes: Fakes) -> None:
    fakes.source.add_series(3)
    fakes.source.metrics_offset = 1  # the metrics already count an instance being stored

    def stored() -> None:
        fakes.source.add(sop(4), number=4)
        fakes.source.metrics_offset = 0

    fakes.source.at("search_instances", 2, stored)

    found = find_instances(fakes.job(Action.SEARCH))

    assert [instance.sop_uid for instance in found] == [sop(n) for n in range(1, 5)]
    assert fakes.source.calls["search_instances"] == 2
    assert fakes.clock.slept == [RECHECK_SECONDS]


def test_a_count_that_stays_different_is_search_incomplete(fakes: Fakes) -> None:
    fakes.source.add_series(3)
    fakes.source.metrics_offset = 1

    with pytest.raises(PermanentError) as error:
        search(fakes.job(Action.SEARCH))

    assert error.value.code is Code.SEARCH_INCOMPLETE
    assert error.value.message == (
        "the search found 3 instances but the series metrics count 4; nothing was acted on"
    )
    assert fakes.source.calls["search_instances"] == 2


def test_a_server_without_metrics_is_not_rechecked(fakes: Fakes) -> None:
    fakes.source = type(fakes.source)(healthcare=False)
    fakes.source.add_series(2)

    found = find_instances(fakes.job(Action.SEARCH))

    assert len(found) == 2
    assert fakes.source.calls["search_instances"] == 1
    assert fakes.clock.slept == []


def test_an_absent_store_or_study_is_series_not_found(fakes: Fakes) -> None:
    fakes.source.absent = True

    with pytest.raises(PermanentError) as error:
        search(fakes.job(Action.SEARCH))

    assert error.value.code is Code.SERIES_NOT_FOUND
    assert error.value.message == "the DICOM store or study is not found (404)"


def test_an_empty_series_is_an_empty_result(fakes: Fakes) -> None:
    assert search(fakes.job(Action.SEARCH)) == {"instanceCount": 0, "instances": []}


def test_a_listing_too_large_for_the_event_goes_to_the_destination(fakes: Fakes) -> None:
    fakes.source.add_series(3)
    settings = replace(ACTION_SETTINGS, event_inline_bytes=10)

    result = search(fakes.job(Action.SEARCH, settings=settings))

    name = f"archive/{fakes.source.series.study_uid}/{fakes.source.series.series_uid}/instances.json"
    assert result == {"instanceCount": 3, "instancesUri": f"gs://{BUCKET}/{name}"}
    written = json.loads(fakes.bucket.data(BUCKET, name))
    assert written["series"] == fakes.source.series.source
    assert written["instanceCount"] == 3
    assert [item["sopInstanceUID"] for item in written["instances"]] == [sop(1), sop(2), sop(3)]


def test_a_listing_too_large_without_a_destination_is_result_too_large(fakes: Fakes) -> None:
    fakes.source.add_series(3)
    settings = replace(ACTION_SETTINGS, event_inline_bytes=10, default_destination=None)

    with pytest.raises(PermanentError) as error:
        search(fakes.job(Action.SEARCH, settings=settings))

    assert error.value.code is Code.RESULT_TOO_LARGE
    assert error.value.message == (
        "3 instances do not fit in an event and no destination is set to write them to"
    )
    assert fakes.bucket.objects == {}


def test_a_listing_too_large_for_a_refused_destination_is_not_written(fakes: Fakes) -> None:
    fakes.source.add_series(3)
    settings = replace(ACTION_SETTINGS, event_inline_bytes=10)

    with pytest.raises(PermanentError) as error:
        search(fakes.job(Action.SEARCH, settings=settings, destination=GcsLocation("elsewhere", "x")))

    assert error.value.code is Code.DESTINATION_NOT_ALLOWED
    assert fakes.bucket.objects == {}


# -- settled: the search after deletes ------------------------------------------------------------


def deleted_all(fakes: Fakes, count: int, *, lag: int) -> None:
    fakes.source.add_series(count)
    for uid in fakes.source.uids():
        fakes.source.delete_instance(fakes.source.series, uid)
    fakes.source.search_lag = lag


def everything(instance: Instance) -> bool:
    return True


def test_settled_searches_again_while_the_search_lags_behind_deletes(fakes: Fakes) -> None:
    deleted_all(fakes, 2, lag=2)
    settings = replace(ACTION_SETTINGS, search_settle_seconds=30.0)

    listing = settled(fakes.job(Action.DELETE, settings=settings), everything)

    assert listing.instances == []
    assert listing.consistent
    assert fakes.clock.slept == [0.25, 0.5]  # backoff between the three searches


def test_settled_gives_up_after_search_settle_seconds(fakes: Fakes) -> None:
    deleted_all(fakes, 2, lag=1000)
    settings = replace(ACTION_SETTINGS, search_settle_seconds=10.0)

    listing = settled(fakes.job(Action.DELETE, settings=settings), everything)

    assert [instance.sop_uid for instance in listing.instances] == [sop(1), sop(2)]
    assert sum(fakes.clock.slept) <= 10.0
    assert fakes.clock.slept == [0.25, 0.5, 1.0, 2.0, 4.0]  # the next wait would pass the 10 s


def test_settled_never_waits_past_the_margin_before_the_deadline(fakes: Fakes) -> None:
    deleted_all(fakes, 1, lag=1000)
    settings = replace(ACTION_SETTINGS, search_settle_seconds=30.0)

    settled(fakes.job(Action.DELETE, settings=settings, remaining=SETTLE_MARGIN_SECONDS + 1.0), everything)

    assert sum(fakes.clock.slept) <= 1.0


def test_settled_waits_only_for_instances_it_was_told_were_deleted(fakes: Fakes) -> None:
    fakes.source = type(fakes.source)(healthcare=False)  # no metrics to disagree with the lagging search
    deleted_all(fakes, 1, lag=1000)
    fakes.source.add(sop(9))
    settings = replace(ACTION_SETTINGS, search_settle_seconds=30.0)

    listing = settled(fakes.job(Action.DELETE, settings=settings), lambda i: i.sop_uid == sop(2))

    assert {instance.sop_uid for instance in listing.instances} == {sop(1), sop(9)}
    assert fakes.clock.slept == []  # sop(1) lags, but it was not said to be deleted: no wait


def test_settled_waits_for_the_metrics_to_agree(fakes: Fakes) -> None:
    fakes.source.metrics_offset = 1
    fakes.source.at("search_instances", 3, lambda: setattr(fakes.source, "metrics_offset", 0))
    settings = replace(ACTION_SETTINGS, search_settle_seconds=30.0)

    listing = settled(fakes.job(Action.DELETE, settings=settings), everything)

    assert listing.consistent
    assert listing.metrics_count == 0
    assert fakes.clock.slept == [0.25, 0.5]
