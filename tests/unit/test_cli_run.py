"""`run` (worker/cli/run.py): the worker's own code in process with scripted actions; the copy progress."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.unit.cli_fakes import DICOMWEB_ENV, Clock, run_cli, usage_line
from tests.unit.fakes import COMPLETION_TOPIC, SERIES_PATH, FakePublisher, no_storage
from worker.cli import EXIT_FAILED, EXIT_HANDED_ON, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Clients
from worker.cli.output import ProgressLine
from worker.cli.run import CopyProgress
from worker.delivery import Worker
from worker.dicomweb import DicomWebClient
from worker.errors import Code, PermanentError, RetryableError
from worker.http_exchange import build_transport
from worker.job import HandedOn, Job, Outcome
from worker.ports import Ports
from worker.request import Action
from worker.settings import Auth, Settings


class ScriptedAction:
    def __init__(self, outcome: Callable[[Job], Outcome]) -> None:
        self.outcome = outcome
        self.jobs: list[Job] = []

    def __call__(self, job: Job) -> Outcome:
        self.jobs.append(job)
        return self.outcome(job)


def run_clients(
    action: Callable[[Job], Outcome], publisher: FakePublisher | None = None
) -> tuple[Clients, list[Worker]]:
    made: list[Worker] = []

    def worker(settings: Settings) -> Worker:
        dicomweb = DicomWebClient(
            settings, build_transport(replace(settings, dicomweb_auth=Auth.NONE))
        )  # no request is sent
        actions = dict.fromkeys(Action, action)
        made.append(Worker(settings, Ports(dicomweb, no_storage(), publisher or FakePublisher()), actions))
        return made[-1]

    return Clients(worker=worker), made


def copies_two(job: Job) -> Outcome:
    job.report(1, 1536)
    job.report(1, 2048)
    return {"instanceCount": 2, "bytes": 3584}


def test_run_prints_the_event_and_draws_progress(capsys: pytest.CaptureFixture[str]) -> None:
    action = ScriptedAction(copies_two)
    clients, made = run_clients(action)

    code, out, err = run_cli(
        capsys, "run", "retrieve", SERIES_PATH, "--deadline", "900", env={}, clients=clients
    )

    assert code == EXIT_OK, err
    body = json.loads(out)
    assert body["status"] == "succeeded"
    assert body["instanceCount"] == 2
    assert body["requestId"].startswith("cli-")
    assert body["series"] == SERIES_PATH
    assert err.strip().splitlines()[-1].startswith("copied 2 instances, 3.5 KiB (")
    [job] = action.jobs
    assert job.request.action is Action.RETRIEVE
    assert made[0].settings.deadline_seconds == 900
    assert made[0].settings.completion_topic is None  # not needed: the event is only logged


def test_run_publishes_the_event_when_completion_topic_is_set(capsys: pytest.CaptureFixture[str]) -> None:
    publisher = FakePublisher()
    clients, _ = run_clients(ScriptedAction(lambda job: {"instanceCount": 0}), publisher)
    argv = ["run", "search", SERIES_PATH, "--completion-topic", COMPLETION_TOPIC, "--request-id", "op-1"]
    code, out, _ = run_cli(capsys, *argv, clients=clients)
    assert code == EXIT_OK
    assert json.loads(out)["requestId"] == "op-1"
    [published] = publisher.to(COMPLETION_TOPIC)
    assert published.json()["requestId"] == "op-1"


def test_run_failed_event_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    def fails(job: Job) -> Outcome:
        raise PermanentError(Code.SERIES_NOT_FOUND, "the series is not found (404)")

    clients, _ = run_clients(ScriptedAction(fails))
    code, out, err = run_cli(capsys, "run", "retrieve", SERIES_PATH, clients=clients)
    assert code == EXIT_FAILED
    body = json.loads(out)
    assert body["status"] == "failed"
    assert body["error"] == {"code": "series_not_found", "message": "the series is not found (404)"}
    assert '"message":"request failed"' in err  # the worker's warning, as a JSON log line on stderr


def test_run_delete_without_delete_enabled_is_a_failed_event(capsys: pytest.CaptureFixture[str]) -> None:
    action = ScriptedAction(lambda job: {"deleted": True})
    clients, _ = run_clients(action)
    code, out, _ = run_cli(capsys, "run", "delete", SERIES_PATH, clients=clients)
    assert code == EXIT_FAILED
    assert json.loads(out)["error"]["code"] == "delete_disabled"
    assert action.jobs == []


def test_run_transient_failure_exits_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def flaky(job: Job) -> Outcome:
        raise RetryableError("GET answered 503 after retries")

    clients, _ = run_clients(ScriptedAction(flaky))
    code, out, err = run_cli(capsys, "run", "search", SERIES_PATH, clients=clients)
    assert (code, out) == (EXIT_FAILED, "")
    assert err.strip().splitlines()[-1] == (
        "search did not finish: GET answered 503 after retries (a transient failure: run it again)"
    )


def test_run_handed_on_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    clients, _ = run_clients(ScriptedAction(lambda job: HandedOn("deadline")))
    code, out, err = run_cli(capsys, "run", "retrieve", SERIES_PATH, clients=clients)
    assert (code, out) == (EXIT_HANDED_ON, "")
    assert "handed on to REQUEST_TOPIC" in err


def test_run_series_must_fit_the_configured_server(capsys: pytest.CaptureFixture[str]) -> None:
    action = ScriptedAction(copies_two)
    clients, _ = run_clients(action)
    code, _, err = run_cli(capsys, "run", "retrieve", SERIES_PATH, env=DICOMWEB_ENV, clients=clients)
    assert code == EXIT_USAGE
    assert usage_line(err).startswith("python -m worker run: error: this worker serves DICOMWEB_URL")
    assert action.jobs == []


def test_run_verbose_logs_the_worker_and_restores_the_logger(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("worker")
    before = (list(logger.handlers), logger.level, logger.propagate)
    clients, _ = run_clients(ScriptedAction(copies_two))
    code, _, err = run_cli(capsys, "run", "retrieve", SERIES_PATH, "-v", clients=clients)
    assert code == EXIT_OK
    assert '"message":"request started"' in err
    assert (list(logger.handlers), logger.level, logger.propagate) == before


def test_interrupt_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(job: Job) -> Outcome:
        raise KeyboardInterrupt

    clients, _ = run_clients(ScriptedAction(interrupted))
    code, _, err = run_cli(capsys, "run", "search", SERIES_PATH, clients=clients)
    assert code == EXIT_INTERRUPTED
    assert err.strip().splitlines()[-1] == "interrupted"


def test_copy_progress_adds_up() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = CopyProgress(ProgressLine(stream, interval=0, clock=clock), clock)
    clock.now = 2.0
    progress(1, 1024 * 1024)
    progress(1, 3 * 1024 * 1024)
    assert (progress.instances, progress.bytes) == (2, 4 * 1024 * 1024)
    assert stream.getvalue().splitlines() == [
        "copied 1 instance, 1.0 MiB (512.0 KiB/s)",
        "copied 2 instances, 4.0 MiB (2.0 MiB/s)",
    ]
