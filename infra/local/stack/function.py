"""A Cloud Run function served by functions-framework as a managed process."""

from __future__ import annotations

import shutil
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from .processes import (
    DEFAULT_READY_TIMEOUT,
    LOOPBACK,
    REPO_ROOT,
    ManagedProcess,
    StackError,
    free_port,
    loopback_session,
)

DEFAULT_FUNCTION_SOURCE = REPO_ROOT / "main.py"
DEFAULT_FUNCTION_TARGET = "handle_series_request"


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
        self.wait_answering(self._session, self.url + "/", lambda r: True, "HTTP", timeout)

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
