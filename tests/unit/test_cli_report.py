"""`report` (worker/cli/report.py): a summary of completion events from a file of JSON lines (events,
BigQuery audit rows) or a pull subscription, as a table, JSON or a PNG chart."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as api_exceptions

from tests.schemas import problems
from tests.unit.cli_fakes import SUBSCRIPTION, run_cli, usage_line
from tests.unit.fakes import SERIES, SERIES_PATH, STUDY
from tests.unit.test_cli_events import FakeSubscriber, received
from worker.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Clients

_serial = iter(range(1, 10_000))


def event(action: str | None = "archive", status: str = "succeeded", **extra: Any) -> dict[str, Any]:
    number = next(_serial)
    body: dict[str, Any] = {
        "version": "1",
        "requestId": f"req-{number}",
        "action": action,
        "status": status,
        "series": SERIES_PATH,
        "studyInstanceUID": STUDY,
        "seriesInstanceUID": f"{SERIES}.{number}",
        "finishedAt": f"2026-11-30T10:{number % 60:02d}:00.000Z",
    }
    body.update(extra)
    assert problems("event.schema.json", body) == [], body
    return body


def failed(code: str, action: str | None = "retrieve", **extra: Any) -> dict[str, Any]:
    return event(action, "failed", error={"code": code, "message": "why"}, **extra)


def write_lines(tmp_path: Path, rows: list[Any]) -> str:
    path = tmp_path / "events.jsonl"
    path.write_text(
        "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows), encoding="utf-8"
    )
    return str(path)


def report_json(
    capsys: pytest.CaptureFixture[str], *argv: str, clients: Clients | None = None
) -> dict[str, Any]:
    code, out, err = run_cli(capsys, "report", *argv, "--format", "json", clients=clients)
    assert code == EXIT_OK, err
    summary: dict[str, Any] = json.loads(out)
    return summary


def groups(summary: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    return {
        (g["action"], g["status"]): (g["events"], g["series"], g["instances"], g["bytes"])
        for g in summary["byActionStatus"]
    }


def test_events_per_action_and_status_failures_by_code_and_the_largest_series(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    big = event("archive", instanceCount=500, bytes=250_000_000, deleted=True)
    small = event("archive", instanceCount=2, bytes=1_000, deleted=True)
    copied = event("retrieve", instanceCount=40, bytes=9_000_000)
    swept = event(
        "sweep", series=None, studyInstanceUID=None, seriesInstanceUID=None, seriesCount=3, published=3
    )
    rows = [
        big,
        small,
        copied,
        swept,
        failed("series_not_found"),
        failed("series_not_found", action="archive"),
        failed("invalid_message", action=None, series=None, studyInstanceUID=None, seriesInstanceUID=None),
    ]
    summary = report_json(capsys, "--file", write_lines(tmp_path, rows), "--top", "2")

    assert summary["events"] == 7
    assert (summary["duplicates"], summary["unreadable"]) == (0, 0)
    assert groups(summary) == {
        ("archive", "succeeded"): (2, 2, 502, 250_001_000),
        ("retrieve", "succeeded"): (1, 1, 40, 9_000_000),
        ("sweep", "succeeded"): (1, 0, 0, 0),  # a sweep is no series
        ("retrieve", "failed"): (1, 1, 0, 0),
        ("archive", "failed"): (1, 1, 0, 0),
        ("(none)", "failed"): (1, 0, 0, 0),  # a message that named no action
    }
    assert summary["failuresByCode"] == [
        {"code": "series_not_found", "events": 2},
        {"code": "invalid_message", "events": 1},
    ]
    assert [s["requestId"] for s in summary["largestSeries"]] == [big["requestId"], copied["requestId"]]
    assert summary["largestSeries"][0] == {
        "requestId": big["requestId"],
        "action": "archive",
        "studyInstanceUID": STUDY,
        "seriesInstanceUID": big["seriesInstanceUID"],
        "instances": 500,
        "bytes": 250_000_000,
        "finishedAt": big["finishedAt"],
    }
    assert "no duration" in summary["largestSeriesNote"]  # says what stands in for the slowest
    assert (summary["from"], summary["to"]) == (
        min(r["finishedAt"] for r in rows),
        max(r["finishedAt"] for r in rows),
    )


def test_the_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = [event("retrieve", instanceCount=3, bytes=3 * 1024 * 1024), failed("destination_refused")]
    code, out, err = run_cli(capsys, "report", "--file", write_lines(tmp_path, rows))
    assert (code, err) == (EXIT_OK, "")
    lines = out.splitlines()
    assert lines[0].startswith("events: 2 (")
    assert "duplicates dropped: 0; unreadable lines: 0" in lines[0]
    assert lines[2].split() == ["ACTION", "STATUS", "EVENTS", "SERIES", "INSTANCES", "BYTES"]
    assert lines[3].split() == ["retrieve", "failed", "1", "1", "0", "0", "B"]
    assert lines[4].split() == ["retrieve", "succeeded", "1", "1", "3", "3.0", "MiB"]
    assert lines[6] == "FAILURES BY CODE"
    assert lines[7].split() == ["destination_refused", "1"]
    assert lines[9].startswith("LARGEST SERIES (events carry no duration")
    assert lines[11].split()[:2] == [rows[0]["requestId"], "retrieve"]


def test_a_message_delivered_twice_counts_once_and_unreadable_lines_are_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    once = event("retrieve", instanceCount=1, bytes=10)
    rows: list[Any] = [once, once, "not json", {"requestId": "x"}, "[1]", "", event("delete", deleted=True)]
    code, out, err = run_cli(capsys, "report", "--file", write_lines(tmp_path, rows), "--format", "json")
    assert code == EXIT_OK
    summary = json.loads(out)
    assert (summary["events"], summary["duplicates"]) == (2, 1)
    assert (summary["unreadable"], summary["unreadableLines"]) == (3, [3, 4, 5])
    assert usage_line(err) == "report: 3 lines are not completion events (lines: 3, 4, 5)"


def test_rows_exported_from_the_audit_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """BigQuery's JSON export: the event's columns (INT64 as strings), the metadata columns; a row
    written twice by the at-least-once subscription has the same message_id."""
    archived = event("archive", instanceCount=12, bytes=4096, deleted=True)
    as_columns = {
        **{k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in archived.items()},
        "subscription_name": "projects/p/subscriptions/dicom-series-worker-audit",
        "message_id": "1001",
        "publish_time": "2026-11-30 10:00:00.123 UTC",
        "attributes": json.dumps({"action": "archive", "status": "succeeded"}),
        "finishedAt": "2026-11-30 10:00:00.100 UTC",
    }
    copied = event("retrieve", instanceCount=2, bytes=20)
    as_data = {"message_id": "1002", "data": json.dumps(copied)}
    as_bytes = {
        "message_id": "1003",
        "data": base64.b64encode(json.dumps(failed("source_refused")).encode()).decode(),
    }
    flattened = {**failed("source_refused"), "message_id": "1005"}
    flattened["error"] = json.dumps(flattened["error"])  # a RECORD some exports write as JSON text
    rows = [
        as_columns,
        as_columns,
        as_data,
        as_bytes,
        {"message_id": "1004", "data": "not an event"},
        flattened,
    ]
    summary = report_json(capsys, "--file", write_lines(tmp_path, rows))

    assert (summary["events"], summary["duplicates"], summary["unreadable"]) == (4, 1, 1)
    assert groups(summary) == {
        ("archive", "succeeded"): (1, 1, 12, 4096),
        ("retrieve", "succeeded"): (1, 1, 2, 20),
        ("retrieve", "failed"): (2, 2, 0, 0),
    }
    assert summary["failuresByCode"] == [{"code": "source_refused", "events": 2}]


def test_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(event("verify", verified=True)) + "\n"))
    summary = report_json(capsys, "--file", "-")
    assert groups(summary) == {("verify", "succeeded"): (1, 1, 0, 0)}


def test_from_a_subscription_acks_what_it_read(capsys: pytest.CaptureFixture[str]) -> None:
    first = event("archive", instanceCount=3, bytes=300, deleted=True)
    redelivered = received(first, "a3")
    redelivered.message.message_id = "m-a1"  # the same message, delivered again
    subscriber = FakeSubscriber(
        [
            [received(first, "a1"), received(failed("verification_failed", action="archive"), "a2")],
            [redelivered, received(b"\xff", "a4")],
            api_exceptions.DeadlineExceeded("no messages"),
        ]
    )
    clients = Clients(subscriber=lambda: subscriber)
    code, out, err = run_cli(
        capsys, "report", "--subscription", SUBSCRIPTION, "--wait", "0.5", "--format", "json", clients=clients
    )
    assert code == EXIT_OK
    summary = json.loads(out)
    assert (summary["events"], summary["duplicates"], summary["unreadable"]) == (2, 1, 1)
    assert groups(summary) == {("archive", "succeeded"): (1, 1, 3, 300), ("archive", "failed"): (1, 1, 0, 0)}
    assert subscriber.acked == ["a1", "a2", "a3", "a4"]
    assert subscriber.closed
    assert usage_line(err) == "report: 1 lines are not completion events (lines: 4)"


def test_a_failed_pull_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    subscriber = FakeSubscriber([api_exceptions.PermissionDenied("no")])
    code, out, err = run_cli(
        capsys, "report", "--subscription", SUBSCRIPTION, clients=Clients(subscriber=lambda: subscriber)
    )
    assert (code, out) == (EXIT_FAILED, "")
    assert usage_line(err) == f"pulling from {SUBSCRIPTION} failed: PermissionDenied: 403 no"


def test_the_chart_is_a_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    chart = tmp_path / "report.png"
    rows = [event("archive", instanceCount=1, bytes=1, deleted=True), failed("series_not_found")]
    code, _, err = run_cli(capsys, "report", "--file", write_lines(tmp_path, rows), "--chart", str(chart))
    assert (code, err) == (EXIT_OK, "")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["--file", "/nonexistent/events.jsonl"],
            "report: error: --file /nonexistent/events.jsonl cannot be read",
        ),
        (["--subscription", "completions"], "report: error: --subscription must be projects/"),
        ([], "report: error: one of the arguments --file --subscription is required"),
        (["--file", "x", "--subscription", SUBSCRIPTION], "not allowed with argument"),
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    code, out, err = run_cli(capsys, "report", *argv)
    assert (code, out) == (EXIT_USAGE, "")
    assert says in usage_line(err)


def test_without_matplotlib_the_chart_is_refused_before_anything_is_read(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    chart = tmp_path / "report.png"
    code, out, err = run_cli(
        capsys, "report", "--subscription", SUBSCRIPTION, "--chart", str(chart)
    )  # no_clients(): pulling would fail the test
    assert (code, out) == (EXIT_USAGE, "")
    assert usage_line(err) == (
        "python -m worker report: error: --chart needs matplotlib, which the worker does not install:"
        " pip install -r requirements-dev.txt"
    )
    assert not chart.exists()


def test_the_json_array_of_bq_query(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`bq query --format=json` prints the rows as one JSON array: each element is a row."""
    rows = [
        {**event("tier", storageClass="ARCHIVE", inClassCount=4, instanceCount=4), "message_id": "1"},
        {**failed("tier_failed", action="tier"), "message_id": "2"},
        {**failed("tier_failed", action="tier"), "message_id": "2"},
        "not a row",
    ]
    summary = report_json(capsys, "--file", write_lines(tmp_path, [json.dumps(rows)]))
    assert (summary["events"], summary["duplicates"], summary["unreadable"]) == (2, 1, 1)
    assert groups(summary) == {("tier", "succeeded"): (1, 1, 4, 0), ("tier", "failed"): (1, 1, 0, 0)}
