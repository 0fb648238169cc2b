"""The shared local components as one :class:`Stack`, and the deployments made on it."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .deployment import Deployment
from .function import DEFAULT_FUNCTION_SOURCE, DEFAULT_FUNCTION_TARGET
from .gcs import FakeGcs, GcsFront
from .healthcare import HealthcareEmulator
from .orthanc import Orthanc
from .processes import DEFAULT_READY_TIMEOUT, PROJECT, ManagedProcess, StackError
from .pubsub import PubSubEmulator


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
                # import reads as the Healthcare service agent, another principal than the function's:
                # fake-gcs-server itself, past the permission front
                storage_url=self.gcs.admin_url if self.gcs is not None else None,
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
        components = self.components
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
