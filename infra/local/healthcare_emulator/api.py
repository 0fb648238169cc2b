"""The Healthcare API surface of the emulator: DICOMweb (QIDO-RS, WADO-RS, STOW-RS, delete) and operations."""

from __future__ import annotations

import gc
import json
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from itertools import islice
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydicom.datadict import dictionary_VR

from .dicom import (
    ANY_TS,
    EXPLICIT_LE,
    IMPLICIT_LE,
    RETRIEVABLE_TS,
    DicomError,
    JsonDict,
    TranscodeError,
    can_transcode,
    parse_part10,
    tag_key,
    transcode,
    transcode_message,
    with_bulk_uris,
    without_bulk,
)
from .state import ApiError, EmulatorState, FaultRule, Instance, Store

# ---- QIDO-RS limits (Healthcare API quotas page; defaults from Google's DICOM adapter and user reports)
DEFAULT_LIMIT = {"study": 100, "series": 100, "instance": 1000}
MAX_LIMIT = {"study": 5000, "series": 5000, "instance": 50000}
MAX_OFFSET = 1_000_000
TRUNCATED_WARNING = "The number of results exceeded the maximum, additional results can be requested"

DICOM_JSON = "application/dicom+json"

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    406: "FAILED_PRECONDITION",
    408: "DEADLINE_EXCEEDED",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


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

STORE_PATH = re.compile(
    r"^/v1/(?P<dataset>projects/[^/]+/locations/[^/]+/datasets/[^/]+)/dicomStores/(?P<store>[^/]+)"
    r"/dicomWeb(?P<rest>/.*)?$"
)
OPERATION_PATH = re.compile(
    r"^/v1/(?P<dataset>projects/[^/]+/locations/[^/]+/datasets/[^/]+)/operations/(?P<id>[^/]+)$"
)


_gc_lock = threading.Lock()
_gc_state = {"pauses": 0, "was_enabled": True}


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a large answer is built: 50,000 small dicts otherwise trigger many
    full collections (seconds on a busy machine). Nested and concurrent uses are counted; the GC's
    state from before the first pause is restored after the last."""
    with _gc_lock:
        if _gc_state["pauses"] == 0:
            _gc_state["was_enabled"] = gc.isenabled()
            gc.disable()
        _gc_state["pauses"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_state["pauses"] -= 1
            if _gc_state["pauses"] == 0 and _gc_state["was_enabled"]:
                gc.enable()


@dataclass
class Response:
    status: int
    body: bytes | Iterable[bytes] = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    length: int | None = None  # of an iterable body; None: sent with chunked transfer encoding


@dataclass
class Request:
    method: str
    path: str  # percent-decoded
    query: str
    headers: Message
    body: bytes
    base_url: str  # http://127.0.0.1:PORT
    fault: FaultRule | None = None

    @property
    def accept(self) -> str | None:
        return self.headers.get("Accept")


def json_response(status: int, obj: Any, content_type: str = "application/json") -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode(), f"{content_type}; charset=utf-8")


def error_response(err: ApiError) -> Response:
    body = {
        "error": {
            "code": err.status,
            "message": err.message,
            "status": STATUS_NAMES.get(err.status, "UNKNOWN"),
        }
    }
    resp = json_response(err.status, body)
    resp.headers.extend(err.headers)
    return resp


# --------------------------------------------------------------------------------------------------
# Media types


@dataclass(frozen=True)
class MediaRange:
    type: str
    params: dict[str, str]
    q: float


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            current.append(char)
            escaped = True
        elif char == '"':
            current.append(char)
            quoted = not quoted
        elif char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_media_type(text: str) -> MediaRange:
    pieces = _split_outside_quotes(text, ";")
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        name, _, value = piece.partition("=")
        if name.strip():
            params[name.strip().lower()] = _unquote(value)
    try:
        q = float(params.pop("q", "1"))
    except ValueError:
        q = 1.0
    return MediaRange(pieces[0].strip().lower(), params, q)


def parse_accept(header: str) -> list[MediaRange]:
    ranges = [parse_media_type(item) for item in _split_outside_quotes(header, ",") if item.strip()]
    return sorted(ranges, key=lambda r: -r.q)  # stable: equal weights keep the client's order


def accepted_combinations(single_part: bool) -> list[str]:
    out = [f'multipart/related; transfer-syntax={ts}; type="application/dicom"' for ts in RETRIEVABLE_TS]
    if single_part:
        out += [f"application/dicom; transfer-syntax={ts}" for ts in RETRIEVABLE_TS]
    return out


def negotiate_retrieve(accept: str | None, single_part: bool) -> tuple[bool, str]:
    """(multipart?, transfer syntax) for a WADO-RS retrieve, as the Healthcare API negotiates it."""
    if accept is None or not accept.strip():
        return True, EXPLICIT_LE
    for media in parse_accept(accept):
        if media.q <= 0:
            continue
        ts = media.params.get("transfer-syntax", EXPLICIT_LE)
        if media.type == "*/*":
            return True, EXPLICIT_LE
        if media.type == "multipart/related":
            # type="application/dicom; transfer-syntax=X" (the whole type quoted) unquotes to a value with a
            # ';' in it: not application/dicom, so not acceptable, as on the real service.
            if media.params.get("type", "").strip().lower() == "application/dicom" and ts in RETRIEVABLE_TS:
                return True, ts
        elif media.type == "application/dicom" and single_part and ts in RETRIEVABLE_TS:
            return False, ts
    raise ApiError(
        406,
        f"no supported media type found in [{accept}], accept-header must include one of "
        + ",".join(accepted_combinations(single_part)),
    )


def check_json_accept(accept: str | None) -> None:
    if accept is None or not accept.strip():
        return
    ok = {"application/dicom+json", "application/json", "*/*", "application/*"}
    if not any(media.type in ok and media.q > 0 for media in parse_accept(accept)):
        raise ApiError(
            406, f"no supported media type found in [{accept}], accept-header must include {DICOM_JSON}"
        )


# --------------------------------------------------------------------------------------------------
# Multipart


def split_multipart(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    delimiter = b"--" + boundary.encode("latin-1")
    pos = body.find(delimiter)
    if pos < 0:
        raise ApiError(400, "multipart body has no boundary delimiter")
    parts: list[tuple[dict[str, str], bytes]] = []
    pos += len(delimiter)
    while True:
        if body[pos : pos + 2] == b"--":
            return parts
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            raise ApiError(400, "multipart body ends inside a delimiter line")
        start = line_end + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise ApiError(400, "multipart body has no closing delimiter")
        chunk = body[start:end]
        headers: dict[str, str] = {}
        if chunk.startswith(b"\r\n"):
            content = chunk[2:]
        else:
            head, sep, content = chunk.partition(b"\r\n\r\n")
            if not sep:
                raise ApiError(400, "multipart part has no blank line after its headers")
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, content))
        pos = end + 2 + len(delimiter)


# --------------------------------------------------------------------------------------------------
# QIDO matching


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


def parse_qido(query: str, level: str) -> QidoQuery:
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
    if limit > MAX_LIMIT[level]:
        warnings.append(f"The limit exceeds the maximum of {MAX_LIMIT[level]} and was reduced to it")
        limit = MAX_LIMIT[level]
    offset = integer("offset") or 0
    if offset < 0 or offset > MAX_OFFSET:
        raise ApiError(400, f"invalid QIDO-RS query parameter offset={offset}: must be in [0, {MAX_OFFSET}]")
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


# --------------------------------------------------------------------------------------------------
# The API


class DicomWebApi:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._random = random.Random()

    def handle(self, req: Request) -> Response:
        try:
            return self._route(req)
        except ApiError as err:
            return error_response(err)

    # ---- routing

    def _route(self, req: Request) -> Response:
        if match := OPERATION_PATH.match(req.path):
            self._allow(req, "GET")
            op = self.state.operation(match["dataset"], match["id"])
            with self.state.lock:
                return json_response(200, op.as_json())
        match = STORE_PATH.match(req.path)
        if not match:
            raise ApiError(404, f"no Healthcare API resource at {req.path}")
        name = f"{match['dataset']}/dicomStores/{match['store']}"
        store = self.state.store(name)
        root = f"{req.base_url}/v1/{name}/dicomWeb"
        seg = [s for s in (match["rest"] or "").split("/") if s]
        n = len(seg)
        if n == 1 and seg[0] in ("studies", "series", "instances"):
            level = {"studies": "study", "series": "series", "instances": "instance"}[seg[0]]
            if seg[0] == "studies" and req.method == "POST":
                return self.stow(req, store, root, None)
            self._allow(req, "GET", "POST" if seg[0] == "studies" else "GET")
            return self.qido(req, store, root, level, None, None)
        if n < 2 or seg[0] != "studies":
            raise ApiError(404, f"no DICOMweb resource at {req.path}")
        study = seg[1]
        if n == 2:
            if study.endswith(":getStudyMetrics"):
                self._allow(req, "GET")
                return self.study_metrics(store, study.removesuffix(":getStudyMetrics"))
            if req.method == "POST":
                return self.stow(req, store, root, study)
            if req.method == "DELETE":
                return self.delete(req, store, study, None)
            self._allow(req, "GET", "POST", "DELETE")
            return self.retrieve(req, store, root, study, None, None)
        if n == 3 and seg[2] == "metadata":
            self._allow(req, "GET")
            return self.metadata(req, store, root, study, None, None)
        if n == 3 and seg[2] in ("series", "instances"):
            self._allow(req, "GET")
            return self.qido(req, store, root, "series" if seg[2] == "series" else "instance", study, None)
        if seg[2] != "series" or n < 4:
            raise ApiError(404, f"no DICOMweb resource at {req.path}")
        series = seg[3]
        if n == 4:
            if series.endswith(":getSeriesMetrics"):
                self._allow(req, "GET")
                return self.series_metrics(store, study, series.removesuffix(":getSeriesMetrics"))
            if req.method == "DELETE":
                return self.delete(req, store, study, series)
            self._allow(req, "GET", "DELETE")
            return self.retrieve(req, store, root, study, series, None)
        if n == 5 and seg[4] == "metadata":
            self._allow(req, "GET")
            return self.metadata(req, store, root, study, series, None)
        if n == 5 and seg[4] == "instances":
            self._allow(req, "GET")
            return self.qido(req, store, root, "instance", study, series)
        if seg[4] != "instances" or n < 6:
            raise ApiError(404, f"no DICOMweb resource at {req.path}")
        sop = seg[5]
        if n == 6:
            if req.method == "DELETE":
                self.state.delete_instance(store, study, series, sop)
                return json_response(200, {})
            self._allow(req, "GET", "DELETE")
            return self.retrieve(req, store, root, study, series, sop)
        if n == 7 and seg[6] == "metadata":
            self._allow(req, "GET")
            return self.metadata(req, store, root, study, series, sop)
        if seg[6] in ("frames", "rendered", "bulkdata", "thumbnail"):
            raise ApiError(501, f"the emulator does not implement {seg[6]} retrieval")
        raise ApiError(404, f"no DICOMweb resource at {req.path}")

    @staticmethod
    def _allow(req: Request, *methods: str) -> None:
        if req.method not in methods:
            raise ApiError(
                405, f"method {req.method} is not allowed on {req.path}", [("Allow", ", ".join(methods))]
            )

    # ---- QIDO-RS

    def qido(
        self, req: Request, store: Store, root: str, level: str, study: str | None, series: str | None
    ) -> Response:
        check_json_accept(req.accept)
        query = parse_qido(req.query, level)
        window = (query.offset, query.offset + query.limit + 1)
        with self.state.lock, gc_paused():
            page: list[JsonDict]
            if level == "study":
                studies = list(islice(self._match_studies(store, query), *window))
                more = len(studies) > query.limit
                page = [self._study_record(root, query, *item) for item in studies[: query.limit]]
            elif level == "series":
                series_hits = list(islice(self._match_series(store, query, study), *window))
                more = len(series_hits) > query.limit
                page = [
                    self._series_record(root, query, study is None, *item)
                    for item in series_hits[: query.limit]
                ]
            else:
                if self.state.config.qido_cap:  # a server that caps its results and ignores offset
                    window = (0, min(self.state.config.qido_cap, query.limit + 1))
                instances = list(islice(self._match_instances(store, query, study, series), *window))
                more = len(instances) > query.limit
                keys = _instance_keys(study is None, series is None)
                page = [self._instance_record(root, query, keys, inst) for inst in instances[: query.limit]]
        agent = urlsplit(req.base_url).netloc
        headers = [("Warning", f'299 {agent}: "{text}"') for text in query.warnings]
        if more:
            headers.append(("Warning", f'299 {agent}: "{TRUNCATED_WARNING}"'))
        if not page:
            return Response(204, headers=headers)
        with gc_paused():
            resp = json_response(200, page, DICOM_JSON)
        resp.headers.extend(headers)
        return resp

    @staticmethod
    def _passes(query: QidoQuery, get: Callable[[str], JsonDict | None]) -> bool:
        return all(matcher(_values(get(key))) for key, matcher in query.filters)

    @staticmethod
    def _scope(store: Store, study: str | None) -> Iterable[tuple[str, dict[str, dict[str, Instance]]]]:
        if study is None:
            return store.studies.items()
        return [(study, store.studies[study])] if study in store.studies else []

    def _match_studies(
        self, store: Store, query: QidoQuery
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

            if self._passes(query, get):
                yield study, series_map, reps[0], modalities

    def _study_record(
        self,
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
        self._add_includes(out, rep, query, "study")
        return dict(sorted(out.items()))

    def _match_series(
        self, store: Store, query: QidoQuery, only_study: str | None
    ) -> Iterator[tuple[str, str, dict[str, Instance], Instance]]:
        for study, series_map in self._scope(store, only_study):
            for series, sops in series_map.items():
                if sops:
                    rep = next(iter(sops.values()))
                    if self._passes(query, rep.element):
                        yield study, series, sops, rep

    def _series_record(
        self,
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
        self._add_includes(out, rep, query, "series")
        return dict(sorted(out.items()))

    def _match_instances(
        self, store: Store, query: QidoQuery, only_study: str | None, only_series: str | None
    ) -> Iterator[Instance]:
        for _, series_map in self._scope(store, only_study):
            if only_series is None:
                groups: Iterable[dict[str, Instance]] = series_map.values()
            else:
                groups = [series_map[only_series]] if only_series in series_map else []
            for sops in groups:
                if not query.filters:
                    yield from sops.values()
                    continue
                for inst in sops.values():
                    if self._passes(query, inst.element):
                        yield inst

    def _instance_record(
        self, root: str, query: QidoQuery, keys: tuple[str, ...], inst: Instance
    ) -> JsonDict:
        out: JsonDict = {}
        for key in keys:  # in tag order, so that the object needs no sorting
            if key == "00081190":
                url = f"{root}/studies/{inst.study}/series/{inst.series}/instances/{inst.sop}"
                out[key] = {"vr": "UR", "Value": [url]}
            elif (elem := inst.element(key)) is not None:
                out[key] = elem
        if query.include_all or query.includes:
            self._add_includes(out, inst, query, "instance")
            return dict(sorted(out.items()))
        return out

    @staticmethod
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

    # ---- WADO-RS

    def _select(self, store: Store, study: str, series: str | None, sop: str | None) -> list[Instance]:
        with self.state.lock:
            series_map = store.studies.get(study)
            if series_map is None:
                raise ApiError(404, f"study {study} not found")
            if series is None:
                return [inst for sops in series_map.values() for inst in sops.values()]
            sops = series_map.get(series)
            if sops is None:
                raise ApiError(404, f"series {series} not found")
            if sop is None:
                return list(sops.values())
            inst = sops.get(sop)
            if inst is None:
                raise ApiError(404, f"instance {sop} not found")
            return [inst]

    @staticmethod
    def _plan(inst: Instance, ts: str) -> tuple[str, int | None, Callable[[], Iterator[bytes]]]:
        """(transfer syntax of the part, its size if known up front, its chunks)."""
        if ts in (ANY_TS, inst.transfer_syntax):
            return inst.transfer_syntax, inst.size, inst.chunks
        if inst.template is not None:
            uncompressed = (EXPLICIT_LE, IMPLICIT_LE)
            if inst.transfer_syntax in uncompressed and ts in uncompressed:
                variant = inst.template.variant(ts)
                number = inst.number or 0
                return ts, variant.size(inst.sop, number), lambda: variant.stream(inst.sop, number)
            raise ApiError(406, transcode_message(inst.transfer_syntax, ts))
        if not can_transcode(inst.transfer_syntax, ts):
            raise ApiError(406, transcode_message(inst.transfer_syntax, ts))
        return ts, None, lambda: iter([transcode(inst.read(), ts)])

    def retrieve(
        self, req: Request, store: Store, root: str, study: str, series: str | None, sop: str | None
    ) -> Response:
        instances = self._select(store, study, series, sop)
        multipart, ts = negotiate_retrieve(req.accept, single_part=sop is not None)
        plans = [self._plan(inst, ts) for inst in instances]
        if not multipart:
            part_ts, size, chunks = plans[0]
            body = self._counted(chunks(), 1)
            if size is None:
                data = b"".join(body)
                return Response(200, data, f"application/dicom; transfer-syntax={part_ts}")
            return Response(200, body, f"application/dicom; transfer-syntax={part_ts}", length=size)
        boundary = uuid.uuid4().hex
        quoting = self.state.config.boundary_quoting
        quoted = quoting == "quoted" or (quoting == "random" and self._random.random() < 0.5)
        content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        if quoted:
            content_type = f'multipart/related; type="application/dicom"; boundary="{boundary}"'
        closing = f"--{boundary}--\r\n".encode()
        length: int | None = len(closing)
        for part_ts, size, _ in plans:
            if size is None or length is None:
                length = None
            else:
                length += len(_part_head(boundary, part_ts, size)) + size + 2
        return Response(200, self._multipart(boundary, plans, closing), content_type, length=length)

    def _multipart(
        self,
        boundary: str,
        plans: list[tuple[str, int | None, Callable[[], Iterator[bytes]]]],
        closing: bytes,
    ) -> Iterator[bytes]:
        for part_ts, size, chunks in plans:
            if size is None:
                data = b"".join(chunks())
                yield _part_head(boundary, part_ts, len(data))
                yield from self._counted(iter([data]), 1)
            else:
                yield _part_head(boundary, part_ts, size)
                yield from self._counted(chunks(), 1)
            yield b"\r\n"
        yield closing

    def _counted(self, chunks: Iterator[bytes], instances: int) -> Iterator[bytes]:
        total = 0
        try:
            for chunk in chunks:
                total += len(chunk)
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            self.state.count_served(total, instances)

    def metadata(
        self, req: Request, store: Store, root: str, study: str, series: str | None, sop: str | None
    ) -> Response:
        check_json_accept(req.accept)
        instances = self._select(store, study, series, sop)
        out = [
            with_bulk_uris(
                inst.attrs(), f"{root}/studies/{inst.study}/series/{inst.series}/instances/{inst.sop}"
            )
            for inst in instances
        ]
        return json_response(200, out, DICOM_JSON)

    # ---- STOW-RS

    def stow(self, req: Request, store: Store, root: str, study: str | None) -> Response:
        media = parse_media_type(req.headers.get("Content-Type", ""))
        if media.type == "multipart/related":
            boundary = media.params.get("boundary")
            part_type = media.params.get("type", "application/dicom").strip().lower()
            if not boundary:
                raise ApiError(400, "multipart/related request without a boundary")
            if part_type != "application/dicom":
                raise ApiError(415, f"the emulator stores only application/dicom parts, not {part_type!r}")
            parts = split_multipart(req.body, boundary)
        elif media.type == "application/dicom":
            parts = [({"content-type": "application/dicom"}, req.body)]
        else:
            raise ApiError(
                415, 'STOW-RS takes multipart/related; type="application/dicom" or application/dicom'
            )
        if not parts or not any(content for _, content in parts):
            raise ApiError(400, "STOW-RS request without any instance")
        stored: list[JsonDict] = []
        failed: list[JsonDict] = []
        studies: set[str] = set()
        for headers, content in parts:
            part_media = parse_media_type(headers.get("content-type", "application/dicom"))
            if part_media.type != "application/dicom":
                failed.append({"00081197": {"vr": "US", "Value": [0xC000]}})
                continue
            try:
                parsed = parse_part10(content)
            except DicomError:
                failed.append({"00081197": {"vr": "US", "Value": [0xC000]}})
                continue
            ref: JsonDict = {
                "00081150": {"vr": "UI", "Value": [parsed.sop_class]},
                "00081155": {"vr": "UI", "Value": [parsed.sop]},
            }
            if study is not None and parsed.study != study:
                failed.append({**ref, "00081197": {"vr": "US", "Value": [0xA900]}})
                continue
            try:
                self.state.store_instance(store, parsed, content)
            except ApiError as err:
                reason = 0x0111 if "already exists" in err.message else 0x0110
                failed.append({**ref, "00081197": {"vr": "US", "Value": [reason]}})
                continue
            studies.add(parsed.study)
            url = f"{root}/studies/{parsed.study}/series/{parsed.series}/instances/{parsed.sop}"
            stored.append({**ref, "00081190": {"vr": "UR", "Value": [url]}})
        body: JsonDict = {}
        if len(studies) == 1:
            body["00081190"] = {"vr": "UR", "Value": [f"{root}/studies/{next(iter(studies))}"]}
        if failed:
            body["00081198"] = {"vr": "SQ", "Value": [dict(sorted(item.items())) for item in failed]}
        if stored:
            body["00081199"] = {"vr": "SQ", "Value": stored}
        status = 200 if not failed else 409 if not stored else 202
        return json_response(status, body, DICOM_JSON)

    # ---- delete and metrics

    def delete(self, req: Request, store: Store, study: str, series: str | None) -> Response:
        fault = req.fault
        if fault is not None:
            op = self.state.start_delete(store, study, series, fault.operation_error, fault.operation_delay)
        else:
            op = self.state.start_delete(store, study, series, None)
        with self.state.lock:
            return json_response(200, op.as_json(initial=True))

    def series_metrics(self, store: Store, study: str, series: str) -> Response:
        with self.state.lock:
            sops = store.series_instances(study, series)
            if sops is None:
                raise ApiError(404, f"series {series} not found")
            return json_response(
                200,
                {
                    "series": f"{store.name}/dicomWeb/studies/{study}/series/{series}",
                    "structuredStorageSizeBytes": str(sum(64 * len(i.base_attrs) for i in sops.values())),
                    "blobStorageSizeBytes": str(sum(i.size for i in sops.values())),
                    "instanceCount": str(len(sops)),
                },
            )

    def study_metrics(self, store: Store, study: str) -> Response:
        with self.state.lock:
            series_map = store.studies.get(study)
            if series_map is None:
                raise ApiError(404, f"study {study} not found")
            instances = [i for sops in series_map.values() for i in sops.values()]
            return json_response(
                200,
                {
                    "study": f"{store.name}/dicomWeb/studies/{study}",
                    "structuredStorageSizeBytes": str(sum(64 * len(i.base_attrs) for i in instances)),
                    "blobStorageSizeBytes": str(sum(i.size for i in instances)),
                    "seriesCount": str(len(series_map)),
                    "instanceCount": str(len(instances)),
                },
            )


def _part_head(boundary: str, ts: str, size: int) -> bytes:
    head = f"--{boundary}\r\nContent-Type: application/dicom; transfer-syntax={ts}\r\n"
    return f"{head}Content-Length: {size}\r\n\r\n".encode()


__all__ = [
    "DicomWebApi",
    "Request",
    "Response",
    "TranscodeError",
    "error_response",
    "json_response",
    "negotiate_retrieve",
]
