"""Mode `auto` (the default): a series of small instances is read with one RetrieveSeries request, one of
large instances with a RetrieveInstance each, chosen from the Healthcare API's series metrics or, without
them, from the first part's length; the event says which mode copied the series."""

from __future__ import annotations

import pytest

from infra.local.dicom_factory import make_instance
from tests.unit.fakes import BUCKET, Fakes, FakeSource, sop
from worker.models import SeriesMetrics
from worker.request import Action, Mode, RetrieveOptions
from worker.retrieve import SERIES_MODE_MAX_BYTES, choose_mode, copy_series

MIB = 1024 * 1024


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


def retrieve(fakes: Fakes, mode: Mode = Mode.AUTO) -> dict[str, object]:
    result = copy_series(fakes.job(Action.RETRIEVE, options=RetrieveOptions(mode=mode)))
    assert isinstance(result, dict)
    return result


def add_large(source: FakeSource, number: int) -> bytes:
    """An instance of 9 MiB (its Part 10 head, then padding the identity check does not read)."""
    head = make_instance(source.series.study_uid, source.series.series_uid, sop(number), number=number)
    return source.add(sop(number), head + b"\x00" * (9 * MIB - len(head)), number=number)


@pytest.mark.parametrize(
    ("requested", "metrics", "chosen"),
    [
        (Mode.AUTO, SeriesMetrics(500, 500 * 500_000), Mode.SERIES),
        (Mode.AUTO, SeriesMetrics(50, 50 * 20_000_000), Mode.INSTANCES),
        (Mode.AUTO, SeriesMetrics(4, 4 * SERIES_MODE_MAX_BYTES), Mode.SERIES),
        (Mode.AUTO, SeriesMetrics(4, 4 * SERIES_MODE_MAX_BYTES + 4), Mode.INSTANCES),
        (Mode.AUTO, SeriesMetrics(3, None), None),  # no bytes: the first part decides
        (Mode.AUTO, None, None),  # not the Healthcare API
        (Mode.INSTANCES, SeriesMetrics(500, 500 * 500_000), Mode.INSTANCES),
        (Mode.SERIES, SeriesMetrics(1, 10**9), Mode.SERIES),
    ],
)
def test_choose_mode(requested: Mode, metrics: SeriesMetrics | None, chosen: Mode | None) -> None:
    assert choose_mode(requested, metrics) is chosen


def test_auto_reads_a_series_of_small_instances_in_one_request(fakes: Fakes) -> None:
    originals = fakes.source.add_series(5)

    result = retrieve(fakes)

    assert result["mode"] == "series"
    assert (fakes.source.calls["retrieve_series"], fakes.source.calls["retrieve_instance"]) == (1, 0)
    assert {uid: fakes.bucket.data(BUCKET, fakes.folder().instance(uid)) for uid in originals} == originals


def test_auto_reads_a_series_of_large_instances_one_request_each(fakes: Fakes) -> None:
    originals = fakes.source.add_series(3)
    fakes.source.metrics_bytes = 3 * 20_000_000  # as the Healthcare API reports them: 20 MB each

    result = retrieve(fakes)

    assert result["mode"] == "instances"
    assert (fakes.source.calls["retrieve_series"], fakes.source.calls["retrieve_instance"]) == (0, 3)
    assert {uid: fakes.bucket.data(BUCKET, fakes.folder().instance(uid)) for uid in originals} == originals


def test_without_metrics_a_small_first_part_keeps_the_series_stream() -> None:
    fakes = Fakes(FakeSource(healthcare=False))
    originals = fakes.source.add_series(3)
    originals[sop(4)] = add_large(fakes.source, 4)  # after the first part: streamed inline

    result = retrieve(fakes)

    assert result["mode"] == "series"
    assert (fakes.source.calls["retrieve_series"], fakes.source.calls["retrieve_instance"]) == (1, 0)
    assert {uid: fakes.bucket.data(BUCKET, fakes.folder().instance(uid)) for uid in originals} == originals


def test_without_metrics_a_large_first_part_switches_to_one_request_per_instance() -> None:
    fakes = Fakes(FakeSource(healthcare=False))
    originals = {sop(1): add_large(fakes.source, 1)}
    originals.update({sop(n): fakes.source.add(sop(n), number=n) for n in (2, 3)})

    result = retrieve(fakes)

    assert result["mode"] == "instances"
    assert (fakes.source.calls["retrieve_series"], fakes.source.calls["retrieve_instance"]) == (1, 3)
    assert {uid: fakes.bucket.data(BUCKET, fakes.folder().instance(uid)) for uid in originals} == originals


def test_auto_reads_nothing_when_every_object_is_there_already(fakes: Fakes) -> None:
    fakes.source.add_series(3)
    retrieve(fakes, Mode.INSTANCES)
    before = dict(fakes.source.calls)

    result = retrieve(fakes)

    assert result["mode"] == "instances"
    assert result["skippedCount"] == 3
    assert fakes.source.calls["retrieve_series"] == before.get("retrieve_series", 0) == 0
    assert fakes.source.calls["retrieve_instance"] == before["retrieve_instance"] == 3


@pytest.mark.parametrize("mode", [Mode.INSTANCES, Mode.SERIES])
def test_an_explicit_mode_is_kept_whatever_the_sizes(fakes: Fakes, mode: Mode) -> None:
    fakes.source.add_series(3)
    fakes.source.metrics_bytes = 3 * 20_000_000 if mode is Mode.SERIES else 3 * 1000

    result = retrieve(fakes, mode)

    assert result["mode"] == str(mode)
    assert fakes.source.calls["retrieve_series"] == (1 if mode is Mode.SERIES else 0)
