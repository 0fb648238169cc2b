"""The operator CLI (`python -m worker ...`) as a subprocess, against the real local stack and function."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from infra.local.dicom_factory import Series, make_series, stow
from infra.local.stack import REPO_ROOT, Deployment, HealthcareEmulator, Stack, base_env, loopback_session
from worker.cli.table import short_uid

pytestmark = pytest.mark.integration

INSTANCES_PER_SERIES = 2
PIXEL_BYTES = 256


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def cli_env(stack: Stack, deployment: Deployment | None = None, **extra: str) -> dict[str, str]:
    """What an operator's shell would hold: the stack's client variables and the deployment's topics."""
    env = base_env(stack.client_env())
    env.update(
        {
            "HEALTHCARE_API_URL": stack.healthcare_url,
            "DICOMWEB_AUTH": "none",
            "GOOGLE_CLOUD_PROJECT": "local-project",
            # google-auth must never reach for the metadata server from here.
            "NO_GCE_CHECK": "true",
            "GCE_METADATA_HOST": "127.0.0.1:9",
            "GCE_METADATA_IP": "127.0.0.1:9",
        }
    )
    if deployment is not None:
        env["REQUEST_TOPIC"] = deployment.request_topic
        env["COMPLETION_TOPIC"] = deployment.completion_topic
        env["CONTINUATION_KEYS"] = deployment.env["CONTINUATION_KEYS"]
    env.update(extra)
    return env


def cli(env: Mapping[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def seed(healthcare: HealthcareEmulator, store: str, studies: int, series_per_study: int) -> list[Series]:
    """`studies` studies of `series_per_study` series of two small instances each, stored with STOW-RS."""
    seeded: list[Series] = []
    instances: list[bytes] = []
    for _ in range(studies):
        study_uid: str | None = None
        for _ in range(series_per_study):
            series, data = make_series(INSTANCES_PER_SERIES, pixel_bytes=PIXEL_BYTES, study_uid=study_uid)
            study_uid = series.study_uid
            seeded.append(series)
            instances.extend(data)
    stow(healthcare.dicomweb_url(store), instances)
    return seeded


def series_path(store: str, series: Series) -> str:
    return f"{store}/dicomWeb/studies/{series.study_uid}/series/{series.series_uid}"


def stored_series(healthcare: HealthcareEmulator, store: str) -> list[str]:
    """The series UIDs a QIDO search of the whole store finds now."""
    with loopback_session() as session:
        response = session.get(
            f"{healthcare.dicomweb_url(store)}/series",
            headers={"Accept": "application/dicom+json"},
            timeout=10,
        )
    response.raise_for_status()
    if response.status_code == 204:
        return []
    return [item["0020000E"]["Value"][0] for item in response.json()]


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# --------------------------------------------------------------------------------------------------
# fan-out
# --------------------------------------------------------------------------------------------------


def test_fan_out_archive_of_a_store_completes_every_series(
    stack: Stack,
    healthcare: HealthcareEmulator,
    dicom_store: str,
    bucket: str,
    deploy: Callable[..., Deployment],
) -> None:
    seeded = seed(healthcare, dicom_store, studies=3, series_per_study=4)
    deployment = deploy({"DELETE_ENABLED": "true", "DEFAULT_DESTINATION": f"gs://{bucket}/archive"})

    result = cli(cli_env(stack, deployment), "fan-out", "archive", dicom_store, "--page-size", "5")

    assert result.returncode == 0, result.stderr
    assert one_line(result.stdout) == "series found: 12; requests published: 12; failures: 0"
    assert "published 12/12" in result.stderr
    events = deployment.pull_events(12, timeout=60)
    assert [e.data["status"] for e in events] == ["succeeded"] * 12, [e.data for e in events]
    assert {e.data["action"] for e in events} == {"archive"}
    assert {e.data["series"] for e in events} == {series_path(dicom_store, s) for s in seeded}
    assert len({e.data["requestId"] for e in events}) == 12
    assert {e.data["requestId"] for e in events} == {
        e.data["requestId"] for e in events if e.data["requestId"]
    }
    assert all(e.data["instanceCount"] == INSTANCES_PER_SERIES for e in events)
    assert stored_series(healthcare, dicom_store) == []
    names = [blob.name for blob in stack.storage_client().list_blobs(bucket, prefix="archive/")]
    assert len([name for name in names if name.endswith(".dcm")]) == 12 * INSTANCES_PER_SERIES
    assert deployment.no_more_events(0.3) == []

    # The way back, over the archive: one verify request per series folder, for the store they came from.
    archive = f"gs://{bucket}/archive"
    listed = cli(
        cli_env(stack, deployment), "fan-out", "restore", archive, "--store", dicom_store, "--dry-run"
    )
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == {series_path(dicom_store, s) for s in seeded}
    result = cli(cli_env(stack, deployment), "fan-out", "verify", archive, "--store", dicom_store)
    assert result.returncode == 0, result.stderr
    assert one_line(result.stdout) == "series found: 12; requests published: 12; failures: 0"
    verified = deployment.pull_events(12, timeout=60)
    assert {e.data["action"] for e in verified} == {"verify"}
    assert [e.data.get("verified") for e in verified] == [True] * 12, [e.data for e in verified]


def test_fan_out_dry_run_lists_the_series_and_publishes_nothing(
    stack: Stack, healthcare: HealthcareEmulator, dicom_store: str, deploy: Callable[..., Deployment]
) -> None:
    seeded = seed(healthcare, dicom_store, studies=2, series_per_study=2)
    deployment = deploy()
    tap = deployment.tap_requests()

    result = cli(cli_env(stack, deployment), "fan-out", "retrieve", dicom_store, "--dry-run")

    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == sorted(series_path(dicom_store, s) for s in seeded)
    assert "series found: 4; dry run: nothing published" in result.stderr
    assert tap.drain(0.5) == []
    assert stored_series(healthcare, dicom_store) != []


def test_fan_out_filters_by_modality_and_study_date(
    stack: Stack, healthcare: HealthcareEmulator, dicom_store: str
) -> None:
    """The factory's instances are OT from 20240102: the filters reach the QIDO search."""
    seed(healthcare, dicom_store, studies=1, series_per_study=2)
    env = cli_env(stack)

    def found(*filters: str) -> int:
        result = cli(env, "fan-out", "search", dicom_store, "--dry-run", *filters)
        assert result.returncode == 0, result.stderr
        return len(result.stdout.split())

    assert found("--modality", "ot", "--study-date", "20240101-20240131") == 2
    assert found("--modality", "CT") == 0
    assert found("--study-date", "20250101-") == 0


def test_fan_out_of_one_study_publishes_only_its_series(
    stack: Stack, healthcare: HealthcareEmulator, dicom_store: str, deploy: Callable[..., Deployment]
) -> None:
    seeded = seed(healthcare, dicom_store, studies=2, series_per_study=2)
    study = seeded[0].study_uid
    wanted = {series_path(dicom_store, s) for s in seeded if s.study_uid == study}
    deployment = deploy()
    tap = deployment.tap_requests()

    result = cli(cli_env(stack, deployment), "fan-out", "search", f"{dicom_store}/dicomWeb/studies/{study}")

    assert result.returncode == 0, result.stderr
    assert one_line(result.stdout) == "series found: 2; requests published: 2; failures: 0"
    requests_seen = tap.pull(2, timeout=10) + tap.drain(0.3)
    assert {e.data["series"] for e in requests_seen} == wanted
    assert {e.attributes["action"] for e in requests_seen} == {"search"}
    events = deployment.pull_events(2, timeout=30)
    assert {e.data["series"] for e in events} == wanted
    assert {e.data["status"] for e in events} == {"succeeded"}
    assert {e.data["requestId"] for e in events} == {e.message_id for e in requests_seen}


def test_fan_out_of_a_missing_store_fails(stack: Stack, healthcare: HealthcareEmulator) -> None:
    missing = "projects/local-project/locations/local/datasets/tests/dicomStores/no-such-store"
    result = cli(cli_env(stack), "fan-out", "search", missing, "--dry-run")
    assert result.returncode == 1
    assert one_line(result.stderr) == f"the series search failed: {missing} is not found (404)"


# --------------------------------------------------------------------------------------------------
# run, submit, events
# --------------------------------------------------------------------------------------------------


def test_run_retrieve_copies_the_series_and_shows_progress(
    stack: Stack, healthcare: HealthcareEmulator, dicom_store: str, bucket: str
) -> None:
    [series] = seed(healthcare, dicom_store, studies=1, series_per_study=1)
    env = cli_env(stack, DEFAULT_DESTINATION=f"gs://{bucket}/copies")

    result = cli(env, "run", "retrieve", series_path(dicom_store, series))

    assert result.returncode == 0, result.stderr
    event = json.loads(one_line(result.stdout))
    assert event["status"] == "succeeded"
    assert event["action"] == "retrieve"
    assert event["instanceCount"] == INSTANCES_PER_SERIES
    assert event["requestId"].startswith("cli-")
    assert f"copied {INSTANCES_PER_SERIES} instances," in result.stderr
    names = {blob.name for blob in stack.storage_client().list_blobs(bucket, prefix="copies/")}
    expected = {f"copies/{series.study_uid}/{series.series_uid}/{sop}.dcm" for sop in series.sop_uids}
    assert expected <= names


def test_run_reports_a_failed_request_with_exit_status_1(
    stack: Stack, healthcare: HealthcareEmulator, dicom_store: str, bucket: str
) -> None:
    [series] = seed(healthcare, dicom_store, studies=1, series_per_study=1)
    env = cli_env(stack, DEFAULT_DESTINATION=f"gs://{bucket}/copies")

    result = cli(env, "run", "delete", series_path(dicom_store, series))

    assert result.returncode == 1
    event = json.loads(one_line(result.stdout))
    assert event["status"] == "failed"
    assert event["error"]["code"] == "delete_disabled"
    assert stored_series(healthcare, dicom_store) == [series.series_uid]


def test_submit_search_makes_one_event_which_events_prints(
    stack: Stack, healthcare: HealthcareEmulator, dicom_store: str, deploy: Callable[..., Deployment]
) -> None:
    [series] = seed(healthcare, dicom_store, studies=1, series_per_study=1)
    deployment = deploy()
    env = cli_env(stack, deployment)

    result = cli(env, "submit", "search", series_path(dicom_store, series))

    assert result.returncode == 0, result.stderr
    message_id = one_line(result.stdout)
    shown = cli(
        env,
        "events",
        "--subscription",
        deployment.completion_subscription,
        "--format",
        "json",
        "--max",
        "1",
        "--wait",
        "20",
    )
    assert shown.returncode == 0, shown.stderr
    event = json.loads(one_line(shown.stdout))
    assert event["requestId"] == message_id  # no --request-id: the worker took the message id
    assert event["status"] == "succeeded"
    assert event["action"] == "search"
    assert event["instanceCount"] == INSTANCES_PER_SERIES
    assert deployment.no_more_events(0.3) == []  # `events` acked it


def test_report_pulls_the_completion_events_and_summarises_them(
    stack: Stack,
    healthcare: HealthcareEmulator,
    dicom_store: str,
    deploy: Callable[..., Deployment],
    tmp_path: Path,
) -> None:
    [series] = seed(healthcare, dicom_store, studies=1, series_per_study=1)
    deployment = deploy()
    env = cli_env(stack, deployment)
    missing = f"{dicom_store}/dicomWeb/studies/{series.study_uid}/series/1.2.826.0.1.3680043.9.7433.9"
    for action, path in (
        ("search", series_path(dicom_store, series)),
        ("search", missing),
        ("delete", series_path(dicom_store, series)),  # the deployment does not delete: delete_disabled
    ):
        submitted = cli(env, "submit", action, path)
        assert submitted.returncode == 0, submitted.stderr
    chart = tmp_path / "report.png"

    shown = cli(
        env,
        "report",
        "--subscription",
        deployment.completion_subscription,
        "--format",
        "json",
        "--max",
        "3",
        "--wait",
        "20",
        "--chart",
        str(chart),
    )

    assert shown.returncode == 0, shown.stderr
    summary = json.loads(one_line(shown.stdout))
    assert (summary["events"], summary["duplicates"], summary["unreadable"]) == (3, 0, 0)
    groups = {(g["action"], g["status"]): (g["events"], g["instances"]) for g in summary["byActionStatus"]}
    assert groups == {("search", "succeeded"): (2, INSTANCES_PER_SERIES), ("delete", "failed"): (1, 0)}
    assert summary["failuresByCode"] == [{"code": "delete_disabled", "events": 1}]
    largest = [(s["seriesInstanceUID"], s["instances"]) for s in summary["largestSeries"]]
    assert largest == [(series.series_uid, INSTANCES_PER_SERIES), ("1.2.826.0.1.3680043.9.7433.9", 0)]
    assert chart.read_bytes()[:4] == b"\x89PNG"
    assert deployment.no_more_events(0.3) == []  # `report` acked what it read


def test_run_publishes_its_event_and_events_prints_it_as_a_table(
    stack: Stack, healthcare: HealthcareEmulator, dicom_store: str, deploy: Callable[..., Deployment]
) -> None:
    [series] = seed(healthcare, dicom_store, studies=1, series_per_study=1)
    deployment = deploy()
    env = cli_env(stack, deployment)
    ran = cli(env, "run", "search", series_path(dicom_store, series), "--request-id", "table-test-1")
    assert ran.returncode == 0, ran.stderr  # with COMPLETION_TOPIC set, `run` publishes its event too

    shown = cli(env, "events", "--subscription", deployment.completion_subscription, "--wait", "1")

    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.strip().splitlines()
    assert header.split() == ["REQUEST", "ID", "ACTION", "STATUS", "STUDY/SERIES", "INSTANCES", "ERROR"]
    uids = f"{short_uid(series.study_uid)}/{short_uid(series.series_uid)}"
    assert row.split() == ["table-test-1", "search", "succeeded", uids, str(INSTANCES_PER_SERIES)]
    assert uids.startswith("...")
    assert one_line(shown.stderr) == "events: 1"
    assert deployment.no_more_events(0.3) == []


def test_submit_refuses_a_bad_request_without_publishing(
    stack: Stack, deploy: Callable[..., Deployment]
) -> None:
    deployment = deploy()
    tap = deployment.tap_requests()
    env = cli_env(stack, deployment)

    result = cli(env, "submit", "retrieve", "studies/1.2/series/1.2.3", "--destination", "gs://UPPER/x")

    assert result.returncode == 2
    assert one_line(result.stderr) == (
        "python -m worker submit: error: destination bucket is not a valid Cloud Storage bucket name"
    )
    assert result.stdout == ""
    assert tap.drain(0.3) == []


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["submit", "copy", "studies/1/series/2"], "argument ACTION: invalid choice: 'copy'"),
        (["submit", "search", "studies/1/series/x"], "SeriesInstanceUID is not a DICOM UID"),
        (["fan-out", "search", "projects/p"], "a DICOM store is projects/"),
        (["run", "retrieve", "studies/1/series/2"], "the series must name its DICOM store"),
        (["events", "--subscription", "subs"], "--subscription must be projects/"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(stack: Stack, args: list[str], reason: str) -> None:
    env = cli_env(
        stack, REQUEST_TOPIC="projects/local-project/topics/unused", CONTINUATION_KEYS="cli=" + "k" * 32
    )
    result = cli(env, *args)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith(f"python -m worker {args[0]}: error: ")
    assert reason in line


def test_a_bad_setting_names_its_variable(stack: Stack) -> None:
    result = cli(
        cli_env(stack, REQUEST_TOPIC="topic-without-project"), "submit", "search", "studies/1/series/2"
    )
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        "python -m worker submit: error:"
        " REQUEST_TOPIC must be a full topic path, projects/{project}/topics/{topic}"
    )


def test_submit_to_a_missing_topic_fails(stack: Stack) -> None:
    env = cli_env(stack, REQUEST_TOPIC="projects/local-project/topics/no-such-topic")
    result = cli(env, "submit", "search", "studies/1.2/series/1.2.3")
    assert result.returncode == 1
    assert "publishing to projects/local-project/topics/no-such-topic failed" in result.stderr
