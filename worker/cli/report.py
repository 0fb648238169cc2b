"""`report`: a summary of completion events, from a pull subscription or a file of JSON lines.

What it counts: the events (one per request; a message delivered twice counts once), the series and
bytes of each action and status, the failures by error code, and the largest series. The event carries
no duration (schemas/event.schema.json has `finishedAt` only, not when the request started), so the
report cannot rank series by time: it ranks them by bytes, then instances, which is what a series'
copy time grows with, and says so.

A line of the file may be an event as the worker publishes it (`events --format json` prints those), a
row of the audit table exported from BigQuery (the event's fields as columns, INT64 columns as strings,
beside the metadata columns message_id, publish_time, attributes), or a row holding the event as a JSON
string (or base64 of one) in a `data` column; a line holding a JSON array of rows (`bq query
--format=json`) counts each. Anything else is counted as unreadable, with its line.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from worker.cli.arguments import (
    EXIT_FAILED,
    EXIT_OK,
    Parser,
    UsageError,
    add_command,
    positive_int,
)
from worker.cli.clients import Clients, make
from worker.cli.events import check_subscription, pull_arguments, pull_batches
from worker.cli.output import human_size, print_error, reason
from worker.cli.table import short_uid

NO_DURATION = "events carry no duration, only finishedAt: ranked by bytes, then instances"
_COUNTS = ("instanceCount", "bytes", "seriesCount", "published")  # INT64 columns: strings in an export

_EPILOG = """\
Reads --file (JSON lines: events, or rows of the audit table exported from BigQuery; - for stdin) or
--subscription (pulls until a pull brings nothing for --wait seconds, and acks what it read: give the
report a subscription of its own). Prints events and series per action and status with their
instances and bytes, failures by error code, and the --top largest series: the events carry no
duration (finishedAt only), so bytes, then instances, stand in for time. --chart PATH writes a PNG
(needs matplotlib, not installed with the worker: pip install -r requirements-dev.txt).
"""


def add_parser(commands: argparse._SubParsersAction[Parser], parents: Sequence[Parser]) -> None:
    report = add_command(
        commands,
        "report",
        parents,
        summary="summarise completion events (a file of JSON lines or a subscription)",
        description="Summarise completion events: by action and status, by error code, the largest series.",
        epilog=_EPILOG,
    )
    source = report.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--file", metavar="PATH", help="JSON lines: events or BigQuery export rows; - for stdin"
    )
    source.add_argument("--subscription", metavar="projects/P/subscriptions/S", help="a pull subscription")
    report.add_argument("--format", choices=("table", "json"), default="table", help="default: table")
    report.add_argument("--chart", metavar="PATH.png", help="also write a PNG chart there")
    report.add_argument("--top", type=positive_int, default=10, metavar="N", help="largest series shown (10)")
    pull_arguments(report, "--subscription")
    report.set_defaults(handler=cmd_report)


# --------------------------------------------------------------------------------------------------
# Reading events
# --------------------------------------------------------------------------------------------------


def _json_object(text: str | bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _from_data(data: object) -> dict[str, Any] | None:
    """The event in a `data` column: a JSON string, or (a BYTES column exported) base64 of one."""
    if isinstance(data, dict):
        return data
    if not isinstance(data, str):
        return None
    found = _json_object(data)
    if found is None:
        with contextlib.suppress(binascii.Error, ValueError):
            found = _json_object(base64.b64decode(data, validate=True))
    return found


def _is_event(body: Mapping[str, Any]) -> bool:
    return isinstance(body.get("requestId"), str) and body.get("status") in ("succeeded", "failed")


def as_event(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The completion event in one line: the row itself, or its `data` column; None if neither is one."""
    body = dict(row) if _is_event(row) else _from_data(row.get("data"))
    if body is None or not _is_event(body):
        return None
    for name in _COUNTS:  # BigQuery's JSON export writes INT64 as a string
        value = body.get(name)
        if isinstance(value, str) and value.isdigit():
            body[name] = int(value)
    if isinstance(body.get("error"), str):  # a RECORD flattened to JSON text by some exports
        body["error"] = _json_object(body["error"]) or {"code": None}
    return body


@dataclass
class Reading:
    """The events read, one per message, and what could not be read (line numbers, for the operator)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    unreadable: list[int] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def add(self, body: dict[str, Any] | None, where: int, message_id: str | None = None) -> None:
        if body is None:
            self.unreadable.append(where)
            return
        identity = f"id:{message_id}" if message_id else json.dumps(body, sort_keys=True)
        if identity in self._seen:  # at-least-once delivery: the same message twice
            self.duplicates += 1
            return
        self._seen.add(identity)
        self.events.append(body)


def read_lines(lines: Iterable[str]) -> Reading:
    """JSON lines; a line holding a JSON array (`bq query --format=json`) is a row per element."""
    reading = Reading()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            value = None
        for row in value if isinstance(value, list) else [value]:
            if not isinstance(row, dict):
                reading.add(None, number)
                continue
            message_id = row.get("message_id")  # an audit table row: the Pub/Sub message it came from
            reading.add(as_event(row), number, message_id if isinstance(message_id, str) else None)
    return reading


def _read_file(path: str) -> Reading:
    if path == "-":
        return read_lines(sys.stdin)
    try:
        with Path(path).open(encoding="utf-8") as handle:
            return read_lines(handle)
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--file {path} cannot be read: {type(error).__name__}") from None


def _read_subscription(client: Any, args: argparse.Namespace) -> Reading:
    reading = Reading()
    number = 0
    for received in pull_batches(client, args.subscription, limit=args.max, wait=args.wait, follow=False):
        for item in received:
            number += 1
            row = _json_object(item.message.data)
            reading.add(as_event(row) if row is not None else None, number, item.message.message_id)
    return reading


# --------------------------------------------------------------------------------------------------
# The summary
# --------------------------------------------------------------------------------------------------


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def summarise(reading: Reading, top: int) -> dict[str, Any]:
    """The report as data (what --format json prints; the table and the chart are drawn from it)."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    failures: Counter[str] = Counter()
    for event in reading.events:
        action = event.get("action") or "(none)"
        status = str(event["status"])
        group = groups.setdefault(
            (action, status),
            {"action": action, "status": status, "events": 0, "series": 0, "instances": 0, "bytes": 0},
        )
        group["events"] += 1
        group["series"] += 1 if event.get("seriesInstanceUID") else 0
        group["instances"] += _count(event.get("instanceCount"))
        group["bytes"] += _count(event.get("bytes"))
        if status == "failed":
            error = event.get("error")
            code = error.get("code") if isinstance(error, dict) else None
            failures[str(code or "(no code)")] += 1
    largest = sorted(
        (e for e in reading.events if e.get("seriesInstanceUID") and e["status"] == "succeeded"),
        key=lambda e: (_count(e.get("bytes")), _count(e.get("instanceCount"))),
        reverse=True,
    )[:top]
    finished = sorted(str(e["finishedAt"]) for e in reading.events if e.get("finishedAt"))
    return {
        "events": len(reading.events),
        "duplicates": reading.duplicates,
        "unreadable": len(reading.unreadable),
        "unreadableLines": reading.unreadable[:20],
        "from": finished[0] if finished else None,
        "to": finished[-1] if finished else None,
        "byActionStatus": [groups[key] for key in sorted(groups)],
        "failuresByCode": [
            {"code": code, "events": n} for code, n in sorted(failures.items(), key=_by_count)
        ],
        "largestSeries": [
            {
                "requestId": e["requestId"],
                "action": e.get("action"),
                "studyInstanceUID": e.get("studyInstanceUID"),
                "seriesInstanceUID": e.get("seriesInstanceUID"),
                "instances": _count(e.get("instanceCount")),
                "bytes": _count(e.get("bytes")),
                "finishedAt": e.get("finishedAt"),
            }
            for e in largest
        ],
        "largestSeriesNote": NO_DURATION,
    }


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def print_table(summary: Mapping[str, Any], out: TextIO) -> None:
    period = f"{summary['from']} .. {summary['to']}" if summary["from"] else "-"
    out.write(
        f"events: {summary['events']} ({period}); duplicates dropped: {summary['duplicates']};"
        f" unreadable lines: {summary['unreadable']}\n\n"
    )
    row = "{:<10} {:<9} {:>8} {:>8} {:>11} {:>12}\n"
    out.write(row.format("ACTION", "STATUS", "EVENTS", "SERIES", "INSTANCES", "BYTES"))
    for group in summary["byActionStatus"]:
        out.write(
            row.format(
                group["action"], group["status"], group["events"], group["series"], group["instances"],
                human_size(group["bytes"]),
            )
        )  # fmt: skip
    out.write("\nFAILURES BY CODE\n")
    for failure in summary["failuresByCode"] or [{"code": "(none)", "events": ""}]:
        out.write(f"{failure['code']:<28} {failure['events']:>8}\n")
    out.write(f"\nLARGEST SERIES ({summary['largestSeriesNote']})\n")
    line = "{:<24} {:<9} {:<29} {:>9} {:>12}\n"
    out.write(line.format("REQUEST ID", "ACTION", "STUDY/SERIES", "INSTANCES", "BYTES"))
    for series in summary["largestSeries"]:
        uids = f"{short_uid(series['studyInstanceUID'])}/{short_uid(series['seriesInstanceUID'])}"
        out.write(
            line.format(
                series["requestId"][:24], series["action"] or "-", uids, series["instances"],
                human_size(series["bytes"]),
            )
        )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# The chart (matplotlib: a development requirement, not the function's)
# --------------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise UsageError(
            "--chart needs matplotlib, which the worker does not install: pip install -r requirements-dev.txt"
        ) from None
    return pyplot


def write_chart(summary: Mapping[str, Any], path: str, pyplot: Any) -> None:
    """Events per action (succeeded and failed stacked), and failures by code, side by side."""
    actions = sorted({g["action"] for g in summary["byActionStatus"]})
    counts = {(g["action"], g["status"]): g["events"] for g in summary["byActionStatus"]}
    succeeded = [counts.get((a, "succeeded"), 0) for a in actions]
    failed = [counts.get((a, "failed"), 0) for a in actions]
    codes = [f["code"] for f in summary["failuresByCode"]]
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(12, 4.5))
    left.bar(actions, succeeded, label="succeeded", color="#4c9a2a")
    left.bar(actions, failed, bottom=succeeded, label="failed", color="#c0392b")
    left.set_title(f"completion events by action ({summary['events']})")
    left.set_ylabel("events")
    left.yaxis.get_major_locator().set_params(integer=True)
    left.legend()
    left.tick_params(axis="x", rotation=30)
    right.barh(
        codes or ["(no failures)"], [f["events"] for f in summary["failuresByCode"]] or [0], color="#c0392b"
    )
    right.set_title("failures by error code")
    right.set_xlabel("events")
    right.xaxis.get_major_locator().set_params(integer=True)
    right.invert_yaxis()
    figure.tight_layout()
    try:
        figure.savefig(path, format="png", dpi=100)
    except OSError as error:
        raise UsageError(f"--chart {path} cannot be written: {type(error).__name__}") from None
    finally:
        pyplot.close(figure)


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace, env: Mapping[str, str], clients: Clients) -> int:
    pyplot = _pyplot() if args.chart else None  # before any reading: a missing library stops at once
    if args.file is not None:
        reading = _read_file(args.file)
    else:
        check_subscription(args.subscription)
        from google.api_core import exceptions as api_exceptions

        client = make(clients.subscriber)
        try:
            reading = _read_subscription(client, args)
        except api_exceptions.GoogleAPICallError as error:
            print_error(f"pulling from {args.subscription} failed: {reason(error)}")
            return EXIT_FAILED
        finally:
            with contextlib.suppress(Exception):
                client.close()
    summary = summarise(reading, args.top)
    if args.format == "json":
        print(json.dumps(summary, separators=(",", ":")))
    else:
        print_table(summary, sys.stdout)
    if pyplot is not None:
        write_chart(summary, args.chart, pyplot)
    if reading.unreadable:
        shown = ", ".join(map(str, reading.unreadable[:10]))
        print_error(f"report: {len(reading.unreadable)} lines are not completion events (lines: {shown})")
    return EXIT_OK
