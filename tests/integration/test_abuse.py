"""Fault and abuse tests: hostile messages, duplicate deliveries, crashes, server faults, deadlines, PHI.

Everything runs through the real local stack: messages are published to a deployment's request topic, pushed
to the function, and judged by the completion events, the emulator's request log, the bucket and the
function's log. Servers the tests start themselves (a canary that must never be contacted, a DICOMweb proxy
that returns every attribute) listen on 127.0.0.1 and are stopped by the fixture or test that started them.

The module ends by printing (and writing to bench/out/abuse-figures.txt) the block ``ABUSE SUITE FIGURES``.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import random
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pydicom
import pytest
import requests
from pydicom.uid import generate_uid

from infra.local.dicom_factory import PATIENT_NAME, Series, make_instance, stow
from infra.local.stack import REPO_ROOT, Deployment, Event, Stack
from tests.integration.abuse_corpus import MAIN, NAMES, NO_DELETE, Hostile, Target, corpus
from tests.integration.helpers import EmulatorAdmin, by_request, list_bucket, read_bucket, series_path
from worker.cli import main as cli_main
from worker.continuation import SIGNATURE_FIELD, KeyRing

pytestmark = pytest.mark.integration

FIGURES_FILE = REPO_ROOT / "bench" / "out" / "abuse-figures.txt"
ERROR_CODES = frozenset(
    {
        "invalid_message",
        "invalid_request",
        "series_not_found",
        "destination_missing",
        "destination_not_allowed",
        "destination_refused",
        "destination_conflict",
        "store_not_allowed",
        "delete_disabled",
        "delete_not_supported",
        "delete_failed",
        "series_not_empty",
        "verification_failed",
        "instance_unreadable",
        "source_invalid_response",
        "unsupported_instance",
        "search_incomplete",
        "source_refused",
        "retries_exhausted",
        "result_too_large",
    }
)
PHI_PATIENT_ID = "PID-QX7734921"
PHI_BIRTH_DATE = "19310704"


# --------------------------------------------------------------------------------------------------
# Figures: counted by the tests, printed and written once the module is done
# --------------------------------------------------------------------------------------------------


@dataclass
class Figures:
    messages: int = 0
    faults: int = 0
    duplicates: int = 0
    kills: int = 0
    verified: int = 0
    lost: int = 0
    races: int = 0
    forged: int = 0
    false_deleted_claims: int = 0
    deleted_uncopied: int = 0
    deployments: list[Deployment] = field(default_factory=list)

    def block(self) -> str:
        return "\n".join(
            [
                "ABUSE SUITE FIGURES",
                f"messages tried: {self.messages}",
                f"faults injected: {self.faults}",
                f"duplicate deliveries: {self.duplicates}",
                f"kills survived: {self.kills}",
                f"objects verified byte for byte: {self.verified}",
                f"objects lost: {self.lost}",
                f"races survived (instances stored mid-archive): {self.races}",
                f"forged or replayed follow-ups refused: {self.forged}",
                f'false "deleted" claims: {self.false_deleted_claims}',
                f"instances deleted without a verified copy: {self.deleted_uncopied}",
            ]
        )


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[Figures]:
    counted = Figures()
    yield counted
    block = counted.block()
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_FILE.write_text(block + "\n", encoding="utf-8")
    print(f"\n{block}\n(written to {FIGURES_FILE.relative_to(REPO_ROOT)})")


# --------------------------------------------------------------------------------------------------
# Small local servers: a canary that must never be reached, and a DICOMweb proxy that leaks everything
# --------------------------------------------------------------------------------------------------


class _Recording(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CanaryHandler)
        self.hits: list[str] = []
        self.lock = threading.Lock()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.lock:  # every connection counts, HTTP or not
            self.hits.append(f"connection from {client_address}")
        return True


class _CanaryHandler(BaseHTTPRequestHandler):
    server: _Recording

    def _answer(self) -> None:
        with self.server.lock:
            self.server.hits.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Canary:
    """An HTTP server on 127.0.0.1 that records every connection; hostile messages name its host:port."""

    def __init__(self) -> None:
        self.server = _Recording()
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    def start(self) -> Canary:
        self.thread.start()
        return self

    @property
    def hits(self) -> list[str]:
        with self.server.lock:
            return list(self.server.hits)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: PhiProxy


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def _forward(self) -> None:
        self.server.proxy.forward(self)

    do_GET = do_POST = do_DELETE = _forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


class PhiProxy:
    """A Healthcare API front on 127.0.0.1 that forwards to the emulator, but answers every instance search
    with all attributes (includefield=all: PatientName, PatientID, PatientBirthDate, ...) and refuses any
    request for the series `refuse` with a 400 whose body names the patient."""

    def __init__(self, upstream: str, refuse: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.refuse = refuse
        self.search_bodies: list[bytes] = []
        self.session = requests.Session()
        self.session.trust_env = False
        self.server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self.server.proxy = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    def start(self) -> PhiProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        self.session.close()

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        if self.refuse in split.path:
            error = {
                "error": {
                    "code": 400,
                    "message": f"no patient {PATIENT_NAME} ({PHI_PATIENT_ID}, born {PHI_BIRTH_DATE})",
                    "status": "INVALID_ARGUMENT",
                }
            }
            self._reply(handler, 400, {"Content-Type": "application/json"}, json.dumps(error).encode())
            return
        query = split.query
        search = handler.command == "GET" and split.path.endswith("/instances")
        if search:
            pairs = [(k, v) for k, v in parse_qsl(query) if k != "includefield"]
            query = urlencode([*pairs, ("includefield", "all")])
        headers = {k: v for k, v in handler.headers.items() if k.lower() in ("accept", "content-type")}
        response = self.session.request(
            handler.command,
            f"{self.upstream}{split.path}" + (f"?{query}" if query else ""),
            headers=headers,
            data=body,
            timeout=60,
            allow_redirects=False,
        )
        content = response.content
        if search:
            self.search_bodies.append(content)
        kept = {k: v for k, v in response.headers.items() if k in ("Content-Type", "Retry-After", "Warning")}
        self._reply(handler, response.status_code, kept, content)

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, headers: Mapping[str, str], body: bytes) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if body and status != 204:
            handler.wfile.write(body)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def dataset_of(store: str) -> str:
    return store.rsplit("/dicomStores/", 1)[0]


def worker_env(bucket: str, store: str, prefix: str, **extra: str) -> dict[str, str]:
    """The hardened deployment: delete on, one allowed bucket, the store's dataset only."""
    return {
        "DELETE_ENABLED": "true",
        "DEFAULT_DESTINATION": f"gs://{bucket}/{prefix}",
        "ALLOWED_BUCKETS": bucket,
        "ALLOWED_DICOM_STORES": f"{dataset_of(store)}/dicomStores/*",
        **extra,
    }


def folder(prefix: str, series: Series) -> str:
    return f"{prefix}/{series.study_uid}/{series.series_uid}"


def copy_problems(
    storage_client: Any, bucket: str, prefix: str, series: Series, data: list[bytes], figures: Figures
) -> list[str]:
    """Every instance's object must exist and equal the stored bytes; nothing else but the manifest."""
    where = folder(prefix, series)
    blobs = list_bucket(storage_client, bucket, where + "/")
    expected = {f"{where}/{sop}.dcm": body for sop, body in zip(series.sop_uids, data, strict=True)}
    problems = []
    for name, body in expected.items():
        blob = blobs.get(name)
        if blob is None:
            figures.lost += 1
            problems.append(f"{name} is missing")
            continue
        copied = blob.download_as_bytes()
        if copied != body:
            figures.lost += 1
            problems.append(f"{name} differs from the source ({len(copied)} of {len(body)} bytes)")
        else:
            figures.verified += 1
    records = re.compile(re.escape(where) + r"/(manifest(\.[0-9]+)?|metadata)\.json")
    extra = {name for name in set(blobs) - set(expected) if not records.fullmatch(name)}
    problems += [f"unexpected object {name}" for name in sorted(extra)]
    return problems


def deletion_problems(
    emulator: EmulatorAdmin,
    store: str,
    event: Mapping[str, Any],
    storage_client: Any,
    bucket: str,
    prefix: str,
    expected: Mapping[str, bytes],
    figures: Figures,
) -> list[str]:
    """Invariants 1 and 2 for one request: every instance gone from the store has a byte-identical copy,
    and `deleted: true` only for a series that is empty. Counted in the figures."""
    problems: list[str] = []
    present = emulator.instance_uids(store, *_study_series(event))
    where = f"{prefix}/{event['studyInstanceUID']}/{event['seriesInstanceUID']}"
    for sop_uid, body in expected.items():
        if sop_uid in present:
            continue
        blob = storage_client.bucket(bucket).get_blob(f"{where}/{sop_uid}.dcm")
        if blob is None or blob.download_as_bytes() != body:
            figures.deleted_uncopied += 1
            problems.append(f"instance {sop_uid} was deleted without a verified copy")
    if event.get("deleted") is True and present:
        figures.false_deleted_claims += 1
        problems.append(f"the event says deleted, but {len(present)} instances remain")
    return problems


def _study_series(event: Mapping[str, Any]) -> tuple[str, str]:
    return str(event["studyInstanceUID"]), str(event["seriesInstanceUID"])


def assert_copied(
    storage_client: Any, bucket: str, prefix: str, series: Series, data: list[bytes], figures: Figures
) -> None:
    problems = copy_problems(storage_client, bucket, prefix, series, data, figures)
    assert not problems, problems


def series_deletes(requests_log: Iterable[Mapping[str, Any]], series: Series) -> list[Mapping[str, Any]]:
    """DELETEs of the whole series (archive never sends one)."""
    return [
        r
        for r in requests_log
        if r["method"] == "DELETE" and r["path"].endswith(f"/series/{series.series_uid}")
    ]


def instance_deletes(requests_log: Iterable[Mapping[str, Any]], series: Series) -> dict[str, int]:
    """How many DELETEs of each instance of the series the server carried out (status 200)."""
    done: dict[str, int] = {}
    for r in requests_log:
        if (
            r["method"] == "DELETE"
            and r["status"] == 200
            and f"/series/{series.series_uid}/instances/" in r["path"]
        ):
            sop_uid = r["path"].rsplit("/", 1)[1]
            done[sop_uid] = done.get(sop_uid, 0) + 1
    return done


def by_request_id(events: Iterable[Event]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = {}
    for event in events:
        grouped.setdefault(str(event.data["requestId"]), []).append(event)
    return grouped


def pull_until(deployment: Deployment, request_ids: set[str], timeout: float) -> dict[str, list[Event]]:
    """Pull events until each request id has one (or the timeout); the events by request id."""
    deadline = time.monotonic() + timeout
    events: list[Event] = []
    while True:
        events += deployment.rest.pull_once(deployment.completion_subscription, 100)
        grouped = by_request_id(events)
        if request_ids <= grouped.keys() or time.monotonic() >= deadline:
            return grouped
        time.sleep(0.1)


def no_traceback(event: Event) -> None:
    text = event.raw.decode("utf-8", "replace")
    assert "Traceback" not in text and 'File "' not in text, text


def phi_instance(study: str, series: str, sop: str, number: int) -> bytes:
    """A synthetic instance naming the patient (PATIENT_NAME) with this module's ID and birth date."""
    dataset = pydicom.dcmread(io.BytesIO(make_instance(study, series, sop, number=number, pixel_bytes=1024)))
    dataset.PatientID = PHI_PATIENT_ID
    dataset.PatientBirthDate = PHI_BIRTH_DATE
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def phi_found(text: str) -> list[str]:
    """Which of the patient's name, ID and birth date appear in `text`."""
    found = [needle for needle in (PATIENT_NAME, "Doe^Jane", PHI_PATIENT_ID) if needle in text]
    if re.search(rf"(?<![0-9]){PHI_BIRTH_DATE}(?![0-9])", text):
        found.append(PHI_BIRTH_DATE)
    return found


def unstructured_lines(log: str) -> list[str]:
    """Lines starting with `{` that are not JSON objects with a severity and a message."""
    bad = []
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if not isinstance(entry, dict) or not entry.get("severity") or "message" not in entry:
            bad.append(line)
    return bad


def early_seed(rate: float, within: int, start: int) -> int:
    """A seed whose random sequence fires (draws below `rate`) within its first `within` draws, so that
    every fault rule fires at least once in a short run while keeping its rate."""
    seed = start
    while True:
        rng = random.Random(seed)
        if any(rng.random() < rate for _ in range(within)):
            return seed
        seed += 1


# --------------------------------------------------------------------------------------------------
# 1. The hostile message corpus
# --------------------------------------------------------------------------------------------------


@dataclass
class CorpusRun:
    target: Target
    entries: dict[str, Hostile]
    events: dict[str, list[Event]]
    dead_lettered: dict[str, int]
    unmatched: list[Event]
    controls: dict[str, list[Event]]
    requests: list[dict[str, Any]]
    canary_hits: list[str]
    logs: dict[str, str]
    instance_count: int
    written: dict[str, list[str]]


@pytest.fixture(scope="module")
def corpus_run(stack: Stack, figures: Figures) -> Iterator[CorpusRun]:
    assert stack.healthcare is not None, "the abuse suite needs the Healthcare API emulator"
    admin = EmulatorAdmin(stack.healthcare_admin_url, stack.healthcare_url)
    dataset = f"abuse-{uuid.uuid4().hex[:8]}"
    store = stack.create_dicom_store(
        f"projects/local-project/locations/local/datasets/{dataset}/dicomStores/corpus"
    )
    series, _ = admin.stow_series(store, 2)
    bucket = stack.create_bucket(f"abuse-{uuid.uuid4().hex[:10]}")
    other_bucket = stack.create_bucket(f"abuse-other-{uuid.uuid4().hex[:8]}")
    canary = Canary().start()
    deployments: dict[str, Deployment] = {}
    try:
        env = worker_env(bucket, store, "abuse")
        deployments[MAIN] = stack.deploy(env)
        deployments[NO_DELETE] = stack.deploy({k: v for k, v in env.items() if k != "DELETE_ENABLED"})
        figures.deployments += deployments.values()
        target = Target(
            "local-project", "local", dataset, "corpus", series.study_uid, series.series_uid,
            bucket, other_bucket, canary.host,
        )  # fmt: skip
        entries = {entry.name: entry for entry in corpus(target)}
        assert list(entries) == NAMES
        admin.clear_requests()

        owner: dict[str, str] = {}  # message id or requestId -> entry name
        for entry in entries.values():
            message_id = deployments[entry.deployment].publish(entry.data, entry.attributes or None)
            owner[message_id] = entry.name
            if entry.request_id is not None:
                owner[entry.request_id] = entry.name
        controls = {
            "abuse-control-main": deployments[MAIN],
            "abuse-control-no-delete": deployments[NO_DELETE],
        }
        for request_id, deployment in controls.items():
            deployment.publish({"action": "search", "series": target.path(), "requestId": request_id})
        figures.messages += len(entries) + len(controls)

        events: dict[str, list[Event]] = {name: [] for name in entries}
        control_events: dict[str, list[Event]] = {request_id: [] for request_id in controls}
        unmatched: list[Event] = []
        dead_lettered: dict[str, int] = {}
        by_data = {entry.data: entry.name for entry in entries.values()}

        def take(received: Iterable[Event]) -> None:
            for event in received:
                request_id = event.data.get("requestId") if isinstance(event.data, dict) else None
                if request_id in owner:
                    events[owner[request_id]].append(event)
                elif request_id in control_events:
                    control_events[request_id].append(event)
                else:
                    unmatched.append(event)

        def settled() -> bool:
            return all(events[name] or name in dead_lettered for name in entries) and all(
                control_events.values()
            )

        deadline = time.monotonic() + 60
        while not settled() and time.monotonic() < deadline:
            for deployment in deployments.values():
                take(deployment.rest.pull_once(deployment.completion_subscription, 100))
                for dead in deployment.rest.pull_once(deployment.dead_letter_subscription, 100):
                    name = by_data.get(dead.raw, "?")
                    dead_lettered[name] = dead_lettered.get(name, 0) + 1
            time.sleep(0.1)
        for deployment in deployments.values():  # anything arriving late is a second event
            take(deployment.no_more_events(wait=2.0))
            for dead in deployment.no_more_dead_letters(wait=0.1):
                name = by_data.get(dead.raw, "?")
                dead_lettered[name] = dead_lettered.get(name, 0) + 1

        yield CorpusRun(
            target=target,
            entries=entries,
            events=events,
            dead_lettered=dead_lettered,
            unmatched=unmatched,
            controls=control_events,
            requests=admin.requests(),
            canary_hits=canary.hits,
            logs={name: deployment.function.log_text() for name, deployment in deployments.items()},
            instance_count=admin.instance_count(store, series),
            written={b: sorted(list_bucket(stack.storage_client(), b)) for b in (bucket, other_bucket)},
        )
    finally:
        for deployment in deployments.values():
            deployment.stop()
        canary.stop()


@pytest.mark.parametrize("name", NAMES)
def test_hostile_message_ends_with_one_failed_event(corpus_run: CorpusRun, name: str) -> None:
    entry = corpus_run.entries[name]
    events = corpus_run.events[name]
    assert name not in corpus_run.dead_lettered, (
        f"dead-lettered without a completion event ({corpus_run.dead_lettered[name]} dead letters)"
    )
    assert len(events) == 1, f"{len(events)} events: {[e.data for e in events]}"
    (event,) = events
    assert event.data["status"] == "failed", event.data
    error = event.data["error"]
    assert error["code"] in entry.codes, error
    assert event.attributes["errorCode"] == error["code"]
    assert entry.says.lower() in error["message"].lower(), error
    no_traceback(event)
    assert corpus_run.target.canary not in event.raw.decode("utf-8", "replace")


def test_corpus_is_large_and_every_message_was_answered(corpus_run: CorpusRun) -> None:
    assert len(corpus_run.entries) >= 40
    assert corpus_run.unmatched == [], [e.data for e in corpus_run.unmatched]
    for request_id, events in corpus_run.controls.items():
        assert [e.data["status"] for e in events] == ["succeeded"], (request_id, [e.data for e in events])
        assert events[0].data["instanceCount"] == 2


def test_report_summarises_the_corpus_events(corpus_run: CorpusRun, tmp_path: Path) -> None:
    """`python -m worker report` on every completion event of the corpus, as the worker published them
    and as rows of the audit table (the event in `data`, each row twice as an at-least-once subscription
    may write it), against the same counts taken from the events themselves."""
    published = [e for events in (*corpus_run.events.values(), *corpus_run.controls.values()) for e in events]
    assert len(published) >= 40
    expected_groups: Counter[tuple[str, str]] = Counter(
        (e.data["action"] or "(none)", e.data["status"]) for e in published
    )
    expected_codes = Counter(e.data["error"]["code"] for e in published if e.data["status"] == "failed")
    expected_instances = sum(e.data.get("instanceCount", 0) for e in published)

    as_published = tmp_path / "events.jsonl"
    as_published.write_bytes(b"".join(e.raw + b"\n" for e in published))
    as_rows = tmp_path / "audit-rows.jsonl"
    as_rows.write_text(
        "".join(
            json.dumps({"message_id": e.message_id, "publish_time": e.publish_time, "data": e.raw.decode()})
            + "\n"
            for e in published
            for _ in range(2)
        ),
        encoding="utf-8",
    )
    for path, duplicates in ((as_published, 0), (as_rows, len(published))):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli_main(["report", "--file", str(path), "--format", "json"], env={})
        assert code == 0, path
        summary = json.loads(out.getvalue())
        assert (summary["events"], summary["duplicates"], summary["unreadable"]) == (
            len(published),
            duplicates,
            0,
        )
        groups = {(g["action"], g["status"]): g["events"] for g in summary["byActionStatus"]}
        assert groups == dict(expected_groups)
        assert {f["code"]: f["events"] for f in summary["failuresByCode"]} == dict(expected_codes)
        assert sum(g["instances"] for g in summary["byActionStatus"]) == expected_instances
        # The only succeeded series are the two controls' searches (every hostile message failed).
        largest = {s["requestId"]: s["instances"] for s in summary["largestSeries"]}
        assert largest == dict.fromkeys(corpus_run.controls, 2)


def test_corpus_reached_only_the_allowed_store_and_never_the_canary(corpus_run: CorpusRun) -> None:
    target = corpus_run.target
    assert corpus_run.canary_hits == []
    allowed = (f"/v1/{target.store_name}/dicomWeb/", f"/v1/{target.dataset_name}/operations/")
    elsewhere = [
        f"{r['method']} {r['path']}" for r in corpus_run.requests if not r["path"].startswith(allowed)
    ]
    assert elsewhere == []
    assert corpus_run.requests, "the controls must have reached the allowed store"
    assert [r for r in corpus_run.requests if r["method"] != "GET"] == []  # nothing deleted, nothing stored
    assert corpus_run.instance_count == 2
    assert corpus_run.written == {target.bucket: [], target.other_bucket: []}


def test_a_rejected_message_keeps_its_request_id(corpus_run: CorpusRun) -> None:
    """A message with a valid requestId and some other bad field: its failed event carries that requestId
    (a sender correlates by requestId); one without a usable requestId gets the message id."""
    wrong = {
        name: events[0].data["requestId"]
        for name, events in corpus_run.events.items()
        if corpus_run.entries[name].request_id is not None
        and len(events) == 1
        and events[0].data["requestId"] != corpus_run.entries[name].request_id
    }
    assert wrong == {}, f"{len(wrong)} failed events do not carry the message's requestId: {wrong}"


def test_no_hostile_message_crashes_the_function(corpus_run: CorpusRun) -> None:
    """A hostile message ends in a failed event, never in an exception (a 500, redelivered until it is
    dead-lettered without an event)."""
    for name, log in corpus_run.logs.items():
        assert "Traceback" not in log, f"the {name} function raised:\n{log[log.index('Traceback') :][:3000]}"


# --------------------------------------------------------------------------------------------------
# 2. Duplicate and concurrent deliveries
# --------------------------------------------------------------------------------------------------


def test_the_same_retrieve_five_times_at_once(
    deploy: Callable[..., Deployment],
    bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
    figures: Figures,
) -> None:
    deployment = deploy(worker_env(bucket, dicom_store, "dup"))
    figures.deployments.append(deployment)
    series, data = emulator.stow_series(dicom_store, 20, pixel_bytes=2048)
    request = {"action": "retrieve", "series": series_path(dicom_store, series), "requestId": "dup-retrieve"}
    threads = [threading.Thread(target=deployment.publish, args=(request,)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    figures.messages += 5
    figures.duplicates += 4
    events = deployment.pull_events(5, timeout=90)
    assert deployment.no_more_events(wait=1.0) == []
    assert [e.data["status"] for e in events] == ["succeeded"] * 5, [e.data for e in events]
    assert sum(e.data["uploadedCount"] for e in events) == 20, "each instance is uploaded exactly once"
    assert all(e.data["instanceCount"] == 20 for e in events)
    assert_copied(storage_client, bucket, "dup", series, data, figures)
    assert len(list_bucket(storage_client, bucket, folder("dup", series) + "/")) == 21  # and the manifest


def test_archive_delivered_twice_in_a_row(
    deploy: Callable[..., Deployment],
    bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
    figures: Figures,
) -> None:
    """At-least-once delivery: the same archive again after it was done (its ack was lost, say)."""
    deployment = deploy(worker_env(bucket, dicom_store, "dup"))
    figures.deployments.append(deployment)
    archived, archived_data = emulator.stow_series(dicom_store, 6, pixel_bytes=2048)
    emulator.clear_requests()
    request = {"action": "archive", "series": series_path(dicom_store, archived), "requestId": "dup-archive"}
    deployment.publish(request)
    (first,) = deployment.pull_events(1, timeout=60)
    deployment.publish(request)
    (second,) = deployment.pull_events(1, timeout=60)
    figures.messages += 2
    figures.duplicates += 1
    assert deployment.no_more_events(wait=1.5) == []
    assert first.data["status"] == "succeeded", first.data
    assert first.data["deleted"] is True
    assert_copied(storage_client, bucket, "dup", archived, archived_data, figures)
    assert emulator.instance_count(dicom_store, archived) == 0
    log = emulator.requests()
    assert series_deletes(log, archived) == []
    assert instance_deletes(log, archived) == dict.fromkeys(archived.sop_uids, 1)
    expected = dict(zip(archived.sop_uids, archived_data, strict=True))
    for event in (first.data, second.data):
        assert not deletion_problems(
            emulator, dicom_store, event, storage_client, bucket, "dup", expected, figures
        )
    no_traceback(second)
    # The same request again, after it was done: it must not contradict the first event.
    assert second.data["status"] == "succeeded", (
        f"a redelivered archive that was already done reports {second.data}"
    )


def test_instances_stored_before_and_during_the_deletes_are_never_lost(
    deploy: Callable[..., Deployment],
    bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
    figures: Figures,
) -> None:
    """Issue 12, 2: one instance is stored between verification and the first delete, another while the
    deletes run. DeleteSeries would delete both uncopied; per-instance deletes leave them to later rounds,
    which copy, check and delete them. The event counts every one, and every one is in the bucket."""
    series, data = emulator.stow_series(dicom_store, 3)
    first = make_instance(series.study_uid, series.series_uid, generate_uid(), number=50)
    second = make_instance(series.study_uid, series.series_uid, generate_uid(), number=51)
    deployment = deploy(
        {"DELETE_ENABLED": "true", "DEFAULT_DESTINATION": f"gs://{bucket}/cold", "CONCURRENCY": "1"}
    )
    emulator.faults(
        {
            "method": "DELETE",
            "path": "/instances/",
            "times": 1,
            "storeInstance": {"store": dicom_store, "data": b64(first)},
        },
        {
            "method": "DELETE",
            "path": f"/instances/{series.sop_uids[2]}$",
            "times": 1,
            "storeInstance": {"store": dicom_store, "data": b64(second)},
        },
    )
    figures.deployments.append(deployment)
    deployment.publish({"action": "archive", "series": series_path(dicom_store, series)})
    (event,) = deployment.pull_events(1, timeout=120)
    figures.messages += 1
    assert [rule["fired"] for rule in emulator.fired()] == [1, 1]
    assert event.data["status"] == "succeeded", event.data
    assert (event.data["instanceCount"], event.data["deletedCount"]) == (5, 5)
    assert (event.data["verified"], event.data["deleted"]) == (True, True)
    prefix = f"cold/{series.study_uid}/{series.series_uid}/"
    objects = read_bucket(storage_client, bucket, prefix)
    expected = dict(zip(series.sop_uids, data, strict=True))
    for instance in (first, second):
        expected[_sop_uid(instance)] = instance
    for sop_uid, body in expected.items():
        assert objects[f"{prefix}{sop_uid}.dcm"] == body
    assert not deletion_problems(
        emulator, dicom_store, event.data, storage_client, bucket, "cold", expected, figures
    )
    figures.races += 2
    series_wide = [
        r for r in emulator.requests() if r["method"] == "DELETE" and r["path"].endswith(series.series_uid)
    ]
    assert series_wide == [], "archive never deletes a whole series"


def _sop_uid(data: bytes) -> str:
    import io

    import pydicom

    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_forged_and_replayed_follow_ups_claim_nothing(
    deploy: Callable[..., Deployment],
    bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
    figures: Figures,
) -> None:
    """Issue 12, 1: an operation name is public (events carry it). A follow-up naming a finished operation
    of the same dataset, unsigned, signed with another key, or with a genuine signature moved from
    another request, is invalid_request: nothing is claimed and nothing is deleted."""
    deployment = deploy(worker_env(bucket, dicom_store, "forged"))
    figures.deployments.append(deployment)
    done, _ = emulator.stow_series(dicom_store, 1)
    deployment.publish({"action": "delete", "series": series_path(dicom_store, done), "requestId": "real"})
    (real,) = deployment.pull_events(1, timeout=60)
    assert real.data["deleted"] is True
    operation = real.data["operation"]
    target, target_data = emulator.stow_series(dicom_store, 3)
    keys = KeyRing.parse(deployment.env["CONTINUATION_KEYS"])
    genuine = {
        "action": "delete",
        "series": series_path(dicom_store, done),
        "requestId": "real",
        "operation": operation,
        "continuation": 1,
    }
    moved = {**genuine, "series": series_path(dicom_store, target), "requestId": "moved"}
    moved[SIGNATURE_FIELD] = keys.sign(genuine)
    other_keys = KeyRing.parse("attacker=" + "a" * 40)
    forged: list[dict[str, Any]] = []
    for action in ("delete", "archive"):
        body = {"action": action, "series": series_path(dicom_store, target), "operation": operation}
        forged.append({**body, "requestId": f"unsigned-{action}"})
        signed = {**body, "requestId": f"other-key-{action}"}
        forged.append({**signed, SIGNATURE_FIELD: other_keys.sign(signed)})
    forged.append(moved)
    forged.append(
        {
            "action": "retrieve",
            "series": series_path(dicom_store, target),
            "requestId": "forged-instance",
            "instance": target.sop_uids[0],
        }
    )
    emulator.clear_requests()
    for message in forged:
        deployment.publish(message)
    events = by_request(deployment.pull_events(len(forged), timeout=60))
    figures.messages += len(forged)
    for message in forged:
        event = events[message["requestId"]]
        assert event["status"] == "failed", event
        assert event["error"]["code"] == "invalid_request", event
        assert "deleted" not in event and "verified" not in event
        figures.forged += 1
        audited = {**event, "studyInstanceUID": target.study_uid, "seriesInstanceUID": target.series_uid}
        expected = dict(zip(target.sop_uids, target_data, strict=True))
        assert not deletion_problems(
            emulator, dicom_store, audited, storage_client, bucket, "forged", expected, figures
        )
    assert not [r for r in emulator.requests() if r["method"] == "DELETE"]
    assert emulator.instance_count(dicom_store, target) == 3


# --------------------------------------------------------------------------------------------------
# 3. SIGKILL mid-copy
# --------------------------------------------------------------------------------------------------


def test_sigkill_mid_copy_twice_loses_and_overwrites_nothing(
    deploy: Callable[..., Deployment],
    bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
    figures: Figures,
) -> None:
    series, data = emulator.stow_series(dicom_store, 60, pixel_bytes=4096)
    deployment = deploy(
        worker_env(bucket, dicom_store, "killed", CONCURRENCY="2", MAX_DELIVERY_ATTEMPTS="20"),
        max_delivery_attempts=20,
    )
    figures.deployments.append(deployment)
    emulator.faults({"method": "GET", "path": f"{series.series_uid}/instances/", "latency": 0.1})
    deployment.publish(  # mode instances: the latency is of RetrieveInstance
        {
            "action": "retrieve",
            "series": series_path(dicom_store, series),
            "requestId": "killed",
            "options": {"mode": "instances"},
        }
    )
    figures.messages += 1
    prefix = folder("killed", series) + "/"
    generations: dict[str, int] = {}
    restarts = []
    for at_least in (10, 30):
        deadline = time.monotonic() + 60
        while len(list_bucket(storage_client, bucket, prefix)) < at_least:
            assert time.monotonic() < deadline, f"fewer than {at_least} objects after 60 s"
            time.sleep(0.05)
        deployment.function.kill(signal.SIGKILL)
        before = list_bucket(storage_client, bucket, prefix)
        assert len(before) < 60, "the kill must land before the copy is done"
        generations.update({name: int(blob.generation) for name, blob in before.items()})
        started = time.monotonic()
        deployment.function.restart()
        restarts.append(time.monotonic() - started)
    (event,) = deployment.pull_events(1, timeout=90)
    fired = sum(rule["fired"] for rule in emulator.fired())
    figures.faults += fired
    assert event.data["status"] == "succeeded", event.data
    assert_copied(storage_client, bucket, "killed", series, data, figures)
    figures.kills += 2
    after = list_bucket(storage_client, bucket, prefix)
    overwritten = {
        name for name, generation in generations.items() if int(after[name].generation) != generation
    }
    assert overwritten == set(), f"objects rewritten after a restart: {sorted(overwritten)}"
    assert event.data["skippedCount"] >= len(generations)
    assert deployment.no_more_events(wait=1.5) == []
    assert deployment.no_more_dead_letters(wait=0.1) == []
    assert max(restarts) < 10, restarts
    starts = [
        line
        for line in deployment.function.log_text().splitlines()
        if '"message":"request started"' in line and '"requestId":"killed"' in line
    ]
    assert len(starts) >= 3, "each kill must have cut a delivery short, and each was delivered again"


# --------------------------------------------------------------------------------------------------
# 4. Injected faults on every request type, under a concurrent batch
# --------------------------------------------------------------------------------------------------


def fault_rules(store: str, rate: float) -> list[dict[str, Any]]:
    """429 (with Retry-After), 500, 503 and a cut body, each at rate/4, for each kind of request."""
    root = re.escape(f"{store}/dicomWeb/studies/")
    kinds: list[tuple[str, str, str, int]] = [
        ("search", "GET", rf"^/v1/{root}[0-9.]+/series/[0-9.]+/instances$", 40),
        ("instance", "GET", rf"^/v1/{root}[0-9.]+/series/[0-9.]+/instances/[0-9.]+$", 700),
        ("series", "GET", rf"^/v1/{root}[0-9.]+/series/[0-9.]+$", 3000),
        ("delete", "DELETE", rf"^/v1/{root}[0-9.]+/series/[0-9.]+/instances/[0-9.]+$", 1),
    ]
    rules = []
    seed = 0
    for kind, method, path, cut in kinds:
        for fault in (
            {"status": 429, "retryAfter": 1},
            {"status": 500},
            {"status": 503},
            {"dropAfterBytes": cut},
        ):
            seed = early_seed(rate / 4, within=2, start=seed + 1)
            rules.append(
                {"method": method, "path": path, "rate": rate / 4, "seed": seed, **fault, "kind": kind}
            )
    return rules


def test_faults_on_every_request_type_never_fake_success(
    deploy: Callable[..., Deployment],
    bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
    figures: Figures,
) -> None:
    deployment = deploy(
        worker_env(bucket, dicom_store, "faults", MAX_DELIVERY_ATTEMPTS="20"), max_delivery_attempts=20
    )
    figures.deployments.append(deployment)
    retrieves = [emulator.stow_series(dicom_store, 4, pixel_bytes=2048) for _ in range(8)]
    archives = [emulator.stow_series(dicom_store, 4, pixel_bytes=2048) for _ in range(4)]
    rules = fault_rules(dicom_store, rate=0.10)
    kinds = [rule.pop("kind") for rule in rules]
    emulator.clear_requests()
    emulator.faults(*rules)
    messages: list[dict[str, Any]] = [
        {
            "action": "retrieve",
            "series": series_path(dicom_store, series),
            "requestId": f"fault-retrieve-{i}",
            "options": {"mode": "series" if i % 2 else "instances"},
        }
        for i, (series, _) in enumerate(retrieves)
    ] + [
        {
            "action": "archive",
            "series": series_path(dicom_store, series),
            "requestId": f"fault-archive-{i}",
            "options": {"mode": "series" if i % 2 else "instances"},
        }
        for i, (series, _) in enumerate(archives)
    ]
    threads = [threading.Thread(target=deployment.publish, args=(message,)) for message in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    figures.messages += len(messages)
    wanted = {message["requestId"] for message in messages}
    grouped = pull_until(deployment, wanted, timeout=150)
    for request_id, late in by_request_id(deployment.no_more_events(wait=3.0)).items():
        grouped.setdefault(request_id, []).extend(late)
    dead = deployment.no_more_dead_letters(wait=0.1)
    fired = emulator.fired()
    emulator.clear_faults()
    log = emulator.requests()
    figures.faults += sum(rule["fired"] for rule in fired)

    problems: list[str] = []
    for request_id in sorted(wanted):
        if len(grouped.get(request_id, [])) != 1:
            problems.append(f"{request_id}: {len(grouped.get(request_id, []))} events")
    problems += [f"unexpected events for {rid}" for rid in set(grouped) - wanted]
    problems += [f"dead letter: {d.data}" for d in dead]
    for i, (series, data) in enumerate(retrieves + archives):
        archive = i >= len(retrieves)
        request_id = f"fault-archive-{i - len(retrieves)}" if archive else f"fault-retrieve-{i}"
        events = grouped.get(request_id, [])
        if not events:
            continue
        event = events[0].data
        no_traceback(events[0])
        present = emulator.instance_count(dicom_store, series)
        if event["status"] == "succeeded":
            problems += [
                f"{request_id}: {p}"
                for p in copy_problems(storage_client, bucket, "faults", series, data, figures)
            ]
            if archive and present != 0:
                problems.append(f"{request_id}: archived, but {present} instances are still in the store")
        else:
            if event["error"]["code"] not in ERROR_CODES:
                problems.append(f"{request_id}: unknown error code {event['error']}")
        if archive:
            expected = dict(zip(series.sop_uids, data, strict=True))
            problems += [
                f"{request_id}: {p}"
                for p in deletion_problems(
                    emulator, dicom_store, event, storage_client, bucket, "faults", expected, figures
                )
            ]
            if series_deletes(log, series):
                problems.append(f"{request_id}: archive deleted the whole series")
    fired_by_kind = dict.fromkeys(kinds, 0)
    for kind, rule in zip(kinds, fired, strict=True):
        fired_by_kind[kind] += rule["fired"]
    assert not problems, (problems, fired_by_kind)
    assert all(fired_by_kind.values()), f"every kind of request must have been faulted: {fired_by_kind}"


# --------------------------------------------------------------------------------------------------
# 5. A server slow enough to trip the deadline
# --------------------------------------------------------------------------------------------------


def test_deadline_retrieve_completes_through_continuations(
    deploy: Callable[..., Deployment],
    bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
    figures: Figures,
) -> None:
    series, data = emulator.stow_series(dicom_store, 16, pixel_bytes=2048)
    deployment = deploy(
        worker_env(
            bucket, dicom_store, "slow", DEADLINE_SECONDS="2", CONCURRENCY="2", MAX_DELIVERY_ATTEMPTS="20"
        ),
        max_delivery_attempts=20,
    )
    figures.deployments.append(deployment)
    tap = deployment.tap_requests()
    emulator.faults(
        {"method": "GET", "path": f"{series.series_uid}/instances$", "latency": 0.5},
        {"method": "GET", "path": f"{series.series_uid}/instances/", "latency": 0.3},
    )
    deployment.publish(  # the latency is of RetrieveInstance: mode instances (auto would stream the series)
        {
            "action": "retrieve",
            "series": series_path(dicom_store, series),
            "requestId": "slow-retrieve",
            "options": {"mode": "instances"},
        }
    )
    figures.messages += 1
    (event,) = deployment.pull_events(1, timeout=90)
    figures.faults += sum(rule["fired"] for rule in emulator.fired())
    assert event.data["status"] == "succeeded", event.data
    assert_copied(storage_client, bucket, "slow", series, data, figures)
    continuations = [m for m in tap.drain(0.5) if m.attributes.get("continuation")]
    assert continuations, "the deadline must have been tripped"
    assert {m.data["requestId"] for m in continuations} == {"slow-retrieve"}
    assert deployment.no_more_events(wait=2.0) == []


def test_deadline_archive_completes_through_continuations(
    deploy: Callable[..., Deployment],
    bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
    figures: Figures,
) -> None:
    series, data = emulator.stow_series(dicom_store, 6, pixel_bytes=2048)
    deployment = deploy(
        worker_env(
            bucket, dicom_store, "slow", DEADLINE_SECONDS="2", CONCURRENCY="2", MAX_DELIVERY_ATTEMPTS="20"
        ),
        max_delivery_attempts=20,
    )
    figures.deployments.append(deployment)
    tap = deployment.tap_requests()
    emulator.clear_requests()
    emulator.faults({"method": "GET", "path": f"{series.series_uid}/instances/", "latency": 1.0})
    deployment.publish(  # the latency is of RetrieveInstance: mode instances (auto would stream the series)
        {
            "action": "archive",
            "series": series_path(dicom_store, series),
            "requestId": "slow-archive",
            "options": {"mode": "instances"},
        }
    )
    figures.messages += 1
    events = deployment.pull_events(1, timeout=40, allow_fewer=True)
    figures.faults += sum(rule["fired"] for rule in emulator.fired())
    continuations = [m for m in tap.drain(1.0) if m.attributes.get("continuation")]
    assert events, f"no completion event after 40 s; the request was handed on {len(continuations)} times"
    (event,) = events
    assert event.data["status"] == "succeeded", (
        event.data.get("error"),
        f"{len(continuations)} continuations",
    )
    assert event.data["deleted"] is True
    assert continuations
    assert_copied(storage_client, bucket, "slow", series, data, figures)
    assert emulator.instance_count(dicom_store, series) == 0
    log = emulator.requests()
    assert series_deletes(log, series) == []
    assert instance_deletes(log, series) == dict.fromkeys(series.sop_uids, 1)
    expected = dict(zip(series.sop_uids, data, strict=True))
    assert not deletion_problems(
        emulator, dicom_store, event.data, storage_client, bucket, "slow", expected, figures
    )
    assert deployment.no_more_events(wait=2.0) == []


# --------------------------------------------------------------------------------------------------
# 6. No PHI in logs, events or object metadata
# --------------------------------------------------------------------------------------------------


def test_no_phi_in_logs_events_or_object_metadata(
    stack: Stack,
    deploy: Callable[..., Deployment],
    bucket: str,
    dicom_store: str,
    emulator: EmulatorAdmin,
    storage_client: Any,
    figures: Figures,
) -> None:
    study = generate_uid()
    searched, archived, refused = (
        Series(study, generate_uid(), tuple(generate_uid() for _ in range(3))) for _ in range(3)
    )
    stowed = {
        s.series_uid: [
            phi_instance(s.study_uid, s.series_uid, sop, i + 1) for i, sop in enumerate(s.sop_uids)
        ]
        for s in (searched, archived, refused)
    }
    stow(emulator.dicomweb(dicom_store), [body for bodies in stowed.values() for body in bodies])
    assert stack.healthcare is not None
    proxy = PhiProxy(stack.healthcare.admin_url, refuse=refused.series_uid).start()
    try:
        deployment = deploy(worker_env(bucket, dicom_store, "phi", HEALTHCARE_API_URL=f"{proxy.url}/v1"))
        figures.deployments.append(deployment)
        messages: list[dict[str, Any]] = [
            {"action": "search", "series": series_path(dicom_store, searched), "requestId": "phi-search"},
            {
                "action": "retrieve",
                "series": series_path(dicom_store, searched),
                "requestId": "phi-retrieve",
                "options": {"includeMetadata": True},
            },
            {"action": "archive", "series": series_path(dicom_store, archived), "requestId": "phi-archive"},
            {"action": "search", "series": series_path(dicom_store, refused), "requestId": "phi-refused"},
        ]
        for message in messages:
            deployment.publish(message)
        figures.messages += len(messages)
        events = {e.data["requestId"]: e for e in deployment.pull_events(len(messages), timeout=60)}
        assert deployment.no_more_events(wait=1.0) == []
    finally:
        proxy.stop()

    # The PHI was there to leak: the searches returned it, the metadata copy holds it.
    assert any(
        PATIENT_NAME.encode() in body and PHI_PATIENT_ID.encode() in body for body in proxy.search_bodies
    )
    assert events["phi-search"].data["status"] == "succeeded", events["phi-search"].data
    assert events["phi-search"].data["instanceCount"] == 3
    assert events["phi-retrieve"].data["status"] == "succeeded", events["phi-retrieve"].data
    assert events["phi-archive"].data["status"] == "succeeded", events["phi-archive"].data
    assert events["phi-refused"].data["status"] == "failed"
    assert events["phi-refused"].data["error"]["code"] == "source_refused"
    assert_copied(storage_client, bucket, "phi", archived, stowed[archived.series_uid], figures)
    metadata_copy = storage_client.bucket(bucket).blob(f"{folder('phi', searched)}/metadata.json")
    everything = {PATIENT_NAME, "Doe^Jane", PHI_PATIENT_ID, PHI_BIRTH_DATE}
    assert set(phi_found(metadata_copy.download_as_bytes().decode())) == everything  # the detector works

    leaks: dict[str, list[str]] = {}
    log = deployment.function.log_text()
    leaks["function log"] = phi_found(log)
    for request_id, event in events.items():
        leaks[f"event {request_id}"] = phi_found(
            event.raw.decode("utf-8", "replace") + json.dumps(event.attributes)
        )
    for name, blob in list_bucket(storage_client, bucket).items():
        leaks[f"object {name}"] = phi_found(name + json.dumps(blob.metadata or {}) + str(blob.content_type))
    assert {where: found for where, found in leaks.items() if found} == {}
    assert unstructured_lines(log) == []
    assert "request started" in log  # the log was read, and it is the worker's


# --------------------------------------------------------------------------------------------------
# Last: every log line of every function this module ran
# --------------------------------------------------------------------------------------------------


def test_every_function_log_line_is_structured(figures: Figures) -> None:
    for deployment in figures.deployments:
        log = deployment.function.log_text()
        assert unstructured_lines(log) == [], deployment.function.log_path
        assert phi_found(log) == [], deployment.function.log_path
