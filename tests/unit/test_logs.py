"""Structured log lines: one JSON object per line with severity, message, request id, scalar fields only."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from worker import logs


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through JsonFormatter into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("worker.tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, buffer
    finally:
        logger.removeHandler(handler)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    text = buffer.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_one_json_object_per_line(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = capture

    logger.info("request started")
    logger.warning("a message\nover two lines with %s", "args")

    first, second = lines(buffer)
    assert first["severity"] == "INFO"
    assert first["message"] == "request started"
    assert first["logger"] == "worker.tests.logs"
    assert "time" in first
    assert second["severity"] == "WARNING"
    assert second["message"] == "a message\nover two lines with args"


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (logging.DEBUG, "DEBUG"),
        (logging.INFO, "INFO"),
        (logging.WARNING, "WARNING"),
        (logging.ERROR, "ERROR"),
        (logging.CRITICAL, "CRITICAL"),
        (25, "DEFAULT"),
    ],
)
def test_severity(capture: tuple[logging.Logger, io.StringIO], level: int, severity: str) -> None:
    logger, buffer = capture

    logger.log(level, "x")

    assert lines(buffer)[0]["severity"] == severity


def test_request_id_and_trace_from_the_context(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = capture

    logger.info("before")
    request_token = logs.request_id_var.set("req-1")
    trace_token = logs.trace_var.set("projects/p/traces/abc")
    try:
        logger.info("during")
    finally:
        logs.trace_var.reset(trace_token)
        logs.request_id_var.reset(request_token)

    before, during = lines(buffer)
    assert "requestId" not in before
    assert "logging.googleapis.com/trace" not in before
    assert during["requestId"] == "req-1"
    assert during["logging.googleapis.com/trace"] == "projects/p/traces/abc"


def test_scalar_extras_are_kept_and_others_dropped(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = capture

    logger.info(
        "copied",
        extra={
            "sopInstanceUID": "1.2.3",
            "count": 3,
            "seconds": 1.5,
            "verified": True,
            "dataset": {"PatientName": "DOE^JANE"},
            "values": ["DOE^JANE"],
            "raw": b"DOE^JANE",
            "nothing": None,
            "obj": object(),
        },
    )

    (entry,) = lines(buffer)
    assert entry["sopInstanceUID"] == "1.2.3"
    assert entry["count"] == 3
    assert entry["seconds"] == 1.5
    assert entry["verified"] is True
    for dropped in ("dataset", "values", "raw", "nothing", "obj"):
        assert dropped not in entry
    assert "DOE^JANE" not in buffer.getvalue()


def test_logging_internals_are_not_fields(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = capture

    logger.info("x %s", "y")

    (entry,) = lines(buffer)
    assert set(entry) <= {"severity", "message", "time", "logger", "taskName"}


def test_an_exception_is_named_not_described(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = capture

    try:
        raise ValueError("PatientName DOE^JANE")
    except ValueError:
        logger.exception("failed")

    (entry,) = lines(buffer)
    assert entry["exception"] == "ValueError"
    assert entry["severity"] == "ERROR"
    assert "DOE^JANE" not in buffer.getvalue()


@pytest.fixture
def worker_logger() -> Iterator[logging.Logger]:
    """The `worker` logger, restored after configure() changed it."""
    root = logging.getLogger("worker")
    saved = (list(root.handlers), root.level, root.propagate)
    root.handlers[:] = [h for h in root.handlers if not isinstance(h.formatter, logs.JsonFormatter)]
    try:
        yield root
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        root.propagate = saved[2]


def test_configure_is_idempotent_and_writes_to_stdout(
    worker_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)

    logs.configure()
    logs.configure()

    assert sum(isinstance(h.formatter, logs.JsonFormatter) for h in worker_logger.handlers) == 1
    logging.getLogger("worker.delivery").info("request started", extra={"action": "search"})
    (entry,) = lines(stdout)
    assert entry["message"] == "request started"
    assert entry["action"] == "search"
