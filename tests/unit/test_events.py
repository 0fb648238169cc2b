"""The completion event: its JSON body and its message attributes (schemas/event.schema.json)."""

from __future__ import annotations

import json
from datetime import datetime

from tests.unit.fakes import SERIES, SERIES_PATH, STUDY
from worker.errors import Code, PermanentError
from worker.events import CompletionEvent
from worker.models import SeriesRef

SERIES_REF = SeriesRef.parse(SERIES_PATH)


def test_succeeded_event_body() -> None:
    event = CompletionEvent.succeeded("req-1", "search", SERIES_REF, {"instanceCount": 2, "instances": []})

    body = json.loads(event.data())

    finished = body.pop("finishedAt")
    assert body == {
        "version": "1",
        "requestId": "req-1",
        "action": "search",
        "status": "succeeded",
        "series": SERIES_PATH,
        "studyInstanceUID": STUDY,
        "seriesInstanceUID": SERIES,
        "instanceCount": 2,
        "instances": [],
    }
    assert finished.endswith("Z")
    assert datetime.fromisoformat(finished.replace("Z", "+00:00")).utcoffset() is not None


def test_succeeded_event_attributes() -> None:
    event = CompletionEvent.succeeded("req-1", "retrieve", SERIES_REF, {})

    assert event.attributes() == {
        "requestId": "req-1",
        "status": "succeeded",
        "action": "retrieve",
        "studyInstanceUID": STUDY,
        "seriesInstanceUID": SERIES,
    }


def test_failed_event_carries_the_error() -> None:
    error = PermanentError(Code.SERIES_NOT_FOUND, "the series has no instances", {"instanceCount": 0})
    event = CompletionEvent.failed("req-2", "retrieve", SERIES_REF, error)

    body = event.as_json()

    assert body["status"] == "failed"
    assert body["error"] == {
        "code": "series_not_found",
        "message": "the series has no instances",
        "details": {"instanceCount": 0},
    }
    assert event.attributes()["errorCode"] == "series_not_found"
    assert event.attributes()["status"] == "failed"


def test_failed_event_without_details_has_no_details_key() -> None:
    body = CompletionEvent.failed(
        "r", "search", SERIES_REF, PermanentError(Code.SOURCE_REFUSED, "x")
    ).as_json()

    assert body["error"] == {"code": "source_refused", "message": "x"}


def test_failed_event_of_an_unparsable_message_has_no_series_or_action() -> None:
    error = PermanentError(Code.INVALID_MESSAGE, "message data is not JSON")
    event = CompletionEvent.failed("4711", None, None, error)

    body = event.as_json()

    assert body["series"] is None
    assert body["studyInstanceUID"] is None
    assert body["seriesInstanceUID"] is None
    assert body["action"] is None
    assert event.attributes() == {"requestId": "4711", "status": "failed", "errorCode": "invalid_message"}


def test_data_is_compact_utf8_json() -> None:
    data = CompletionEvent.succeeded("req-1", "search", SERIES_REF, {"instanceCount": 0}).data()

    assert b" " not in data
    assert b"\n" not in data
    assert json.loads(data.decode("utf-8"))["requestId"] == "req-1"


def test_log_fields_hold_the_counts_and_codes_the_metrics_read() -> None:
    """The `completion event` log line is what the log-based metrics count (infra/terraform/monitoring.tf)."""
    archived = CompletionEvent.succeeded(
        "req-1",
        "archive",
        SERIES_REF,
        {"instanceCount": 3, "bytes": 4096, "deleted": True, "manifestUri": "gs://b/m.json"},
    )
    swept = CompletionEvent.succeeded("req-2", "sweep", None, {"seriesCount": 5, "published": 5})
    failed = CompletionEvent.failed(
        "req-3", None, None, PermanentError(Code.INVALID_MESSAGE, "payload is not JSON", {"field": "x"})
    )

    assert archived.log_fields() == {
        "status": "succeeded",
        "action": "archive",
        "instanceCount": 3,
        "bytes": 4096,
    }
    assert swept.log_fields() == {"status": "succeeded", "action": "sweep", "published": 5}
    # No message, no details, no UID: codes and counts only.
    assert failed.log_fields() == {"status": "failed", "action": "", "errorCode": "invalid_message"}
