"""The emulator's settable search limits (config qidoMaxLimit, qidoMaxOffset), empty value matching of
StudyDate, and the seed of many series at once: what the sweep's partitioned listing is tested against."""

from __future__ import annotations

from tests.emulator.conftest import Env


def series_search(env: Env, **params: str) -> tuple[int, list[dict[str, object]], str]:
    resp = env.http.get(f"{env.root}/series", params=params, headers={"Accept": "application/dicom+json"})
    return resp.status_code, (resp.json() if resp.status_code == 200 else []), resp.headers.get("Warning", "")


def test_lowered_limits_cap_pages_and_refuse_larger_offsets(env: Env) -> None:
    env.seed("1.2.9", "1.2.9.1", 1, seriesCount=30)
    env.admin("POST", "config", {"qidoMaxLimit": 10, "qidoMaxOffset": 20})

    status, page, warning = series_search(env, limit="25", offset="0")
    assert (status, len(page)) == (200, 10)
    assert "maximum of 10" in warning
    assert series_search(env, limit="10", offset="20")[0] == 200
    assert series_search(env, limit="10", offset="21")[0] == 400
    assert env.admin("GET", "config").json()["qidoMaxOffset"] == 20


def test_seed_of_many_series_and_empty_date_matching(env: Env) -> None:
    result = env.seed("1.2.7", "1.2.7.1", 2, seriesCount=4, studyDate="", modality="CT")
    env.seed("1.2.8", "1.2.8.1", 1, seriesCount=3, studyDate="20150601", modality="CT")

    assert result == {"seriesCount": 4, "created": 8}
    undated = series_search(env, StudyDate='""', limit="100")[1]
    assert sorted(item["0020000E"]["Value"][0] for item in undated) == [f"1.2.7.1.{k}" for k in range(1, 5)]  # type: ignore[index]
    dated = series_search(env, StudyDate="20000101-20201231", limit="100")[1]
    assert len(dated) == 3
    assert len(series_search(env, limit="100")[1]) == 7
