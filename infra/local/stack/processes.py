"""Process plumbing of the local stack: constants, loopback helpers and :class:`ManagedProcess`.

Every process is started in its own process group (``start_new_session=True``), logs to a file in the run
directory and is stopped by signalling its whole group; an ``atexit`` handler kills whatever is still running.
Nothing here talks to anything but 127.0.0.1: HTTP sessions ignore proxy settings from the environment.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Self

import requests

REPO_ROOT = Path(__file__).resolve().parents[3]
LOOPBACK = "127.0.0.1"
PROJECT = "local-project"
DEFAULT_READY_TIMEOUT = 30.0
# Variables copied from the parent environment into every child; nothing else is inherited (no credentials).
INHERITED_ENV = ("PATH", "HOME", "LANG")


class StackError(RuntimeError):
    """A component could not be found, started or reached."""


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

    def spawn(self) -> None:
        """Start the process, without waiting for it to be ready (each component says how)."""
        raise NotImplementedError

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        """Wait until the process serves (each component says how)."""
        raise NotImplementedError

    def start(self, timeout: float = DEFAULT_READY_TIMEOUT) -> Self:
        """``spawn()``, then ``wait_ready(timeout)``."""
        self.spawn()
        self.wait_ready(timeout)
        return self

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

    def wait_answering(
        self,
        session: requests.Session,
        url: str,
        accept: Callable[[requests.Response], bool],
        answer: str,
        timeout: float,
    ) -> None:
        """Poll ``GET url`` until ``accept`` takes the response (``answer`` names it), as ``wait_until``."""
        self.wait_until(lambda: accept(session.get(url, timeout=2)), timeout, f"answering {answer} on {url}")

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
