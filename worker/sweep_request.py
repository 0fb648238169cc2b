"""The sweep request: a rule over a store (filters and a series action), not a series; and the one entry
that parses any message into a series request or a sweep.

A sweep's `then` is a series request without its series, parsed by the same rules as every series request
(worker.request), so every child it publishes parses. Its follow-up fields (`cursor`, `published`, a
nonzero `continuation`) are the worker's own and need its signature, like every follow-up field.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from worker.continuation import SIGNATURE_FIELD, KeyRing
from worker.enumeration import Cursor, date_bounds
from worker.errors import InvalidValue, invalid
from worker.models import DicomStore, SeriesRef
from worker.request import (
    MAX_MESSAGE_BYTES,
    Action,
    Message,
    SeriesRequest,
    from_json,
    parse_request,
    parse_request_id,
)

_SWEEP_FIELDS = frozenset(
    {
        "action",
        "store",
        "filters",
        "then",
        "requestId",
        "cursor",
        "published",
        "continuation",
        SIGNATURE_FIELD,
    }
)
_SWEEP_FOLLOW_UP = ("cursor", "published", "continuation", SIGNATURE_FIELD)
_THEN_FIELDS = frozenset({"action", "destination", "options"})
_FILTER_NAMES = {"modality": "Modality", "studyDate": "StudyDate"}  # request field -> QIDO attribute
_MODALITY = re.compile(r"[A-Z0-9_ ]{1,16}")
_CHILD_PREFIX_CHARS = 96
SWEEP_UNSIGNED = "a sweep's follow-up fields (cursor, published, continuation, signature) need its signature"
PLACEHOLDER_UID = "1"  # the series of a sweep's `then` template, replaced in every child


@dataclass(frozen=True)
class SweepRequest:
    """Action sweep: the series of `store` matching `filters` (QIDO attribute names), one `then` request
    published per series. A separate value, not optional fields of SeriesRequest: a sweep names no
    series, so every series action keeps a request whose series is always there. `then` is a complete
    series request (parsed by the same rules) whose series is a placeholder of the store.

    `cursor` and `published` are the worker's own follow-up fields (signed, like `operation`)."""

    store: DicomStore | None
    filters: Mapping[str, str]
    then: SeriesRequest
    request_id: str
    cursor: Cursor | None = None
    published: int = 0  # requests published by earlier deliveries of this sweep
    continuation: int = 0
    action: Action = field(default=Action.SWEEP, init=False)

    def child(self, series: SeriesRef) -> SeriesRequest:
        """The `then` request for one series, with its requestId derived from the sweep's and the series."""
        return replace(self.then, series=series, request_id=child_request_id(self.request_id, series))

    def as_json(self) -> dict[str, Any]:
        then = self.then.as_json()
        body: dict[str, Any] = {
            "action": str(Action.SWEEP),
            "filters": {
                name: self.filters[qido] for name, qido in _FILTER_NAMES.items() if qido in self.filters
            },
            "then": {name: then[name] for name in _THEN_FIELDS if name in then},
            "requestId": self.request_id,
            "continuation": self.continuation,
        }
        if self.store is not None:
            body["store"] = self.store.name
        if self.cursor is not None:
            body["cursor"] = self.cursor.encode()
        if self.published:
            body["published"] = self.published
        return body


def child_request_id(sweep_id: str, series: SeriesRef) -> str:
    """`{sweep id, at most 96 characters}.{24 hex digits of SHA-256 over both}`: the same for the same
    sweep and series on every delivery, so a redelivered sweep's children are recognisable."""
    digest = hashlib.sha256(f"{sweep_id}\n{series.dicomweb_path}".encode()).hexdigest()[:24]
    return f"{sweep_id[:_CHILD_PREFIX_CHARS]}.{digest}"


def parse_message(message: Message, keys: KeyRing | None = None) -> SeriesRequest | SweepRequest:
    """parse_request, and a sweep: a JSON object whose action (in the data or the attribute) is sweep."""
    body = _sweep_body(message)
    if body is None:
        return parse_request(message, keys)
    try:
        return _sweepfrom_json(body, message, keys)
    except InvalidValue as error:
        raise invalid(str(error)) from None


def _sweep_body(message: Message) -> dict[str, Any] | None:
    if len(message.data) > MAX_MESSAGE_BYTES or not message.data.lstrip().startswith(b"{"):
        return None
    try:
        body = json.loads(message.data.decode("utf-8"))
    except (ValueError, RecursionError):  # parse_request says what is wrong
        return None
    if not isinstance(body, dict):
        return None
    return body if body.get("action", message.attributes.get("action")) == Action.SWEEP else None


def _sweepfrom_json(body: dict[str, Any], message: Message, keys: KeyRing | None) -> SweepRequest:
    unknown = set(body) - _SWEEP_FIELDS
    if unknown:
        raise invalid(f"unknown fields: {len(unknown)}; a sweep accepts: {', '.join(sorted(_SWEEP_FIELDS))}")
    request_id = parse_request_id(body.get("requestId"), message)
    store = DicomStore.parse(body["store"]) if body.get("store") is not None else None
    filters = _sweep_filters(body.get("filters"))
    then = body.get("then")
    if not isinstance(then, dict):
        raise invalid("then must be an object: the action for every series, with its destination and options")
    if set(then) - _THEN_FIELDS:
        raise invalid(f"then accepts only: {', '.join(sorted(_THEN_FIELDS))}")
    probe = SeriesRef(store, PLACEHOLDER_UID, PLACEHOLDER_UID)
    template = from_json({**then, "series": probe.source, "requestId": request_id}, message, None)
    cursor = Cursor.parse(body["cursor"]) if "cursor" in body else None
    published = body.get("published", 0)
    if not isinstance(published, int) or isinstance(published, bool) or published < 0:
        raise invalid("published must be an integer >= 0")
    continuation = body.get("continuation", 0)
    if not isinstance(continuation, int) or isinstance(continuation, bool) or not 0 <= continuation <= 10_000:
        raise invalid("continuation must be an integer between 0 and 10000")
    follow_up = any(name in body for name in _SWEEP_FOLLOW_UP if name != "continuation") or continuation
    if follow_up and not (keys is not None and keys.verify(body, body.get(SIGNATURE_FIELD))):
        raise invalid(SWEEP_UNSIGNED)
    return SweepRequest(store, filters, template, request_id, cursor, published, continuation)


def _sweep_filters(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("filters must be an object")
    if set(value) - set(_FILTER_NAMES):
        raise invalid(f"filters accepts only: {', '.join(sorted(_FILTER_NAMES))}")
    filters: dict[str, str] = {}
    modality = value.get("modality")
    if modality is not None:
        if not isinstance(modality, str) or not _MODALITY.fullmatch(modality):
            raise invalid(
                "filters.modality must be a modality code (upper-case letters, digits, _ and space)"
            )
        filters["Modality"] = modality
    study_date = value.get("studyDate")
    if study_date is not None:
        if not isinstance(study_date, str) or len(study_date) > 17:
            raise invalid("filters.studyDate must be YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD")
        date_bounds(study_date)
        filters["StudyDate"] = study_date
    return filters
