"""Orthanc with its DICOMweb plugin as a managed process, kept on loopback by the bind_loopback shim."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import requests

from .processes import (
    DEFAULT_READY_TIMEOUT,
    LOOPBACK,
    ManagedProcess,
    StackError,
    base_env,
    free_port,
    loopback_session,
)

BIND_LOOPBACK_SOURCE = Path(__file__).resolve().parents[1] / "bind_loopback.c"
ORTHANC_BINARY = Path("/usr/sbin/Orthanc")


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
        self.wait_answering(
            self._session, self.url + "/system", lambda r: r.status_code == 200, "200", timeout
        )

    def session(self) -> requests.Session:
        """A loopback session with this server's credentials."""
        session = loopback_session()
        session.auth = self.auth
        return session
