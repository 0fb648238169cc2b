"""QIDO-RS of the emulator: the query parameters (limits, includefield, matching attributes), the matching of
studies, series and instances, and the DICOM JSON records of the results."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from urllib.parse import parse_qs

from pydicom.datadict import dictionary_VR

from .dicom import JsonDict, tag_key, without_bulk
from .errors import ApiError
from .records import Instance, Store

# ---- QIDO-RS limits (Healthcare API quotas page; defaults from Google's DICOM adapter and user reports)
DEFAULT_LIMIT = {"study": 100, "series": 100, "instance": 1000}
MAX_LIMIT = {"study": 5000, "series": 5000, "instance": 50000}
MAX_OFFSET = 1_000_000
TRUNCATED_WARNING = "The number of results exceeded the maximum, additional results can be requested"


# ---- attributes returned by default (DICOM PS3.18 Table 6.7.1-2 and what the worker relies on)
def _tags(text: str) -> tuple[str, ...]:
    return tuple(text.split())


STUDY_DEFAULT = _tags(
    "00080020 00080030 00080050 00080090 00100010 00100020 00100030 00100040 0020000D 00200010"
)
SERIES_DEFAULT = _tags("00080060 0008103E 0020000E 00200011 00400244 00400245")
INSTANCE_DEFAULT = _tags("00080016 00080018 00200013 00280008 00280010 00280011 00280100")
# Which attributes are "study level" / "series level" when includefield=all is asked above instance level.
STUDY_LEVEL = frozenset(STUDY_DEFAULT + _tags("00081030 00080080 00201070 00321032 00321060"))
SERIES_LEVEL = frozenset(
    SERIES_DEFAULT + _tags("00080021 00080031 00080070 00081090 00180015 00185100 00200060")
)
SERIES_EXTRA = _tags("0020000D 00080020")  # always in series results
INSTANCE_EXTRA = _tags("0020000D 0020000E 00080060 00080020")  # always in instance results
# Searchable attributes by level (others answer 400).
SEARCHABLE_STUDY = frozenset(
    _tags(
        "0020000D 00080020 00080030 00080050 00080090 00100010 00100020 00200010 00081030 00080061 00080060"
    )
)
SEARCHABLE_SERIES = (SEARCHABLE_STUDY - {"00080061"}) | frozenset(
    _tags("0020000E 00200011 0008103E 00400244")
)
SEARCHABLE_INSTANCE = SEARCHABLE_SERIES | frozenset(_tags("00080018 00080016 00200013"))
SEARCHABLE = {"study": SEARCHABLE_STUDY, "series": SEARCHABLE_SERIES, "instance": SEARCHABLE_INSTANCE}
QIDO_CONTROL = frozenset({"limit", "offset", "includefield", "fuzzymatching"})


def _values(elem: JsonDict | None) -> list[str]:
    if not elem:
        return []
    out = []
    for value in elem.get("Value") or []:
        if isinstance(value, dict):
            value = value.get("Alphabetic", "")
        out.append(str(value))
    return out


def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.IGNORECASE if ignore_case else 0)


def make_matcher(key: str, pattern: str) -> Callable[[list[str]], bool]:
    vr = dictionary_VR(int(key, 16))
    if pattern == "":
        return lambda values: True
    if pattern == '""':  # empty value matching (PS3.4 C.2.2.2.1.1): no value, or an empty one
        return lambda values: not any(v.strip() for v in values)
    if vr == "UI":
        wanted = {uid.strip() for uid in re.split(r"[,\\]", pattern) if uid.strip()}
        return lambda values: any(v in wanted for v in values)
    if vr in ("DA", "TM", "DT") and "-" in pattern:
        low, _, high = pattern.partition("-")
        return lambda values: any(
            (not low or v >= low) and (not high or v[: len(high)] <= high) for v in values
        )
    ignore_case = vr == "PN"
    if "*" in pattern or "?" in pattern:
        regex = _wildcard(pattern, ignore_case)
        return lambda values: any(regex.fullmatch(v) for v in values)
    if vr == "IS":
        return lambda values: any(v.strip() == pattern.strip().lstrip("+") for v in values)
    if ignore_case:
        return lambda values: any(v.lower() == pattern.lower() for v in values)
    return lambda values: any(v == pattern for v in values)


@dataclass
class QidoQuery:
    limit: int
    offset: int
    include_all: bool
    includes: list[str]
    filters: list[tuple[str, Callable[[list[str]], bool]]]
    warnings: list[str]


def parse_qido(query: str, level: str, max_limit: int = 0, max_offset: int = MAX_OFFSET) -> QidoQuery:
    """The query of a search at ``level``; ``max_limit`` > 0 lowers the study and series page cap (5,000)
    and ``max_offset`` the offset cap (1,000,000), as the emulator's config sets them for tests."""
    params = parse_qs(query, keep_blank_values=True)
    warnings: list[str] = []

    def integer(name: str) -> int | None:
        raw = params.get(name, [""])[-1].strip()
        if raw == "":
            return None
        try:
            return int(raw)
        except ValueError:
            raise ApiError(400, f"invalid QIDO-RS query parameter {name}={raw!r}: not an integer") from None

    limit = integer("limit") or 0
    if limit < 0:
        raise ApiError(400, f"invalid QIDO-RS query parameter limit={limit}: must not be negative")
    if limit == 0:
        limit = DEFAULT_LIMIT[level]
    cap = MAX_LIMIT[level]
    if max_limit > 0 and level != "instance":
        cap = min(cap, max_limit)
    if limit > cap:
        warnings.append(f"The limit exceeds the maximum of {cap} and was reduced to it")
        limit = cap
    offset = integer("offset") or 0
    if offset < 0 or offset > max_offset:
        raise ApiError(400, f"invalid QIDO-RS query parameter offset={offset}: must be in [0, {max_offset}]")
    include_all = False
    includes: list[str] = []
    for raw in params.get("includefield", []):
        for name in raw.split(","):
            if not name.strip():
                continue
            if name.strip().lower() == "all":
                include_all = True
                continue
            key = tag_key(name)
            if key is None:
                raise ApiError(
                    400, f"invalid QIDO-RS query parameter includefield={name!r}: unknown attribute"
                )
            includes.append(key)
    filters = []
    for name, values in params.items():
        if name in QIDO_CONTROL:
            continue
        key = tag_key(name)
        if key is None:
            raise ApiError(400, f"invalid QIDO-RS query parameter {name!r}: unknown attribute")
        if key not in SEARCHABLE[level]:
            raise ApiError(
                400, f"invalid QIDO-RS query parameter {name!r}: not searchable at the {level} level"
            )
        includes.append(key)
        filters.append((key, make_matcher(key, values[-1])))
    return QidoQuery(limit, offset, include_all, includes, filters, warnings)


def _instance_keys(with_study: bool, with_series: bool) -> tuple[str, ...]:
    keys = set(INSTANCE_DEFAULT + INSTANCE_EXTRA) | {"00081190"}
    if with_study:
        keys |= set(STUDY_DEFAULT)
    if with_series:
        keys |= set(SERIES_DEFAULT)
    return tuple(sorted(keys))


def _pick_from(inst: Instance, keys: Iterable[str], out: JsonDict) -> None:
    for key in keys:
        if key not in out and (elem := inst.element(key)) is not None:
            out[key] = elem


def _pick(attrs: JsonDict, keys: Iterable[str], out: JsonDict) -> None:
    for key in keys:
        if key in attrs and key not in out:
            out[key] = attrs[key]


def _passes(query: QidoQuery, get: Callable[[str], JsonDict | None]) -> bool:
    return all(matcher(_values(get(key))) for key, matcher in query.filters)


def _scope(store: Store, study: str | None) -> Iterable[tuple[str, dict[str, dict[str, Instance]]]]:
    if study is None:
        return store.studies.items()
    return [(study, store.studies[study])] if study in store.studies else []


def _match_studies(
    store: Store, query: QidoQuery
) -> Iterator[tuple[str, dict[str, dict[str, Instance]], Instance, list[str]]]:
    for study, series_map in store.studies.items():
        reps = [next(iter(sops.values())) for sops in series_map.values() if sops]
        if not reps:
            continue
        modalities = sorted({m for rep in reps for m in _values(rep.element("00080060"))})
        modality_elem = {"vr": "CS", "Value": modalities}

        def get(
            key: str, rep: Instance = reps[0], modality_elem: JsonDict = modality_elem
        ) -> JsonDict | None:
            return modality_elem if key in ("00080060", "00080061") else rep.element(key)

        if _passes(query, get):
            yield study, series_map, reps[0], modalities


def _study_record(
    root: str,
    query: QidoQuery,
    study: str,
    series_map: dict[str, dict[str, Instance]],
    rep: Instance,
    modalities: list[str],
) -> JsonDict:
    out: JsonDict = {}
    _pick_from(rep, STUDY_DEFAULT, out)
    if modalities:
        out["00080061"] = {"vr": "CS", "Value": modalities}
    out["00201206"] = {"vr": "IS", "Value": [len(series_map)]}
    out["00201208"] = {"vr": "IS", "Value": [sum(len(sops) for sops in series_map.values())]}
    out["00081190"] = {"vr": "UR", "Value": [f"{root}/studies/{study}"]}
    _add_includes(out, rep, query, "study")
    return dict(sorted(out.items()))


def _match_series(
    store: Store, query: QidoQuery, only_study: str | None
) -> Iterator[tuple[str, str, dict[str, Instance], Instance]]:
    for study, series_map in _scope(store, only_study):
        for series, sops in series_map.items():
            if sops:
                rep = next(iter(sops.values()))
                if _passes(query, rep.element):
                    yield study, series, sops, rep


def _series_record(
    root: str,
    query: QidoQuery,
    with_study: bool,
    study: str,
    series: str,
    sops: dict[str, Instance],
    rep: Instance,
) -> JsonDict:
    out: JsonDict = {}
    _pick_from(rep, SERIES_DEFAULT + SERIES_EXTRA, out)
    if with_study:
        _pick_from(rep, STUDY_DEFAULT, out)
    out["00201209"] = {"vr": "IS", "Value": [len(sops)]}
    out["00081190"] = {"vr": "UR", "Value": [f"{root}/studies/{study}/series/{series}"]}
    _add_includes(out, rep, query, "series")
    return dict(sorted(out.items()))


def _match_instances(
    store: Store, query: QidoQuery, only_study: str | None, only_series: str | None
) -> Iterator[Instance]:
    for _, series_map in _scope(store, only_study):
        if only_series is None:
            groups: Iterable[dict[str, Instance]] = series_map.values()
        else:
            groups = [series_map[only_series]] if only_series in series_map else []
        for sops in groups:
            if not query.filters:
                yield from sops.values()
                continue
            for inst in sops.values():
                if _passes(query, inst.element):
                    yield inst


def _instance_record(root: str, query: QidoQuery, keys: tuple[str, ...], inst: Instance) -> JsonDict:
    out: JsonDict = {}
    for key in keys:  # in tag order, so that the object needs no sorting
        if key == "00081190":
            url = f"{root}/studies/{inst.study}/series/{inst.series}/instances/{inst.sop}"
            out[key] = {"vr": "UR", "Value": [url]}
        elif (elem := inst.element(key)) is not None:
            out[key] = elem
    if query.include_all or query.includes:
        _add_includes(out, inst, query, "instance")
        return dict(sorted(out.items()))
    return out


def _add_includes(out: JsonDict, inst: Instance, query: QidoQuery, level: str) -> None:
    if not (query.include_all or query.includes):
        return
    plain = without_bulk(inst.attrs())
    if query.include_all:
        if level == "instance":
            _pick(plain, plain, out)
        else:
            levels = STUDY_LEVEL if level == "study" else STUDY_LEVEL | SERIES_LEVEL
            _pick(plain, (k for k in plain if k in levels or k.startswith("0010")), out)
    _pick(plain, query.includes, out)


def search(
    store: Store, root: str, query: QidoQuery, level: str, study: str | None, series: str | None, cap: int = 0
) -> tuple[list[JsonDict], bool]:
    """(one page of DICOM JSON results, whether more results follow) of a search at ``level``, scoped to
    ``study`` and ``series`` when given; ``cap`` > 0: an instance search that returns at most that many and
    ignores the offset (a server that caps its results). The caller holds the state's lock."""
    window = (query.offset, query.offset + query.limit + 1)
    if level == "study":
        studies = list(islice(_match_studies(store, query), *window))
        page = [_study_record(root, query, *item) for item in studies[: query.limit]]
        return page, len(studies) > query.limit
    if level == "series":
        series_hits = list(islice(_match_series(store, query, study), *window))
        page = [_series_record(root, query, study is None, *item) for item in series_hits[: query.limit]]
        return page, len(series_hits) > query.limit
    if cap:
        window = (0, min(cap, query.limit + 1))
    instances = list(islice(_match_instances(store, query, study, series), *window))
    keys = _instance_keys(study is None, series is None)
    page = [_instance_record(root, query, keys, inst) for inst in instances[: query.limit]]
    return page, len(instances) > query.limit
