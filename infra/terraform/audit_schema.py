"""The audit table's BigQuery schema, generated from the completion event's JSON Schema.

    python -m infra.terraform.audit_schema      rewrites infra/terraform/audit_table_schema.json

audit.tf reads that file; tests/infra/test_audit_schema.py fails when it is not what this module makes of
schemas/event.schema.json, so the table and the event cannot drift apart. The table holds one row per
event: the event's fields as columns (the BigQuery subscription's use_table_schema), then the message
metadata the subscription writes (write_metadata). A field the event schema may leave null is NULLABLE;
a required one that may not be null is REQUIRED, so a message that is not an event is dead-lettered
rather than written half empty.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENT_SCHEMA = REPO_ROOT / "schemas" / "event.schema.json"
TABLE_SCHEMA = Path(__file__).resolve().parent / "audit_table_schema.json"

# What write_metadata adds beside the event's own columns (the data itself goes into those columns).
METADATA_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "subscription_name",
        "type": "STRING",
        "mode": "NULLABLE",
        "description": "Pub/Sub: the BigQuery subscription that wrote the row.",
    },
    {
        "name": "message_id",
        "type": "STRING",
        "mode": "NULLABLE",
        "description": "Pub/Sub: the completion message's id (delivery is at least once: a row may repeat).",
    },
    {
        "name": "publish_time",
        "type": "TIMESTAMP",
        "mode": "NULLABLE",
        "description": "Pub/Sub: when the worker published the event; the table is partitioned by its day.",
    },
    {
        "name": "attributes",
        "type": "JSON",
        "mode": "NULLABLE",
        "description": "Pub/Sub: the message attributes (action, status, requestId, UIDs, errorCode).",
    },
]

_SCALARS = {"string": "STRING", "integer": "INTEGER", "number": "FLOAT", "boolean": "BOOLEAN"}
_DESCRIPTION_LIMIT = 1024  # BigQuery's limit on a column description


class SchemaError(ValueError):
    """A construct of the event schema that this generator does not map (say which, never guess)."""


def _json_types(name: str, prop: dict[str, Any]) -> set[str]:
    """The JSON types a property may take, from `type`, `enum` or `const`."""
    if "type" in prop:
        declared = prop["type"]
        return set(declared) if isinstance(declared, list) else {declared}
    values = prop["enum"] if "enum" in prop else [prop["const"]] if "const" in prop else None
    if values is None:
        raise SchemaError(f"{name}: no type, enum or const")
    named = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
    return {named[type(value)] for value in values}


def column(name: str, prop: dict[str, Any], *, required: bool) -> dict[str, Any]:
    """The BigQuery column of one event property."""
    types = _json_types(name, prop)
    nullable = "null" in types
    kinds = types - {"null"}
    if len(kinds) != 1:
        raise SchemaError(f"{name}: {sorted(types)} is not one type (or one type and null)")
    (kind,) = kinds
    out: dict[str, Any] = {"name": name}
    if kind == "array":
        item = prop.get("items", {})
        inner = column(name, item, required=True)
        out.update(type=inner["type"], mode="REPEATED")
        if "fields" in inner:
            out["fields"] = inner["fields"]
    elif kind == "object":
        fields = prop.get("properties")
        if fields:
            needed = set(prop.get("required", []))
            out.update(
                type="RECORD",
                fields=[column(key, sub, required=key in needed) for key, sub in fields.items()],
            )
        else:  # a free-form object (error.details): kept whole
            out["type"] = "JSON"
        out["mode"] = "REQUIRED" if required and not nullable else "NULLABLE"
    elif kind == "string" and prop.get("format") == "date-time":
        out.update(type="TIMESTAMP", mode="REQUIRED" if required and not nullable else "NULLABLE")
    elif kind in _SCALARS:
        out.update(type=_SCALARS[kind], mode="REQUIRED" if required and not nullable else "NULLABLE")
    else:
        raise SchemaError(f"{name}: JSON type {kind} has no BigQuery column type here")
    description = prop.get("description")
    if description:
        if len(description) > _DESCRIPTION_LIMIT:
            raise SchemaError(f"{name}: description longer than {_DESCRIPTION_LIMIT} characters")
        out["description"] = description
    # The key order BigQuery itself uses, so that the file reads like `bq show --schema`.
    order = ("name", "type", "mode", "description", "fields")
    return {key: out[key] for key in order if key in out}


def table_schema(event_schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The audit table's columns: every event property in the schema's order, then the metadata."""
    required = set(event_schema.get("required", []))
    columns = [
        column(name, prop, required=name in required) for name, prop in event_schema["properties"].items()
    ]
    return columns + METADATA_COLUMNS


def rendered(event_schema_path: Path = EVENT_SCHEMA) -> str:
    """The file's text: the schema as `bq` and Terraform's google_bigquery_table.schema read it."""
    schema = json.loads(event_schema_path.read_text(encoding="utf-8"))
    return json.dumps(table_schema(schema), indent=2) + "\n"


def main() -> None:
    TABLE_SCHEMA.write_text(rendered(), encoding="utf-8")
    print(f"wrote {TABLE_SCHEMA.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
