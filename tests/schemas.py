"""The published schemas (schemas/*.json) as checks for the tests: every completion event a test sees
published and every request a test publishes must validate (jsonschema, draft 2020-12)."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
EVENT_SCHEMA = "event.schema.json"
REQUEST_SCHEMA = "request.schema.json"

FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """RFC 3339 with a time zone (jsonschema checks date-time only with an optional package)."""
    if not isinstance(value, str):
        return True
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return "T" in value and parsed.tzinfo is not None


@functools.cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FORMATS)


def problems(name: str, body: Any) -> list[str]:
    """What in `body` does not validate against schemas/`name`, one line each (empty: it validates)."""
    errors = sorted(validator(name).iter_errors(body), key=lambda error: list(error.absolute_path))
    return [f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}" for error in errors]


def assert_valid_event(body: Any) -> None:
    found = problems(EVENT_SCHEMA, body)
    assert not found, f"a completion event does not validate against schemas/{EVENT_SCHEMA}: {found}"


def assert_valid_request(body: Any) -> None:
    found = problems(REQUEST_SCHEMA, body)
    assert not found, f"a request does not validate against schemas/{REQUEST_SCHEMA}: {found}"
