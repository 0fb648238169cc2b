"""Wiring: the real clients, built once per process from Settings."""

from __future__ import annotations

from worker.app import ActionFunction, Worker
from worker.dicomweb import DicomWebClient, build_session
from worker.pubsub import Publisher
from worker.request import Action
from worker.settings import Settings
from worker.storage import Storage


def actions() -> dict[Action, ActionFunction]:
    from worker.delete import archive, delete
    from worker.retrieve import retrieve
    from worker.search import search

    return {Action.SEARCH: search, Action.RETRIEVE: retrieve, Action.DELETE: delete, Action.ARCHIVE: archive}


def storage_client(settings: Settings) -> Storage:
    from google.cloud import storage
    from requests.adapters import HTTPAdapter

    client = storage.Client()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=settings.concurrency + 4)
    client._http.mount("https://", adapter)  # the default pool of 10 is smaller than our concurrency
    client._http.mount("http://", adapter)
    return Storage(client)


def build_worker(settings: Settings | None = None) -> Worker:
    settings = settings or Settings.from_env()
    dicomweb = DicomWebClient(settings, build_session(settings), build_session(settings, delete=True))
    return Worker(
        settings,
        dicomweb,
        storage_client(settings),
        Publisher(),
        actions(),
        last_attempt=settings.max_delivery_attempts,
    )
