"""Session fixtures for the real local stack (infra/local/stack/).

* ``stack`` (session): Pub/Sub emulator, fake-gcs-server and, once it exists, the Healthcare API emulator,
  started once per session in a temporary run directory; exports ``STORAGE_EMULATOR_HOST`` and
  ``PUBSUB_EMULATOR_HOST`` into ``os.environ`` for the session.
* ``bucket`` (function): a fresh, uniquely named bucket on fake-gcs-server (its name).
* ``healthcare`` (session): the stack's :class:`HealthcareEmulator`; skips while the emulator does not exist.
* ``dicom_store`` (function): a fresh DICOM store on the Healthcare API emulator (its full resource name).
* ``deploy`` (function): ``deploy(env, **kwargs) -> Deployment`` as ``stack.deploy``; stopped after the test.
* ``orthanc`` (session): a real Orthanc with DICOMweb on loopback; skips when Orthanc is not installed, or
  fails instead when ``WORKER_REQUIRE_ORTHANC=1`` (CI sets it, so the Orthanc suite never silently skips).
* ``orthanc_basic`` (session): another Orthanc that requires basic authentication (``.auth``).

The stack is only started by tests that use these fixtures (mark them ``@pytest.mark.integration``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from infra.local.stack import (
    Deployment,
    HealthcareEmulator,
    Orthanc,
    Stack,
    install_signal_handlers,
)

LOOPBACK_NAMES = "127.0.0.1,localhost,::1"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    install_signal_handlers()  # SIGTERM/SIGHUP -> KeyboardInterrupt, so the teardown below still runs
    run_dir = tmp_path_factory.mktemp("stack")
    local = Stack(run_dir, healthcare=HealthcareEmulator.available())
    local.start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", local.gcs_url)
        patch.setenv("PUBSUB_EMULATOR_HOST", local.pubsub_host)
        for key in ("NO_PROXY", "no_proxy"):
            existing = os.environ.get(key)
            patch.setenv(key, f"{existing},{LOOPBACK_NAMES}" if existing else LOOPBACK_NAMES)
        try:
            yield local
        finally:
            local.stop()


@pytest.fixture
def bucket(stack: Stack) -> str:
    return stack.create_bucket(f"test-bucket-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def healthcare(stack: Stack) -> HealthcareEmulator:
    if stack.healthcare is None:
        pytest.skip("the Healthcare API emulator (infra/local/healthcare_emulator) does not exist yet")
    return stack.healthcare


@pytest.fixture
def dicom_store(healthcare: HealthcareEmulator) -> str:
    name = f"projects/local-project/locations/local/datasets/tests/dicomStores/store-{uuid.uuid4().hex[:12]}"
    return healthcare.create_store(name)


@pytest.fixture
def deploy(stack: Stack) -> Iterator[Callable[..., Deployment]]:
    deployments: list[Deployment] = []

    def make(env: Mapping[str, str] | None = None, **kwargs: Any) -> Deployment:
        deployment = stack.deploy(env or {}, **kwargs)
        deployments.append(deployment)
        return deployment

    yield make
    for deployment in deployments:
        deployment.stop()


def _orthanc_or_skip() -> None:
    """Skip when Orthanc is missing; fail instead with WORKER_REQUIRE_ORTHANC=1 (CI), never skip silently."""
    reason = Orthanc.unavailable_reason()
    if reason is None:
        return
    if os.environ.get("WORKER_REQUIRE_ORTHANC") == "1":
        pytest.fail(f"WORKER_REQUIRE_ORTHANC=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    _orthanc_or_skip()
    install_signal_handlers()
    server = Orthanc(Path(tmp_path_factory.mktemp("orthanc")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


ORTHANC_USER = "worker"
ORTHANC_PASSWORD = "s3cret:with-colon"  # a colon, as basic auth must carry it through unchanged


@pytest.fixture(scope="session")
def orthanc_basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """A second Orthanc that requires basic authentication (``orthanc_basic.auth`` holds the credentials)."""
    _orthanc_or_skip()
    install_signal_handlers()
    server = Orthanc(
        Path(tmp_path_factory.mktemp("orthanc-basic")), username=ORTHANC_USER, password=ORTHANC_PASSWORD
    )
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout=0.5)  # throwaway data: SIGKILL after 0.5 s instead of the 4.5 s clean exit
