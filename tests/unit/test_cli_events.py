"""`events` (worker/cli/events.py) against a subscriber that answers pulls from a script."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from google.api_core import exceptions as api_exceptions

from tests.unit.cli_fakes import SUBSCRIPTION, run_cli, usage_line
from tests.unit.fakes import SERIES, SERIES_PATH, STUDY
from worker.cli import EXIT_FAILED, EXIT_OK, Clients
from worker.cli.events import FOLLOW_PULL_SECONDS
from worker.cli.table import short_uid


def received(data: bytes | dict[str, Any], ack_id: str, attributes: dict[str, str] | None = None) -> Any:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    message = SimpleNamespace(data=raw, attributes=attributes or {}, message_id=f"m-{ack_id}")
    return SimpleNamespace(ack_id=ack_id, message=message)


class FakeSubscriber:
    """Answers pulls from a script: a list of messages, or an exception to raise."""

    def __init__(self, script: list[list[Any] | BaseException]) -> None:
        self.script = script
        self.pulls: list[dict[str, Any]] = []
        self.acked: list[str] = []
        self.closed = False

    def pull(self, request: dict[str, Any], timeout: float) -> Any:
        self.pulls.append({**request, "timeout": timeout})
        step = self.script.pop(0) if self.script else []
        if isinstance(step, BaseException):
            raise step
        return SimpleNamespace(received_messages=step)

    def acknowledge(self, request: dict[str, Any]) -> None:
        assert request["subscription"] == SUBSCRIPTION
        self.acked.extend(request["ack_ids"])

    def close(self) -> None:
        self.closed = True


def event(status: str = "succeeded", **extra: Any) -> dict[str, Any]:
    body = {
        "version": "1",
        "requestId": "req-1",
        "action": "retrieve",
        "status": status,
        "series": SERIES_PATH,
        "studyInstanceUID": STUDY,
        "seriesInstanceUID": SERIES,
        "finishedAt": "2024-01-02T03:04:05.000Z",
    }
    body.update(extra)
    return body


def events_clients(subscriber: FakeSubscriber) -> Clients:
    return Clients(subscriber=lambda: subscriber)


def test_events_table_until_a_pull_brings_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    failed = event(
        "failed", requestId="req-2", action="archive", error={"code": "verification_failed", "message": "x"}
    )
    subscriber = FakeSubscriber(
        [
            [received(event(instanceCount=12), "a1"), received(failed, "a2")],
            [
                received(
                    b"not json",
                    "a3",
                    {"requestId": "req-3", "status": "failed", "errorCode": "invalid_message"},
                )
            ],
            api_exceptions.DeadlineExceeded("no messages"),
            [received(event(), "never")],
        ]
    )
    code, out, err = run_cli(
        capsys, "events", "--subscription", SUBSCRIPTION, "--wait", "0.5", clients=events_clients(subscriber)
    )
    assert code == EXIT_OK, err
    header, *rows = out.splitlines()
    assert header.split() == ["REQUEST", "ID", "ACTION", "STATUS", "STUDY/SERIES", "INSTANCES", "ERROR"]
    uids = f"{short_uid(STUDY)}/{short_uid(SERIES)}"
    assert [row.split() for row in rows] == [
        ["req-1", "retrieve", "succeeded", uids, "12"],
        ["req-2", "archive", "failed", uids, "-", "verification_failed"],
        ["req-3", "-", "failed", "-", "-", "invalid_message"],
    ]
    assert subscriber.acked == ["a1", "a2", "a3"]
    assert [pull["timeout"] for pull in subscriber.pulls] == [0.5, 0.5, 0.5]
    assert usage_line(err) == "events: 3"
    assert subscriber.closed


def test_events_json_lines_and_max(capsys: pytest.CaptureFixture[str]) -> None:
    subscriber = FakeSubscriber(
        [[received(event(), "a1"), received(b"\xff", "a2")], [received(event(), "a3")]]
    )
    argv = ["events", "--subscription", SUBSCRIPTION, "--format", "json", "--max", "3"]
    code, out, _ = run_cli(capsys, *argv, clients=events_clients(subscriber))
    assert code == EXIT_OK
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0] == event()
    assert lines[1] == {"messageId": "m-a2", "attributes": {}, "data": "\ufffd"}
    assert lines[2] == event()
    assert [pull["max_messages"] for pull in subscriber.pulls] == [3, 1]
    assert subscriber.acked == ["a1", "a2", "a3"]


def test_events_follow_keeps_pulling_until_ctrl_c(capsys: pytest.CaptureFixture[str]) -> None:
    subscriber = FakeSubscriber(
        [[], api_exceptions.DeadlineExceeded("idle"), [received(event(), "a1")], [], KeyboardInterrupt()]
    )
    argv = ["events", "--subscription", SUBSCRIPTION, "--follow", "--format", "json"]
    code, out, err = run_cli(capsys, *argv, clients=events_clients(subscriber))
    assert code == EXIT_OK
    assert len(out.splitlines()) == 1
    assert len(subscriber.pulls) == 5
    assert {pull["timeout"] for pull in subscriber.pulls} == {FOLLOW_PULL_SECONDS}
    assert usage_line(err) == "events: 1"


def test_events_pull_failure_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    subscriber = FakeSubscriber([api_exceptions.NotFound("Resource not found (resource=series-done-pull).")])
    code, out, err = run_cli(
        capsys, "events", "--subscription", SUBSCRIPTION, clients=events_clients(subscriber)
    )
    assert (code, out) == (EXIT_FAILED, "")
    assert usage_line(err) == (
        f"pulling from {SUBSCRIPTION} failed: NotFound: 404 Resource not found (resource=series-done-pull)."
    )
