"""The operator CLI without a network: argument parsing, the one-line reasons and exit codes, and each
command against fake clients (a publisher that hands out futures, a subscriber, a DICOMweb client)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from google.api_core import exceptions as api_exceptions

from tests.unit.fakes import (
    COMPLETION_TOPIC,
    DICOMWEB_SERIES_PATH,
    REQUEST_TOPIC,
    SERIES,
    SERIES_PATH,
    STORE,
    STUDY,
    FakePublisher,
    no_storage,
)
from worker import cli
from worker.cli import (
    EXIT_FAILED,
    EXIT_HANDED_ON,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Clients,
    CopyProgress,
    ProgressLine,
    human_size,
    main,
    parse_target,
    short_uid,
    table_row,
)
from worker.delivery import Worker
from worker.dicomweb import DicomWebClient
from worker.errors import Code, PermanentError, RetryableError, SourceGone
from worker.job import HandedOn, Job, Outcome
from worker.models import DicomStore, SeriesRef
from worker.ports import Ports
from worker.request import Action
from worker.settings import Settings

ENV = {"REQUEST_TOPIC": REQUEST_TOPIC, "CONTINUATION_KEYS": "cli-1=" + "k" * 32}
DICOMWEB_ENV = {**ENV, "DICOMWEB_URL": "https://pacs.example.org/dicom-web", "DICOMWEB_AUTH": "none"}
SUBSCRIPTION = "projects/my-project/subscriptions/series-done-pull"
STORE_REF = DicomStore.parse(STORE)
STUDY_PATH = f"{STORE}/dicomWeb/studies/{STUDY}"


# --------------------------------------------------------------------------------------------------
# fakes
# --------------------------------------------------------------------------------------------------


@dataclass
class FakePublisherClient:
    """google.cloud.pubsub_v1.PublisherClient as far as the CLI uses it: publish() hands out futures."""

    fail_for: Callable[[dict[str, Any]], BaseException | None] = lambda body: None
    refuse: bool = False
    published: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    stopped: bool = False

    def publish(self, topic: str, data: bytes, **attributes: str) -> Future[str]:
        if self.refuse:
            raise ValueError("the client is stopped")
        body = json.loads(data)
        self.published.append((topic, body, attributes))
        future: Future[str] = Future()
        error = self.fail_for(body)
        if error is None:
            future.set_result(str(len(self.published)))
        else:
            future.set_exception(error)
        return future

    def stop(self) -> None:
        self.stopped = True


class FakeDicomWeb(DicomWebClient):
    """The real `root` check (no request is sent); search_series answers from a list, or raises."""

    def __init__(self, settings: Settings, found: list[SeriesRef] | BaseException) -> None:
        super().__init__(settings, requests.Session())
        self.found = found
        self.searches: list[tuple[DicomStore | None, str | None, dict[str, str], int]] = []

    def search_series(
        self, store: DicomStore | None, study_uid: str | None, filters: Any, page_size: int
    ) -> list[SeriesRef]:
        self.searches.append((store, study_uid, dict(filters), page_size))
        if isinstance(self.found, BaseException):
            raise self.found
        return self.found


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


def no_clients() -> Clients:
    """Clients that fail the test if a command makes one (bad arguments must stop before any)."""

    def never(*_: Any) -> Any:
        raise AssertionError("a client was made")

    return Clients(publisher=never, subscriber=never, dicomweb=never, worker=never)


def run_cli(
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    env: dict[str, str] | None = None,
    clients: Clients | None = None,
) -> tuple[int, str, str]:
    code = main(list(argv), env=ENV if env is None else env, clients=clients or no_clients())
    out, err = capsys.readouterr()
    return code, out, err


def usage_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------------------------------
# parsing and bad arguments: exit 2, one line, no client made
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["submit"], ["fan-out"], ["run"], ["events"]])
def test_help_exits_0(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, _ = run_cli(capsys, *command, "--help")
    assert code == EXIT_OK
    assert out.startswith(f"usage: python -m worker {' '.join(command)}".rstrip())


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        ([], "python -m worker: error: the following arguments are required: COMMAND"),
        (["copy"], "python -m worker: error: argument COMMAND: invalid choice: 'copy'"),
        (["submit"], "python -m worker submit: error: the following arguments are required: ACTION, SERIES"),
        (
            ["submit", "copy", SERIES_PATH],
            "python -m worker submit: error: argument ACTION: invalid choice: 'copy'"
            " (choose from 'search', 'retrieve', 'delete', 'archive')",
        ),
        (
            ["submit", "retrieve", SERIES_PATH, "--option", "mode"],
            "python -m worker submit: error: argument --option: expected key=value, got 'mode'",
        ),
        (
            ["submit", "search", SERIES_PATH, "--bogus"],
            "python -m worker: error: unrecognized arguments: --bogus",
        ),
        (
            ["fan-out", "search", STORE, "--page-size", "0"],
            "python -m worker fan-out: error: argument --page-size: expected a positive integer, got '0'",
        ),
        (
            ["fan-out", "search", STORE, "--modality", "C-T"],
            "python -m worker fan-out: error: argument --modality: 'C-T' is not a modality code",
        ),
        (
            ["fan-out", "search", STORE, "--study-date", "2024"],
            "python -m worker fan-out: error: argument --study-date: '2024' is not a date YYYYMMDD",
        ),
        (
            ["fan-out", "search", STORE, "--study-date", "20240230"],
            "python -m worker fan-out: error: argument --study-date: '20240230' is not a date YYYYMMDD",
        ),
        (
            ["fan-out", "search", STORE, "--study-date", "20241231-20240101"],
            "python -m worker fan-out: error: argument --study-date:"
            " the range '20241231-20240101' ends before it starts",
        ),
        (
            ["fan-out", "search", STORE, "--study-date", "-"],
            "python -m worker fan-out: error: argument --study-date: '-' is not a date YYYYMMDD or a range",
        ),
        (
            ["fan-out", "search", STORE, "--request-id", "x"],
            "python -m worker: error: unrecognized arguments: --request-id x",
        ),
        (
            ["run", "search", SERIES_PATH, "--deadline", "soon"],
            "python -m worker run: error: argument --deadline: expected a positive integer, got 'soon'",
        ),
        (["events"], "python -m worker events: error: the following arguments are required: --subscription"),
        (
            ["events", "--subscription", SUBSCRIPTION, "--wait", "0"],
            "python -m worker events: error: argument --wait: expected a positive number of seconds, got '0'",
        ),
        (
            ["events", "--subscription", SUBSCRIPTION, "--format", "xml"],
            "python -m worker events: error: argument --format: invalid choice: 'xml'",
        ),
        (
            ["events", "--subscription", SUBSCRIPTION, "--max", "-1"],
            "python -m worker events: error: argument --max: expected a positive integer, got '-1'",
        ),
    ],
)
def test_argparse_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], line: str) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == EXIT_USAGE
    assert out == ""
    assert usage_line(err).startswith(line)
    assert usage_line(err).endswith("--help)")


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["submit", "search", "studies/1.2/series/x"], "SeriesInstanceUID is not a DICOM UID"),
        (["submit", "search", f"{SERIES_PATH}/instances/1.2"], "a series path must end with"),
        (
            ["submit", "search", "projects/p/series/1"],
            "a series path must contain .../dicomStores/{s}/dicomWeb",
        ),
        (["submit", "retrieve", SERIES_PATH, "--destination", "s3://b/x"], "destination must be a gs://"),
        (
            ["submit", "retrieve", SERIES_PATH, "--destination", "gs://b/../x"],
            "destination bucket is not a valid Cloud Storage bucket name",
        ),
        (
            ["submit", "retrieve", SERIES_PATH, "--destination", "gs://bucket/a/../x"],
            "destination prefix components may hold",
        ),
        (
            ["submit", "search", SERIES_PATH, "--option", "mode=series"],
            "unknown options for search: 1; accepted: none",
        ),
        (
            ["submit", "retrieve", SERIES_PATH, "--option", "includeMetadata=maybe"],
            "options.includeMetadata must be true or false",
        ),
        (["submit", "retrieve", SERIES_PATH, "--option", "mode=fast"], "options.mode must be 'instances' or"),
        (["submit", "search", SERIES_PATH, "--request-id", "a b"], "requestId must be 1 to 128 characters"),
        (["run", "archive", SERIES_PATH, "--option", "transferSyntax=1.2"], "unknown options for archive"),
        (
            ["fan-out", "retrieve", STORE, "--option", "colour=red"],
            "unknown options for retrieve: 1; accepted: includeMetadata, mode, transferSyntax",
        ),
        (["fan-out", "retrieve", STORE, "--destination", "bucket"], "destination must be a gs://"),
        (["fan-out", "search", "projects/p"], "a DICOM store is projects/{p}/locations/{l}/datasets/{d}"),
        (["fan-out", "search", "studies/abc"], "StudyInstanceUID is not a DICOM UID"),
        (
            ["events", "--subscription", "series-done"],
            "--subscription must be projects/{project}/subscriptions/",
        ),
    ],
)
def test_bad_requests_are_refused_with_the_parsers_reason(
    capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == EXIT_USAGE
    assert out == ""
    line = usage_line(err)
    assert line.startswith(f"python -m worker {argv[0]}: error: {reason}")
    assert not line.endswith("--help)")


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({}, "REQUEST_TOPIC is not set (set it, or give --request-topic projects/P/topics/T)"),
        (
            {"REQUEST_TOPIC": "requests"},
            "REQUEST_TOPIC must be a full topic path, projects/{project}/topics/",
        ),
        ({**ENV, "DICOMWEB_AUTH": "kerberos"}, "DICOMWEB_AUTH must be one of google, none, basic, bearer"),
        ({**ENV, "DICOMWEB_AUTH": "basic"}, "DICOMWEB_USERNAME is required with DICOMWEB_AUTH=basic"),
    ],
)
def test_missing_or_bad_settings_exit_2(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], line: str
) -> None:
    code, _, err = run_cli(capsys, "submit", "search", SERIES_PATH, env=env)
    assert code == EXIT_USAGE
    assert usage_line(err).startswith(f"python -m worker submit: error: {line}")


def test_a_flag_overrides_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "submit", "search", SERIES_PATH, "--request-topic", "bad", env=ENV)
    assert code == EXIT_USAGE
    assert "REQUEST_TOPIC must be a full topic path" in err


@pytest.mark.parametrize(
    ("target", "dicomweb", "expected"),
    [
        (STORE, False, (STORE_REF, None)),
        (f"{STORE}/", False, (STORE_REF, None)),
        (STUDY_PATH, False, (STORE_REF, STUDY)),
        (f"/{STUDY_PATH}/", False, (STORE_REF, STUDY)),
        (f"studies/{STUDY}", True, (None, STUDY)),
        ("-", True, (None, None)),
        ("all", True, (None, None)),
        (f"{STORE}WebStore", False, (DicomStore.parse(f"{STORE}WebStore"), None)),
    ],
)
def test_fan_out_targets(target: str, dicomweb: bool, expected: tuple[DicomStore | None, str | None]) -> None:
    settings = Settings.from_env(DICOMWEB_ENV if dicomweb else ENV)
    assert parse_target(target, settings) == expected


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("-", "'-' (every series of the server) needs DICOMWEB_URL"),
        (f"{STORE}/dicomWeb", "a study is projects/.../dicomStores/{s}/dicomWeb/studies/{study}"),
        (f"{STUDY_PATH}/series/{SERIES}", "a study is projects/.../dicomStores/{s}/dicomWeb/studies/{study}"),
        (f"{STORE}/dicomWeb/studies/x", "StudyInstanceUID is not a DICOM UID"),
        ("projects/UPPER/locations/l/datasets/d/dicomStores/s", "projectsId has characters outside"),
        ("series/1.2", "the target is a study (projects/.../dicomStores/{s}/dicomWeb/studies/{study}"),
        ("", "the target is a study"),
        (f"{STORE}x/dicomWebStudies/1.2", "a study is projects/.../dicomStores/{s}/dicomWeb/studies/{study}"),
    ],
)
def test_bad_fan_out_targets(target: str, reason: str) -> None:
    with pytest.raises(cli.UsageError) as raised:
        parse_target(target, Settings.from_env(ENV))
    assert raised.value.message.startswith(reason)


def test_missing_google_credentials_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials() -> Any:
        raise DefaultCredentialsError("Your default credentials were not found.\nSee the docs.")

    clients = Clients(publisher=no_credentials)
    code, _, err = run_cli(capsys, "submit", "search", SERIES_PATH, clients=clients)
    assert code == EXIT_USAGE
    assert usage_line(err) == (
        "python -m worker submit: error: no Google credentials: Your default credentials were not found."
    )


# --------------------------------------------------------------------------------------------------
# submit
# --------------------------------------------------------------------------------------------------


def test_submit_publishes_the_checked_request_and_prints_the_message_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = FakePublisherClient()
    argv = ["submit", "retrieve", SERIES_PATH, "--destination", "gs://bucket/copies/"]
    argv += ["--option", "mode=series", "--option", "includeMetadata=TRUE"]
    code, out, err = run_cli(capsys, *argv, clients=Clients(publisher=lambda: client))

    assert (code, out, err) == (EXIT_OK, "1\n", "")
    [(topic, body, attributes)] = client.published
    assert topic == REQUEST_TOPIC
    assert attributes == {"action": "retrieve"}
    assert body == {  # SeriesRequest.as_json(), without a requestId: the worker takes the message id
        "action": "retrieve",
        "series": SERIES_PATH,
        "continuation": 0,
        "destination": "gs://bucket/copies",
        "options": {"transferSyntax": "*", "includeMetadata": True, "mode": "series"},
    }
    assert client.stopped


def test_submit_keeps_an_explicit_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    client = FakePublisherClient()
    argv = [
        "submit",
        "search",
        DICOMWEB_SERIES_PATH,
        "--request-id",
        "batch-7:1",
        "--request-topic",
        "projects/o/topics/other",
    ]
    code, _, _ = run_cli(capsys, *argv, env={}, clients=Clients(publisher=lambda: client))
    assert code == EXIT_OK
    [(topic, body, _)] = client.published
    assert topic == "projects/o/topics/other"
    assert body["requestId"] == "batch-7:1"
    assert body["series"] == DICOMWEB_SERIES_PATH


def test_submit_reports_a_failed_publish(capsys: pytest.CaptureFixture[str]) -> None:
    client = FakePublisherClient(fail_for=lambda body: api_exceptions.NotFound("topic not found"))
    code, out, err = run_cli(
        capsys, "submit", "search", SERIES_PATH, clients=Clients(publisher=lambda: client)
    )
    assert code == EXIT_FAILED
    assert out == ""
    assert usage_line(err) == f"publishing to {REQUEST_TOPIC} failed: NotFound"
    assert client.stopped


# --------------------------------------------------------------------------------------------------
# fan-out
# --------------------------------------------------------------------------------------------------


def refs(count: int, store: DicomStore | None = STORE_REF) -> list[SeriesRef]:
    return [SeriesRef(store, f"{STUDY}.{i % 3}", f"{SERIES}.{i}") for i in range(count)]


def fan_out_clients(
    found: list[SeriesRef] | BaseException, publisher: FakePublisherClient | None = None
) -> tuple[Clients, list[FakeDicomWeb]]:
    made: list[FakeDicomWeb] = []

    def dicomweb(settings: Settings) -> DicomWebClient:
        made.append(FakeDicomWeb(settings, found))
        return made[-1]

    def no_publisher() -> Any:
        raise AssertionError("a dry run made a publisher")

    publisher_factory: Callable[[], Any] = (lambda: publisher) if publisher is not None else no_publisher
    return Clients(dicomweb=dicomweb, publisher=publisher_factory), made


def test_fan_out_publishes_one_request_per_series(capsys: pytest.CaptureFixture[str]) -> None:
    found = refs(7)
    client = FakePublisherClient()
    clients, made = fan_out_clients(found, client)
    argv = ["fan-out", "archive", STORE, "--modality", "ct", "--study-date", "20240101-20241231"]
    argv += ["--page-size", "3", "--destination", "gs://bucket/archive", "--option", "mode=series"]

    code, out, err = run_cli(capsys, *argv, clients=clients)

    assert code == EXIT_OK, err
    assert out == "series found: 7; requests published: 7; failures: 0\n"
    assert err.strip().splitlines()[-1] == "published 7/7"
    assert made[0].searches == [(STORE_REF, None, {"Modality": "CT", "StudyDate": "20240101-20241231"}, 3)]
    assert [body["series"] for _, body, _ in client.published] == [ref.source for ref in found]
    for topic, body, attributes in client.published:
        assert topic == REQUEST_TOPIC
        assert attributes == {"action": "archive"}
        assert body["destination"] == "gs://bucket/archive"
        assert body["options"] == {"mode": "series"}
        assert "requestId" not in body
    assert client.stopped


def test_fan_out_of_a_study_searches_that_study(capsys: pytest.CaptureFixture[str]) -> None:
    clients, made = fan_out_clients(refs(2), FakePublisherClient())
    code, _, err = run_cli(capsys, "fan-out", "search", STUDY_PATH, clients=clients)
    assert code == EXIT_OK, err
    assert made[0].searches == [(STORE_REF, STUDY, {}, Settings().search_page_size)]


def test_fan_out_counts_failed_publishes_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    found = refs(5)
    failing = found[2].source
    client = FakePublisherClient(
        fail_for=lambda body: (
            api_exceptions.ServiceUnavailable("down\nmore") if body["series"] == failing else None
        )
    )
    clients, _ = fan_out_clients(found, client)

    code, out, err = run_cli(capsys, "fan-out", "search", STORE, clients=clients)

    assert code == EXIT_FAILED
    assert out == "series found: 5; requests published: 4; failures: 1\n"
    assert f"not published: {failing}: ServiceUnavailable: 503 down" in err.splitlines()
    assert "published 4/5, 1 failed" in err


def test_fan_out_counts_a_refused_publish(capsys: pytest.CaptureFixture[str]) -> None:
    clients, _ = fan_out_clients(refs(2), FakePublisherClient(refuse=True))
    code, out, err = run_cli(capsys, "fan-out", "search", STORE, clients=clients)
    assert code == EXIT_FAILED
    assert out == "series found: 2; requests published: 0; failures: 2\n"
    assert err.count("ValueError: the client is stopped") == 2


def test_fan_out_dry_run_lists_and_publishes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    found = refs(3, store=None)
    clients, _ = fan_out_clients(found)
    code, out, err = run_cli(capsys, "fan-out", "delete", "-", "--dry-run", env=DICOMWEB_ENV, clients=clients)
    assert code == EXIT_OK
    assert out.splitlines() == [f"studies/{ref.study_uid}/series/{ref.series_uid}" for ref in found]
    assert usage_line(err) == "series found: 3; dry run: nothing published"


def test_fan_out_dry_run_needs_no_request_topic(capsys: pytest.CaptureFixture[str]) -> None:
    clients, _ = fan_out_clients([])
    code, out, err = run_cli(capsys, "fan-out", "search", STORE, "--dry-run", env={}, clients=clients)
    assert (code, out) == (EXIT_OK, "")
    assert usage_line(err) == "series found: 0; dry run: nothing published"


def test_fan_out_of_nothing_publishes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    clients, _ = fan_out_clients([])
    code, out, _ = run_cli(capsys, "fan-out", "search", STORE, clients=clients)
    assert (code, out) == (EXIT_OK, "series found: 0; requests published: 0; failures: 0\n")


@pytest.mark.parametrize(
    ("env", "target", "reason"),
    [
        (DICOMWEB_ENV, STORE, "this worker serves DICOMWEB_URL; give the series as studies/{study}/series/"),
        (ENV, f"studies/{STUDY}", "the series must name its DICOM store"),
    ],
)
def test_fan_out_target_must_fit_the_configured_server(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], target: str, reason: str
) -> None:
    clients, made = fan_out_clients(refs(1))
    code, _, err = run_cli(capsys, "fan-out", "search", target, env=env, clients=clients)
    assert code == EXIT_USAGE
    assert usage_line(err).startswith(f"python -m worker fan-out: error: {reason}")
    assert made[0].searches == []


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (SourceGone(), f"the series search failed: {STORE} is not found (404)"),
        (
            RetryableError("GET answered 503 after retries"),
            "the series search failed: GET answered 503 after",
        ),
        (PermanentError(Code.SEARCH_INCOMPLETE, "it ignores offset"), "the series search failed: it ignores"),
    ],
)
def test_fan_out_search_failures_exit_1(
    capsys: pytest.CaptureFixture[str], error: Exception, line: str
) -> None:
    clients, _ = fan_out_clients(error)
    code, out, err = run_cli(capsys, "fan-out", "search", STORE, clients=clients)
    assert (code, out) == (EXIT_FAILED, "")
    assert usage_line(err).startswith(line)


# --------------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------------


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
        dicomweb = DicomWebClient(settings, requests.Session())
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


# --------------------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------------------


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
    assert {pull["timeout"] for pull in subscriber.pulls} == {cli.FOLLOW_PULL_SECONDS}
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


# --------------------------------------------------------------------------------------------------
# small pieces
# --------------------------------------------------------------------------------------------------


def test_short_uid_keeps_the_tail() -> None:
    assert short_uid("1.2.840.113619.2.55.3.604688119") == "...3.604688119"
    assert short_uid("1.2.3") == "1.2.3"
    assert short_uid(None) == "-"
    assert len(short_uid("1." * 30 + "9")) == 14


def test_table_row_of_a_message_without_anything() -> None:
    assert table_row(b"", {}).split() == ["-", "-", "-", "-", "-"]


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**3, "5.0 GiB"), (2 * 1024**5, "2048.0 TiB")],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_off_a_terminal_writes_lines_at_most_every_interval() -> None:
    stream, clock = io.StringIO(), Clock()
    line = ProgressLine(stream, interval=2.0, clock=clock)
    for step in range(1, 6):
        clock.now = step * 0.9
        line.update(f"step {step}")
    line.close()
    line.close()
    assert stream.getvalue().splitlines() == ["step 1", "step 4", "step 5"]


def test_progress_line_on_a_terminal_redraws_in_place() -> None:
    stream, clock = FakeTty(), Clock()
    line = ProgressLine(stream, clock=clock)
    line.update("published 10/100")
    clock.now = 0.05
    line.update("published 20/100")  # too soon: not drawn
    clock.now = 1.0
    line.update("published 9/9")
    line.close()
    assert stream.getvalue() == "\rpublished 10/100\rpublished 9/9   \n"


def test_progress_line_never_updated_writes_nothing() -> None:
    stream = io.StringIO()
    ProgressLine(stream).close()
    assert stream.getvalue() == ""


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


def test_message_data_is_the_request_contract() -> None:
    request = cli._request("retrieve", SERIES_PATH, destination=None, request_id="r-1", options=[])
    assert json.loads(cli.message_data(request, keep_request_id=True)) == request.as_json()
    assert "requestId" not in json.loads(cli.message_data(request, keep_request_id=False))


def test_importing_the_cli_makes_no_client_and_imports_no_google_library() -> None:
    heavy = ("google.cloud.pubsub_v1", "google.cloud.storage", "google.auth", "google.api_core", "requests")
    code = f"import sys, worker.cli; print([n for n in {heavy!r} if n in sys.modules])"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
