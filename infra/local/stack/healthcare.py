"""The Cloud Healthcare API emulator (``python -m infra.local.healthcare_emulator``) as a managed process."""

from __future__ import annotations

import sys
from pathlib import Path

from .processes import (
    DEFAULT_READY_TIMEOUT,
    LOOPBACK,
    REPO_ROOT,
    ManagedProcess,
    StackError,
    base_env,
    free_port,
    loopback_session,
)

HEALTHCARE_EMULATOR_MODULE = "infra.local.healthcare_emulator"
# The emulator package's entry point for ``python -m``.
HEALTHCARE_EMULATOR_ENTRY_POINT = REPO_ROOT / "infra" / "local" / "healthcare_emulator" / "__main__.py"


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
        storage_url: str | None = None,
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
        self.storage_url = storage_url  # what dicomStores.import reads: fake-gcs-server itself, no front
        self.python = str(python or sys.executable)
        self._session = loopback_session()

    @staticmethod
    def available() -> bool:
        return HEALTHCARE_EMULATOR_ENTRY_POINT.exists()

    def spawn(self) -> None:
        if not self.available():
            raise StackError(
                f"the Healthcare API emulator is missing: {HEALTHCARE_EMULATOR_ENTRY_POINT} does not exist"
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
        if self.storage_url is not None:
            command += ["--storage-url", self.storage_url]
        self._spawn(command, base_env({"PYTHONUNBUFFERED": "1"}), REPO_ROOT)

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        self.wait_answering(
            self._session, self.admin_url + "/emulator/faults", lambda r: r.status_code == 200, "200", timeout
        )

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
