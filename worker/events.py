"""The completion event: one per request, published to COMPLETION_TOPIC (schemas/event.schema.json)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from worker.errors import PermanentError
from worker.models import SeriesRef

SCHEMA_VERSION = "1"
_LOGGED_COUNTS = ("instanceCount", "bytes", "published")  # a sweep's requests published


@dataclass(frozen=True)
class CompletionEvent:
    """What subscribers learn: UIDs, counts and object names only, never patient attributes."""

    request_id: str
    action: str | None
    status: Literal["succeeded", "failed"]
    series: SeriesRef | None
    result: Mapping[str, Any] = field(default_factory=dict)
    error: PermanentError | None = None

    @classmethod
    def succeeded(
        cls, request_id: str, action: str, series: SeriesRef | None, result: Mapping[str, Any]
    ) -> CompletionEvent:
        return cls(request_id, action, "succeeded", series, result)

    @classmethod
    def failed(
        cls,
        request_id: str,
        action: str | None,
        series: SeriesRef | None,
        error: PermanentError,
        result: Mapping[str, Any] | None = None,
    ) -> CompletionEvent:
        return cls(request_id, action, "failed", series, result or {}, error)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "version": SCHEMA_VERSION,
            "requestId": self.request_id,
            "action": self.action,
            "status": self.status,
            "series": self.series.source if self.series else None,
            "studyInstanceUID": self.series.study_uid if self.series else None,
            "seriesInstanceUID": self.series.series_uid if self.series else None,
            "finishedAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        body.update(self.result)
        if self.error is not None:
            body["error"] = self.error.as_event_error()
        return body

    def data(self) -> bytes:
        return json.dumps(self.as_json(), separators=(",", ":")).encode("utf-8")

    def log_fields(self) -> dict[str, str | int]:
        """The `completion event` log line's fields, which the log-based metrics count: status, action,
        the error code and the counts (never a UID, an object name or a message)."""
        fields: dict[str, str | int] = {"status": self.status, "action": self.action or ""}
        if self.error is not None:
            fields["errorCode"] = str(self.error.code)
        for name in _LOGGED_COUNTS:
            value = self.result.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                fields[name] = value
        return fields

    def attributes(self) -> dict[str, str]:
        attributes = {"requestId": self.request_id, "status": self.status}
        if self.action:
            attributes["action"] = self.action
        if self.series is not None:
            attributes["studyInstanceUID"] = self.series.study_uid
            attributes["seriesInstanceUID"] = self.series.series_uid
        if self.error is not None:
            attributes["errorCode"] = str(self.error.code)
        return attributes
