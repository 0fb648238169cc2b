"""`submit` (worker/cli/submit.py) against a fake publisher client."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as api_exceptions

from tests.unit.cli_fakes import FakePublisherClient, run_cli, usage_line
from tests.unit.fakes import DICOMWEB_SERIES_PATH, REQUEST_TOPIC, SERIES_PATH
from worker.cli import EXIT_FAILED, EXIT_OK, Clients


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
