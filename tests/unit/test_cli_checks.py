"""The worker's own checks (worker/cli/checks.py): requests, settings and fan-out targets the function
would refuse are usage errors with its reason; the message is the request contract."""

from __future__ import annotations

import json

import pytest

from tests.unit.cli_fakes import DICOMWEB_ENV, ENV, STORE_REF, STUDY_PATH, run_cli, usage_line
from tests.unit.fakes import SERIES, SERIES_PATH, STORE, STUDY
from worker.cli import EXIT_USAGE, UsageError
from worker.cli.checks import checked_request, message_data, parse_target
from worker.models import DicomStore
from worker.settings import Settings


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
        (
            ["submit", "retrieve", SERIES_PATH, "--option", "mode=fast"],
            "options.mode must be 'auto', 'instances' or",
        ),
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
    with pytest.raises(UsageError) as raised:
        parse_target(target, Settings.from_env(ENV))
    assert raised.value.message.startswith(reason)


def test_message_data_is_the_request_contract() -> None:
    request = checked_request("retrieve", SERIES_PATH, destination=None, request_id="r-1", options=[])
    assert json.loads(message_data(request, keep_request_id=True)) == request.as_json()
    assert "requestId" not in json.loads(message_data(request, keep_request_id=False))
