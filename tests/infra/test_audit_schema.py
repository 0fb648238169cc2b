"""The audit table's schema (infra/terraform/audit_table_schema.json) is the completion event's schema.

The committed file must be what infra/terraform/audit_schema.py generates from schemas/event.schema.json
today, and every event the worker publishes must fit it: with drop_unknown_fields off, a field the table
lacks would send the row to the audit dead-letter topic instead of the table.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.terraform.audit_schema import EVENT_SCHEMA, TABLE_SCHEMA, SchemaError, column, rendered
from tests.schemas import problems
from worker.errors import Code, PermanentError
from worker.events import CompletionEvent
from worker.models import SeriesRef

STORE = "projects/my-project/locations/europe-west4/datasets/d/dicomStores/s"
SERIES = SeriesRef.parse(f"{STORE}/dicomWeb/studies/1.2.3/series/1.2.3.4")

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,),
    "INTEGER": (int,),
    "BOOLEAN": (bool,),
    "TIMESTAMP": (str,),
    "JSON": (dict, list, str, int, float, bool),
}


def _columns() -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in json.loads(TABLE_SCHEMA.read_text(encoding="utf-8"))}


def test_the_committed_table_schema_is_generated_from_the_event_schema() -> None:
    assert TABLE_SCHEMA.read_text(encoding="utf-8") == rendered(), (
        "infra/terraform/audit_table_schema.json is stale: run `python -m infra.terraform.audit_schema`"
    )


def test_every_event_property_is_a_column_and_the_metadata_follows() -> None:
    event_properties = json.loads(EVENT_SCHEMA.read_text(encoding="utf-8"))["properties"]
    names = list(_columns())
    assert names[: len(event_properties)] == list(event_properties)
    assert names[len(event_properties) :] == ["subscription_name", "message_id", "publish_time", "attributes"]


def test_modes_follow_required_and_null() -> None:
    columns = _columns()
    assert columns["requestId"]["mode"] == "REQUIRED"
    assert columns["status"]["mode"] == "REQUIRED"
    assert columns["finishedAt"] == {"name": "finishedAt", "type": "TIMESTAMP", "mode": "REQUIRED"}
    assert columns["action"]["mode"] == "NULLABLE"  # required, but null on a message that names none
    assert columns["series"]["mode"] == "NULLABLE"
    assert columns["bytes"] == {"name": "bytes", "type": "INTEGER", "mode": "NULLABLE"}
    instances = columns["instances"]
    assert (instances["type"], instances["mode"]) == ("RECORD", "REPEATED")
    assert [f["name"] for f in instances["fields"]] == ["sopInstanceUID", "sopClassUID", "instanceNumber"]
    error = columns["error"]
    assert (error["type"], error["mode"]) == ("RECORD", "NULLABLE")
    by_name = {f["name"]: f for f in error["fields"]}
    assert by_name["code"]["mode"] == "REQUIRED"
    assert by_name["details"]["type"] == "JSON"  # free-form: kept whole


def _fits(value: Any, spec: dict[str, Any], where: str) -> list[str]:
    if value is None:
        return [] if spec["mode"] != "REQUIRED" else [f"{where}: null in a REQUIRED column"]
    if spec["mode"] == "REPEATED":
        if not isinstance(value, list):
            return [f"{where}: not a list"]
        item = {**spec, "mode": "NULLABLE"}
        return [p for i, element in enumerate(value) for p in _fits(element, item, f"{where}[{i}]")]
    if spec["type"] == "RECORD":
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        return _row_problems(value, {f["name"]: f for f in spec["fields"]}, where + ".")
    allowed = _PYTHON_TYPES[spec["type"]]
    if not isinstance(value, allowed) or (spec["type"] == "INTEGER" and isinstance(value, bool)):
        return [f"{where}: {type(value).__name__} in a {spec['type']} column"]
    return []


def _row_problems(row: dict[str, Any], columns: dict[str, dict[str, Any]], prefix: str = "") -> list[str]:
    found = [f"{prefix}{key}: no such column" for key in row if key not in columns]
    for name, spec in columns.items():
        found += _fits(row.get(name), spec, prefix + name)
    return found


EVENTS = [
    CompletionEvent.succeeded(
        "r1",
        "retrieve",
        SERIES,
        {"instanceCount": 2, "bytes": 1024, "destination": "gs://b/x", "uploadedCount": 2, "skippedCount": 0},
    ),
    CompletionEvent.succeeded(
        "r2",
        "archive",
        SERIES,
        {
            "instanceCount": 2,
            "bytes": 10,
            "deleted": True,
            "deletedCount": 2,
            "rounds": 1,
            "verified": True,
            "manifestUri": "gs://b/x/m.json",
        },
    ),
    CompletionEvent.succeeded(
        "r3",
        "search",
        SERIES,
        {
            "instanceCount": 1,
            "instances": [{"sopInstanceUID": "1.2", "sopClassUID": None, "instanceNumber": 1}],
        },
    ),
    CompletionEvent.succeeded("r4", "sweep", None, {"seriesCount": 3, "published": 3}),
    CompletionEvent.failed("r5", None, None, PermanentError(Code.INVALID_MESSAGE, "not JSON")),
    CompletionEvent.failed(
        "r6", "delete", SERIES, PermanentError(Code.SERIES_NOT_EMPTY, "still there", {"remaining": 1})
    ),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.request_id)
def test_events_the_worker_publishes_fit_the_table(event: CompletionEvent) -> None:
    body = event.as_json()
    assert problems("event.schema.json", body) == []
    assert _row_problems(body, {n: c for n, c in _columns().items() if n not in ("publish_time",)}) == []


@pytest.mark.parametrize(
    ("prop", "says"),
    [
        ({"type": ["string", "integer"]}, "is not one type"),
        ({"description": "no type at all"}, "no type, enum or const"),
        ({"type": "string", "description": "x" * 1025}, "description longer"),
    ],
)
def test_the_generator_refuses_what_it_cannot_map(prop: dict[str, Any], says: str) -> None:
    with pytest.raises(SchemaError, match=says):
        column("field", prop, required=False)
