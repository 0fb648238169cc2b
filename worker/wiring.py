"""Wiring: the real clients, built once per process from Settings."""

from __future__ import annotations

import ctypes

from worker.delivery import Worker
from worker.dicomweb import DicomWebClient
from worker.http_exchange import build_transport
from worker.job import ActionFunction
from worker.ports import Ports
from worker.pubsub import Publisher
from worker.request import Action
from worker.settings import Settings
from worker.storage import Storage

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def actions() -> dict[Action, ActionFunction]:
    from worker.archive import archive
    from worker.delete import delete
    from worker.restore import restore
    from worker.retrieve import retrieve
    from worker.search import search
    from worker.tier import tier
    from worker.verify import verify

    return {
        Action.SEARCH: search,
        Action.RETRIEVE: retrieve,
        Action.DELETE: delete,
        Action.ARCHIVE: archive,
        Action.RESTORE: restore,
        Action.VERIFY: verify,
        Action.TIER: tier,
    }


def storage_client(settings: Settings) -> Storage:
    from google.cloud import storage
    from requests.adapters import HTTPAdapter

    client = storage.Client()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=settings.concurrency + 4)
    client._http.mount("https://", adapter)  # the default pool of 10 is smaller than our concurrency
    client._http.mount("http://", adapter)
    client._http.trust_env = False  # as build_transport: no proxies or .netrc from the environment
    budget = settings.upload_buffer_mib * 1024 * 1024
    return Storage(client, budget, connections=settings.concurrency + 4)


def return_large_buffers_to_the_system() -> None:
    """Have glibc serve buffers of 1 MiB and more with mmap, so they go back to the system when freed.

    Without it, CONCURRENCY threads allocating multi-MB upload buffers fragment glibc's per-thread arenas
    and its dynamic threshold rises to 32 MiB after the first large free: RSS then grows with the length
    of the series (measured by bench/: +142 MiB from a 100 MB to a 2 GB series; about half with this)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 1024 * 1024)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return


def build_worker(settings: Settings | None = None) -> Worker:
    return_large_buffers_to_the_system()
    settings = settings or Settings.from_env()
    dicomweb = DicomWebClient(settings, build_transport(settings), build_transport(settings, delete=True))
    from worker.sweep import sweep

    return Worker(settings, Ports(dicomweb, storage_client(settings), Publisher()), actions(), sweep=sweep)
