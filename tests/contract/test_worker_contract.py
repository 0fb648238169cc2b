"""Every request the worker makes to the Healthcare API is a documented method of Google's discovery
document (``healthcare.v1.json``), with the same HTTP verb.

The worker's DICOMweb adapter (``worker/dicomweb.py``, where every Healthcare API URL is built) runs against
the emulator in-process; the emulator's request log shows each request as sent, and each must match
exactly the documented method expected of that call. Every public method of the adapter must be driven
here: a new one fails this test until it is added to ``CALLS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.local.dicom_factory import make_instance
from infra.local.healthcare_emulator import HealthcareEmulator, start_emulator
from worker.dicomweb import DicomWebClient
from worker.errors import PermanentError
from worker.http_exchange import build_transport
from worker.models import DicomStore, SeriesRef
from worker.settings import Auth, Settings

from .discovery import documented

STORE = DicomStore("local-project", "us-central1", "dataset-1", "store-1")
SERIES = SeriesRef(STORE, "1.2.840.1", "1.2.840.1.2")
M = "healthcare.projects.locations.datasets"
NO_REQUEST = {"root", "store_root"}  # build URLs, send nothing


@dataclass
class Run:
    client: DicomWebClient
    emulator: HealthcareEmulator
    http: requests.Session
    operation: Any = None


def drain(parts: Any) -> int:
    return sum(len(chunk) for part in parts for chunk in part.iter_chunks())


def search_instances(run: Run) -> None:
    assert len(run.client.search_instances(SERIES, 2)) == 3  # pages of 2: three requests


def series_metrics(run: Run) -> None:
    metrics = run.client.series_metrics(SERIES)
    assert metrics is not None and metrics.instance_count == 3 and (metrics.blob_bytes or 0) > 0


def search_series_of_study(run: Run) -> None:
    assert run.client.search_series(STORE, SERIES.study_uid, {}, 10) == [SERIES]


def search_series_of_store(run: Run) -> None:
    assert run.client.search_series(STORE, None, {"Modality": "OT"}, 10) == [SERIES]


def search_series_page(run: Run) -> None:
    params = {"Modality": "OT", "StudyDate": "00010101-99991231"}  # a sweep's partition (worker.enumeration)
    assert run.client.search_series_page(STORE, params, 10, 0) == [SERIES]
    assert run.client.search_series_page(STORE, {"StudyDate": '""'}, 10, 0) == []  # the undated partition


def retrieve_instance(run: Run) -> None:
    for syntax in ("*", "1.2.840.10008.1.2.1"):
        with run.client.retrieve_instance(SERIES, f"{SERIES.series_uid}.1", syntax) as part:
            assert sum(len(chunk) for chunk in part.iter_chunks()) > 0


def retrieve_series(run: Run) -> None:
    for syntax in ("*", "1.2.840.10008.1.2.1"):
        with run.client.retrieve_series(SERIES, syntax) as parts:
            assert drain(parts) > 0


def metadata(run: Run) -> None:
    assert run.client.metadata(SERIES).startswith(b"[")


def store_instance(run: Run) -> None:
    sop = f"{SERIES.series_uid}.99"
    data = make_instance(SERIES.study_uid, SERIES.series_uid, sop, number=99)
    outcome = run.client.store_instance(SERIES, sop, iter([data]), len(data))
    assert str(outcome) == "stored"


def delete_instance(run: Run) -> None:
    assert run.client.delete_instance(SERIES, f"{SERIES.series_uid}.2") is True


def delete_series(run: Run) -> None:
    run.operation = run.client.delete_series(SERIES)
    assert run.operation is not None


def import_instances(run: Run) -> None:
    # This emulator reads no Cloud Storage (no --storage-url: it answers 501); the request is what counts.
    with pytest.raises(PermanentError):
        run.client.import_instances(STORE, "gs://archive/dicom/1.2/1.2.3/*.dcm")


def set_blob_storage_class(run: Run) -> None:
    # As for import: no Cloud Storage to read the filter file from (501); the request is what counts.
    with pytest.raises(PermanentError):
        run.client.set_blob_storage_class(STORE, "ARCHIVE", "gs://archive/dicom/1.2/1.2.3/tier-ARCHIVE.txt")


def instance_storage_class(run: Run) -> None:
    assert run.client.instance_storage_class(SERIES, f"{SERIES.series_uid}.1") == "STANDARD"


def get_operation(run: Run) -> None:
    assert run.client.get_operation(run.operation.name, STORE).name == run.operation.name


# (the adapter's method, the documented method each of its requests must be, how to drive it), in order.
CALLS: list[tuple[str, str, Callable[[Run], None]]] = [
    ("search_instances", f"{M}.dicomStores.studies.series.searchForInstances", search_instances),
    (
        "series_metrics",
        f"{M}.dicomStores.dicomWeb.studies.series.getSeriesMetrics",
        series_metrics,
    ),
    ("search_series", f"{M}.dicomStores.studies.searchForSeries", search_series_of_study),
    ("search_series", f"{M}.dicomStores.searchForSeries", search_series_of_store),
    ("search_series_page", f"{M}.dicomStores.searchForSeries", search_series_page),
    ("retrieve_instance", f"{M}.dicomStores.studies.series.instances.retrieveInstance", retrieve_instance),
    ("retrieve_series", f"{M}.dicomStores.studies.series.retrieveSeries", retrieve_series),
    ("metadata", f"{M}.dicomStores.studies.series.retrieveMetadata", metadata),
    ("store_instance", f"{M}.dicomStores.storeInstances", store_instance),
    ("delete_instance", f"{M}.dicomStores.studies.series.instances.delete", delete_instance),
    ("delete_series", f"{M}.dicomStores.studies.series.delete", delete_series),
    ("import_instances", f"{M}.dicomStores.import", import_instances),
    ("set_blob_storage_class", f"{M}.dicomStores.setBlobStorageSettings", set_blob_storage_class),
    (
        "instance_storage_class",
        f"{M}.dicomStores.dicomWeb.studies.series.instances.getStorageInfo",
        instance_storage_class,
    ),
    ("get_operation", f"{M}.operations.get", get_operation),
]


@pytest.fixture
def run(tmp_path: Path) -> Any:
    emulator = start_emulator("127.0.0.1", 0, tmp_path / "data", operation_delay=0.2)
    settings = Settings(healthcare_api_url=emulator.api_root, dicomweb_auth=Auth.NONE, retry_total=0)
    try:
        with requests.Session() as http:
            http.trust_env = False
            admin = f"{emulator.url}/emulator"
            assert http.post(f"{admin}/stores", json={"name": STORE.name}, timeout=10).ok
            seed = {"store": STORE.name, "study": SERIES.study_uid, "series": SERIES.series_uid, "count": 3}
            assert http.post(f"{admin}/seed", json=seed, timeout=10).ok
            yield Run(DicomWebClient(settings, build_transport(settings)), emulator, http)
    finally:
        emulator.stop()


def test_every_adapter_method_is_driven() -> None:
    public = {
        name
        for name in dir(DicomWebClient)
        if not name.startswith("_") and callable(getattr(DicomWebClient, name))
    }
    driven = {name for name, _, _ in CALLS}
    assert public - NO_REQUEST <= driven, f"drive these in CALLS: {sorted(public - NO_REQUEST - driven)}"


def test_every_request_of_the_worker_is_a_documented_method(run: Run) -> None:
    seen = 0
    for name, expected, call in CALLS:
        if not hasattr(DicomWebClient, name):
            continue  # not (yet) a method of the adapter
        call(run)
        log = run.http.get(f"{run.emulator.url}/emulator/requests", timeout=10).json()
        new, seen = log[seen:], len(log)
        assert new, f"{name} sent no request"
        for entry in new:
            # This emulator has no Cloud Storage to import from: it answers import with 501 (not
            # configured), after routing it; every other request must succeed.
            reads_storage = name in ("import_instances", "set_blob_storage_class")
            assert entry["status"] < 400 or (reads_storage and entry["status"] == 501), (
                name,
                entry,
            )
            assert documented(entry["method"], entry["path"]) == [expected], (name, entry)
