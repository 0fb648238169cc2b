"""Tests of the local stack itself (infra/local/stack/): start, loopback only, delivery, stop."""

from __future__ import annotations

import base64
import io
import json
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from google.api_core.exceptions import Forbidden, PreconditionFailed
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from infra.local.stack import (
    Deployment,
    FunctionServer,
    HealthcareEmulator,
    ManagedProcess,
    Orthanc,
    PullTimeout,
    Stack,
    StackError,
    base_env,
    group_members,
    loopback_session,
)
from tests.integration.probe_function import read_records

pytestmark = pytest.mark.integration

PROBE_SOURCE = Path(__file__).resolve().parent / "probe_function.py"
PROBE_TARGET = "record_event"


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def deploy_probe(deploy: Callable[..., Deployment], record_file: Path, **kwargs: Any) -> Deployment:
    return deploy({"PROBE_RECORD_FILE": str(record_file)}, source=PROBE_SOURCE, target=PROBE_TARGET, **kwargs)


def wait_for_records(
    path: Path, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 15
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(path)
        if predicate(records):
            return records
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s; records: {records}")
        time.sleep(0.05)


def records_for(records: list[dict[str, Any]], message_id: str) -> list[dict[str, Any]]:
    return [r for r in records if r["attributes"]["id"] == message_id]


def listening_sockets() -> list[tuple[str, int, set[int]]]:
    """(address, port, pids) of every listening TCP socket, from ``ss -ltnp``."""
    out = subprocess.run(["ss", "-H", "-ltnp"], capture_output=True, text=True, check=True).stdout
    sockets = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        address, _, port = fields[3].rpartition(":")
        sockets.append((address.strip("[]"), int(port), {int(pid) for pid in re.findall(r"pid=(\d+)", line)}))
    return sockets


def is_loopback(address: str) -> bool:
    address = address.split("%", 1)[0]
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1")


def sockets_of(processes: Iterable[ManagedProcess]) -> dict[str, list[tuple[str, int]]]:
    """Listening sockets per process name (members of each process's group)."""
    result: dict[str, list[tuple[str, int]]] = {}
    sockets = listening_sockets()
    for process in processes:
        assert process.pgid is not None
        pids = set(group_members(process.pgid))
        result[process.name] = [(addr, port) for addr, port, owners in sockets if owners & pids]
    return result


def assert_loopback_only(processes: Iterable[ManagedProcess]) -> None:
    per_process = sockets_of(processes)
    for name, sockets in per_process.items():
        assert sockets, f"{name} listens on nothing?"
        exposed = [s for s in sockets if not is_loopback(s[0])]
        assert not exposed, f"{name} listens beyond loopback: {exposed}"


def dicom_instance() -> tuple[bytes, str, str, str]:
    """A valid DICOM file (pydicom's CT_small with fresh UIDs): (bytes, study, series, sop instance UIDs)."""
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    dataset = pydicom.dcmread(path)
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    dataset.StudyInstanceUID = study
    dataset.SeriesInstanceUID = series
    dataset.SOPInstanceUID = sop
    dataset.file_meta.MediaStorageSOPInstanceUID = sop
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), study, series, sop


def stow(session: requests.Session, studies_url: str, instance: bytes) -> requests.Response:
    boundary = f"stow-{uuid.uuid4().hex}"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + instance
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    return session.post(studies_url, data=body, headers=headers, timeout=30)


def multipart_parts(response: requests.Response) -> list[bytes]:
    match = re.search(r'boundary="?([^";]+)"?', response.headers["Content-Type"])
    assert match, response.headers["Content-Type"]
    delimiter = b"--" + match.group(1).encode()
    parts = []
    for chunk in response.content.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, body = chunk.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        parts.append(body[: int(length.group(1))] if length else body.removesuffix(b"\r\n"))
    return parts


# --------------------------------------------------------------------------------------------------
# Pub/Sub push -> function, redelivery, dead letters, taps
# --------------------------------------------------------------------------------------------------


def test_push_subscription_delivers_data_and_attributes(
    deploy: Callable[..., Deployment], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACK_TEST_PARENT_SECRET", "must-not-leak")
    record_file = tmp_path / "records.jsonl"
    deployment = deploy_probe(deploy, record_file)
    tap = deployment.tap_requests()

    payload = b"\x00\x01binary \xff payload"
    attributes = {"series": "1.2.3", "unicode": "gr\u00fc\u00dfe", "probe_env": "1"}
    message_id = deployment.publish(payload, attributes)
    json_id = deployment.publish({"kind": "json", "n": 1})

    records = wait_for_records(
        record_file, lambda rs: bool(records_for(rs, message_id) and records_for(rs, json_id))
    )
    [record] = records_for(records, message_id)
    message = record["data"]["message"]
    assert base64.b64decode(message["data"]) == payload
    assert message["attributes"] == attributes
    assert message["messageId"] == message_id
    assert record["attributes"]["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert record["attributes"]["source"] == f"//pubsub.googleapis.com/{deployment.request_topic}"
    [json_record] = records_for(records, json_id)
    assert json.loads(base64.b64decode(json_record["data"]["message"]["data"])) == {"kind": "json", "n": 1}

    # The function's environment: the stack's variables, PATH/HOME/LANG, and nothing else from the parent.
    env_keys = set(record["env_keys"])
    assert "STACK_TEST_PARENT_SECRET" not in env_keys
    for key in ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "COMPLETION_TOPIC"):
        assert key in env_keys
    assert deployment.env["COMPLETION_TOPIC"] == deployment.completion_topic
    assert deployment.env["REQUEST_TOPIC"] == deployment.request_topic
    assert deployment.env["DICOMWEB_AUTH"] == "none"
    allowed = set(deployment.env) | {"PWD", "SERVER_SOFTWARE", "FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE"}
    assert env_keys <= allowed, env_keys - allowed

    # The tap sees the requests too; the completion subscription saw nothing.
    tapped = tap.pull(2, timeout=10)
    assert {e.message_id for e in tapped} == {message_id, json_id}
    by_id = {e.message_id: e for e in tapped}
    assert by_id[message_id].data == payload
    assert by_id[message_id].attributes == attributes
    assert by_id[json_id].data == {"kind": "json", "n": 1}
    assert deployment.no_more_events(0.3) == []


def test_completion_pull_and_timeout(deploy: Callable[..., Deployment], tmp_path: Path) -> None:
    deployment = deploy_probe(deploy, tmp_path / "records.jsonl")
    message_id = deployment.rest.publish(deployment.completion_topic, {"status": "done"}, {"k": "v"})
    [event] = deployment.pull_events(1, timeout=10)
    assert (event.data, event.attributes, event.message_id) == ({"status": "done"}, {"k": "v"}, message_id)
    assert deployment.no_more_events(0.3) == []
    started = time.monotonic()
    with pytest.raises(PullTimeout) as raised:
        deployment.pull_events(1, timeout=0.5)
    assert raised.value.events == []
    assert time.monotonic() - started < 3
    assert deployment.pull_events(1, timeout=0.2, allow_fewer=True) == []


def test_failing_function_is_redelivered_then_dead_lettered(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    record_file = tmp_path / "records.jsonl"
    deployment = deploy_probe(deploy, record_file, max_delivery_attempts=5)
    message_id = deployment.publish({"fail": True}, {"probe_fail": "1"})

    [dead] = deployment.pull_dead_letters(1, timeout=30)
    assert dead.data == {"fail": True}
    assert dead.attributes["probe_fail"] == "1"
    deliveries = records_for(read_records(record_file), message_id)
    assert len(deliveries) == 5, deliveries
    assert "probe asked to fail" in deployment.function.log_text()
    time.sleep(1.2)  # no further redelivery after dead-lettering (redelivery is about once a second)
    assert len(records_for(read_records(record_file), message_id)) == 5
    assert deployment.no_more_dead_letters(0.2) == []


def test_function_kill_and_restart_on_same_port(deploy: Callable[..., Deployment], tmp_path: Path) -> None:
    record_file = tmp_path / "records.jsonl"
    deployment = deploy_probe(deploy, record_file)
    function = deployment.function
    port = function.port
    # Graceful: SIGTERM goes to the gunicorn master, which stops its worker.
    graceful_pgid = function.pgid
    assert graceful_pgid is not None
    function.kill(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while group_members(graceful_pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group_members(graceful_pgid) == []
    function.restart()
    # Crash: SIGKILL to the whole group.
    pgid = function.pgid
    assert pgid is not None and pgid != graceful_pgid
    function.kill(signal.SIGKILL)
    assert group_members(pgid) == []
    assert not any(p == port for _, p, _ in listening_sockets())
    function.restart()
    assert function.port == port and function.pgid != pgid
    message_id = deployment.publish("after restart")
    wait_for_records(record_file, lambda rs: bool(records_for(rs, message_id)))
    assert function.log_text().count("starting:") == 3  # one log across restarts


# --------------------------------------------------------------------------------------------------
# Loopback only, teardown, startup errors
# --------------------------------------------------------------------------------------------------


def test_every_process_listens_on_loopback_only(
    stack: Stack, deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    deploy_probe(deploy, tmp_path / "records.jsonl")
    processes = stack.processes()
    names = {p.name for p in processes}
    assert {"pubsub-emulator", "fake-gcs"} <= names
    assert_loopback_only(processes)


def test_stop_leaves_no_process_alive(tmp_path: Path) -> None:
    local = Stack(tmp_path / "run", healthcare=HealthcareEmulator.available())
    try:
        local.start()
        local.deploy(
            {"PROBE_RECORD_FILE": str(tmp_path / "r.jsonl")}, source=PROBE_SOURCE, target=PROBE_TARGET
        )
        processes = local.processes()
        pgids = [p.pgid for p in processes]
        ports = {p.port for p in processes if isinstance(getattr(p, "port", None), int)}  # type: ignore[attr-defined]
        assert all(pgid is not None and group_members(pgid) for pgid in pgids)
        assert sum(len(group_members(pgid)) for pgid in pgids if pgid) > len(pgids)  # gunicorn has a worker
    finally:
        local.stop()
    assert {pgid: group_members(pgid) for pgid in pgids if pgid and group_members(pgid)} == {}
    assert not [s for s in listening_sockets() if s[1] in ports]
    local.stop()  # idempotent


def test_startup_failure_reports_the_log_tail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom-marker-42')\n")
    server = FunctionServer(tmp_path, base_env(), source=broken, target="anything", name="broken-function")
    with pytest.raises(StackError, match="boom-marker-42"):
        server.start(timeout=20)
    assert server.pgid is not None
    assert group_members(server.pgid) == []


# --------------------------------------------------------------------------------------------------
# fake-gcs-server
# --------------------------------------------------------------------------------------------------


def test_gcs_bucket_upload_download_round_trip(stack: Stack, bucket: str) -> None:
    client = stack.storage_client()
    blob = client.bucket(bucket).blob("a/b/object.dcm")
    content = bytes(range(256)) * 100
    blob.upload_from_string(content, content_type="application/dicom", if_generation_match=0)
    assert client.bucket(bucket).blob("a/b/object.dcm").download_as_bytes() == content
    assert [b.name for b in client.list_blobs(bucket, prefix="a/")] == ["a/b/object.dcm"]
    with pytest.raises(PreconditionFailed):
        blob.upload_from_string(b"other", if_generation_match=0)
    assert stack.gcs is not None and str(stack.gcs.data_dir) in " ".join(stack.gcs.command)


def test_gcs_url_is_the_permission_front_and_the_admin_url_is_not(
    stack: Stack, bucket: str, deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """The function and the tests' default client get create-only rights; the admin client gets all."""
    deployment = deploy_probe(deploy, tmp_path / "records.jsonl")
    assert deployment.env["STORAGE_EMULATOR_HOST"] == stack.gcs_url == stack.gcs_front.url
    assert stack.gcs_admin_url != stack.gcs_url
    assert stack.gcs is not None and f"-external-url {stack.gcs_url}" in " ".join(stack.gcs.command)
    stack.storage_client(admin=True).bucket(bucket).blob("a").upload_from_string(b"1")
    with pytest.raises(Forbidden):
        stack.storage_client().bucket(bucket).blob("a").delete()
    stack.storage_client(admin=True).bucket(bucket).blob("a").delete()
    assert "gcs-front" in {process.name for process in stack.processes()}
    assert_loopback_only([stack.gcs_front])


# --------------------------------------------------------------------------------------------------
# Healthcare API emulator
# --------------------------------------------------------------------------------------------------


def test_healthcare_emulator_accepts_stow(healthcare: HealthcareEmulator, dicom_store: str) -> None:
    session = loopback_session()
    assert session.get(f"{healthcare.admin_url}/emulator/faults", timeout=5).status_code == 200
    instance, study, series, _ = dicom_instance()
    response = stow(session, f"{healthcare.dicomweb_url(dicom_store)}/studies", instance)
    assert response.status_code == 200, response.text
    found = session.get(
        f"{healthcare.dicomweb_url(dicom_store)}/studies/{study}/series",
        headers={"Accept": "application/dicom+json"},
        timeout=10,
    )
    assert found.status_code == 200, found.text
    assert [s["0020000E"]["Value"][0] for s in found.json()] == [series]
    assert_loopback_only([healthcare])


# --------------------------------------------------------------------------------------------------
# Orthanc
# --------------------------------------------------------------------------------------------------


@pytest.mark.orthanc
def test_orthanc_stow_then_wado_on_loopback(orthanc: Orthanc) -> None:
    session = orthanc.session()
    instance, study, series, _ = dicom_instance()
    response = stow(session, f"{orthanc.dicomweb_url}/studies", instance)
    assert response.status_code == 200, response.text
    retrieved = session.get(
        f"{orthanc.dicomweb_url}/studies/{study}/series/{series}",
        headers={"Accept": 'multipart/related; type="application/dicom"'},
        timeout=30,
    )
    assert retrieved.status_code == 200, retrieved.text
    assert multipart_parts(retrieved) == [instance]
    assert_loopback_only([orthanc])
    sockets = sockets_of([orthanc])[orthanc.name]
    assert sockets == [("127.0.0.1", orthanc.port)]


@pytest.mark.orthanc
def test_orthanc_basic_auth(tmp_path: Path) -> None:
    reason = Orthanc.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    server = Orthanc(tmp_path, username="worker", password="s3cret").start()
    try:
        anonymous = loopback_session()
        assert anonymous.get(f"{server.url}/system", timeout=5).status_code == 401
        assert server.session().get(f"{server.url}/system", timeout=5).status_code == 200
        assert_loopback_only([server])
    finally:
        pgid = server.pgid
        # A throwaway instance: exercise the SIGKILL fallback instead of waiting 4.5 s.
        server.stop(timeout=0.5)
    assert pgid is not None and group_members(pgid) == []
