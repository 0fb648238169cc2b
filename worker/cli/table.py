"""How `events` shows a completion event: a table row, or one JSON line."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_COLUMNS = "{:<20} {:<8} {:<9} {:<29} {:>9}  {}"
TABLE_HEADER = _COLUMNS.format("REQUEST ID", "ACTION", "STATUS", "STUDY/SERIES", "INSTANCES", "ERROR")


def short_uid(uid: object) -> str:
    """The tail of a UID (the head is the organisation's root, the same for all)."""
    if not isinstance(uid, str) or not uid:
        return "-"
    return uid if len(uid) <= 14 else "..." + uid[-11:]


def event_body(data: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def table_row(data: bytes, attributes: Mapping[str, str]) -> str:
    """One event as a table row; the message attributes stand in for data that is not an event."""
    body = event_body(data) or {}

    def field(name: str) -> str:
        value = body.get(name, attributes.get(name))
        return str(value) if value not in (None, "") else "-"

    study, series = field("studyInstanceUID"), field("seriesInstanceUID")
    uids = "-" if study == series == "-" else f"{short_uid(study)}/{short_uid(series)}"
    count = body.get("instanceCount")
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else attributes.get("errorCode")
    return _COLUMNS.format(
        field("requestId"),
        field("action"),
        field("status"),
        uids,
        str(count) if isinstance(count, int) else "-",
        code or "",
    ).rstrip()


def json_line(data: bytes, attributes: Mapping[str, str], message_id: str) -> str:
    body = event_body(data)
    if body is None:  # not an event: show what came, so that nothing is acked unseen
        body = {
            "messageId": message_id,
            "attributes": dict(attributes),
            "data": data.decode("utf-8", "replace"),
        }
    return json.dumps(body, separators=(",", ":"))
