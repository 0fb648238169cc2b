"""The Healthcare API emulator against Google's discovery document (``healthcare.v1.json``): every route it
serves is a documented method (path template and HTTP verb), it serves nothing else, and its operations,
import request bodies and series metrics have the documented shapes."""

from __future__ import annotations

import json
import time
from typing import Any

import jsonschema
import pytest

from infra.local.dicom_factory import make_instance
from infra.local.healthcare_emulator.errors import ApiError
from infra.local.healthcare_emulator.gcs_import import parse_import_request
from infra.local.healthcare_emulator.routes import ROUTES, resolve

from .conftest import STORE, Api
from .discovery import documented, json_schema, methods, normalized

DICOM_METHODS = (
    "healthcare.projects.locations.datasets.dicomStores.",
    "healthcare.projects.locations.datasets.operations.",
)
# Documented methods the emulator does not serve (a path of theirs answers 404 or 405).
NOT_EMULATED = {
    f"healthcare.projects.locations.datasets.{name}"
    for name in (
        "dicomStores.create",
        "dicomStores.deidentify",
        "dicomStores.delete",
        "dicomStores.export",
        "dicomStores.get",
        "dicomStores.getDICOMStoreMetrics",
        "dicomStores.getIamPolicy",
        "dicomStores.list",
        "dicomStores.patch",
        "dicomStores.setIamPolicy",
        "dicomStores.testIamPermissions",
        "dicomStores.dicomWeb.studies.getStudyMetrics",
        "dicomStores.dicomWeb.studies.setBlobStorageSettings",
        "operations.cancel",
        "operations.list",
    )
}
SAMPLES = {"studiesId": "1.2", "seriesId": "1.2.3", "instancesId": "1.2.3.4", "framesId": "1"}
IMPORT_METHOD = "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData"


def sample_path(template: str) -> str:
    """A concrete path of a flatPath or route template: each placeholder filled with a plausible value."""
    out = template
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        name = out[start + 1 : end]
        out = out[:start] + SAMPLES.get(name, f"x{start}") + out[end + 1 :]
    return out


def in_scope(method_id: str) -> bool:
    return method_id.startswith(DICOM_METHODS)


# ------------------------------------------------------------------------------------------------ routes


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: f"{route.method} {route.google_method}")
def test_every_route_is_the_documented_method_it_names(route: Any) -> None:
    method = methods()[route.google_method]
    assert route.method == method.http_method
    assert normalized(route.template) == normalized(method.flat_path)
    assert documented(route.method, sample_path(route.template)) == [route.google_method]


def test_the_router_serves_exactly_the_table() -> None:
    """Every documented DICOM method's path resolves to the route that names it, or is one the emulator
    knowingly does not serve; the table names no method twice with one verb and path."""
    scope = {method_id for method_id in methods() if in_scope(method_id)}
    assert scope >= NOT_EMULATED, sorted(NOT_EMULATED - scope)
    served: dict[str, str] = {}
    for method_id in sorted(scope):
        method = methods()[method_id]
        try:
            route, _ = resolve(method.http_method, sample_path(method.flat_path))
        except ApiError as error:
            assert error.status in (404, 405), (method_id, error.status)
            assert method_id in NOT_EMULATED, f"{method_id} is documented and not served"
            continue
        assert route.google_method == method_id
        served[method_id] = route.template
    assert not NOT_EMULATED & set(served), "listed as not emulated, yet served"
    assert {route.google_method for route in ROUTES} == set(served)
    keys = [(route.method, normalized(route.template)) for route in ROUTES]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(
    ("verb", "path"),
    [
        ("GET", "studies/1.2/series/1.2.3/instances/1.2.3.4/thumbnail"),  # no thumbnails on Google
        ("GET", "studies/1.2/series/1.2.3/instances/1.2.3.4/bulkdata/7FE00010"),  # one segment: not Google's
        ("GET", "series/1.2.3/instances"),
        ("GET", "studies/1.2/series/1.2.3/instances/1.2.3.4/frames"),
        ("PUT", "studies/1.2"),
        ("POST", "studies/1.2/series/1.2.3"),
        ("DELETE", "studies"),
    ],
)
def test_undocumented_requests_are_not_served(api: Api, verb: str, path: str) -> None:
    full = f"v1/{STORE}/dicomWeb/{path}"
    assert documented(verb, full) == []
    with pytest.raises(ApiError) as refused:
        resolve(verb, full)
    assert refused.value.status in (404, 405)
    answer = api.http.request(verb, f"{api.url}/{full}", timeout=10)  # the server routes by the table
    assert answer.status_code == refused.value.status


# ------------------------------------------------------------------------------------------------ shapes


def check(schema_name: str, value: object) -> None:
    jsonschema.Draft202012Validator(json_schema(schema_name)).validate(value)


def check_operation(op: dict[str, Any], response_schema: str) -> None:
    """An Operation, its OperationMetadata, and once done exactly one of error (a Status) or response."""
    check("Operation", op)
    check("OperationMetadata", op["metadata"])
    assert op["metadata"]["@type"] == "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata"
    assert op["name"].startswith(STORE.rsplit("/dicomStores/", 1)[0] + "/operations/")
    if op.get("done"):
        assert ("error" in op) != ("response" in op), op
        if "error" in op:
            check("Status", op["error"])
        else:
            check(response_schema, op["response"])
    else:
        assert "error" not in op and "response" not in op


def follow(api: Api, started: dict[str, Any], response_schema: str) -> dict[str, Any]:
    """Check the operation as started, while it runs and once done (returned)."""
    check_operation(started, response_schema)
    deadline = time.monotonic() + 10
    while True:
        op: dict[str, Any] = api.http.get(f"{api.url}/v1/{started['name']}", timeout=10).json()
        check_operation(op, response_schema)
        if op.get("done") or time.monotonic() > deadline:
            return op
        time.sleep(0.05)


def test_delete_operations_have_the_documented_shape(api: Api) -> None:
    api.admin("POST", "seed", {"store": STORE, "study": "1.2", "series": "1.2.3", "count": 2})
    root = f"{api.url}/v1/{STORE}/dicomWeb"
    done = follow(api, api.http.delete(f"{root}/studies/1.2/series/1.2.3", timeout=10).json(), "Empty")
    assert done["done"] is True and done["metadata"]["counter"] == {"success": "2"}
    api.admin("POST", "config", {"absentDelete": "operation"})
    failed = follow(api, api.http.delete(f"{root}/studies/1.2/series/1.2.3", timeout=10).json(), "Empty")
    assert failed["error"]["code"] == 5


def test_import_operations_and_bodies_have_the_documented_shape(api: Api) -> None:
    api.upload("a/1.dcm", make_instance("1.5", "1.5.1", "1.5.1.1"))
    api.upload("a/b/2.dcm", make_instance("1.5", "1.5.1", "1.5.1.2"))
    api.upload("a/b/notes.txt", b"not DICOM")
    outcomes = []
    for pattern in ("a/**.dcm", "a/**", "none/*.dcm"):
        body = {"gcsSource": {"uri": f"gs://{api.bucket}/{pattern}"}}
        check("ImportDicomDataRequest", body)
        started = api.http.post(f"{api.url}/v1/{STORE}:import", json=body, timeout=10)
        assert started.status_code == 200, started.text
        op = follow(api, started.json(), "ImportDicomDataResponse")
        assert op["metadata"]["apiMethodName"] == IMPORT_METHOD
        outcomes.append((op["metadata"]["counter"], op.get("error", {}).get("code")))
    assert outcomes == [({"success": "2"}, None), ({"success": "2", "failure": "1"}, 3), ({}, 5)]


@pytest.mark.parametrize(
    "body",
    [
        {"gcsSource": {"uri": "gs://b-1/a/**.dcm"}},
        {"gcsSource": {"uri": "gs://b-1/a/*.dcm"}, "blobStorageSettings": {"blobStorageClass": "ARCHIVE"}},
        {"gcsSource": {"uri": "gs://b-1/a/x.dcm"}, "blobStorageSettings": {}},
        {"gcsSource": {"uri": "gs://b-1/a/**.dcm", "mimeType": "application/dicom"}},
        {"gcsSource": {"uri": "gs://b-1/a/**.dcm"}, "gcsDestination": {"uriPrefix": "gs://b-1/x"}},
        {"gcsSource": {"uri": "gs://b-1/a/**.dcm"}, "blobStorageSettings": {"blobStorageClass": "COLD"}},
        {"gcsSource": {"uri": ["gs://b-1/a/**.dcm"]}},
        {"gcsSource": {"uri": 7}},
    ],
)
def test_the_emulator_takes_exactly_the_import_bodies_the_schema_allows(body: dict[str, Any]) -> None:
    """For bodies that name a valid gs:// URI (a required value the schema cannot express), the emulator
    accepts an ImportDicomDataRequest exactly when the discovery schema does."""
    schema_ok = jsonschema.Draft202012Validator(json_schema("ImportDicomDataRequest")).is_valid(body)
    try:
        parse_import_request(json.dumps(body).encode())
        emulator_ok = True
    except ApiError as error:
        assert error.status == 400
        emulator_ok = False
    assert emulator_ok == schema_ok


def test_series_metrics_have_the_documented_shape(api: Api) -> None:
    api.admin("POST", "seed", {"store": STORE, "study": "1.2", "series": "1.2.3", "count": 3})
    resp = api.http.get(
        f"{api.url}/v1/{STORE}/dicomWeb/studies/1.2/series/1.2.3:getSeriesMetrics", timeout=10
    )
    assert resp.status_code == 200
    check("SeriesMetrics", resp.json())
    assert resp.json()["instanceCount"] == "3"


def test_blob_storage_operations_and_storage_info_have_the_documented_shape(api: Api) -> None:
    api.admin("POST", "seed", {"store": STORE, "study": "1.2", "series": "1.2.3", "count": 2})
    api.upload("filters/tier.txt", b"/studies/1.2/series/1.2.3\n")
    body = {
        "blobStorageSettings": {"blobStorageClass": "ARCHIVE"},
        "filterConfig": {"resourcePathsGcsUri": f"gs://{api.bucket}/filters/tier.txt"},
    }
    check("SetBlobStorageSettingsRequest", body)
    started = api.http.post(f"{api.url}/v1/{STORE}:setBlobStorageSettings", json=body, timeout=10)
    assert started.status_code == 200, started.text

    op = follow(api, started.json(), "SetBlobStorageSettingsResponse")

    assert op["metadata"]["apiMethodName"].endswith("SetBlobStorageSettings")
    assert "error" not in op
    url = f"{api.url}/v1/{STORE}/dicomWeb/studies/1.2/series/1.2.3/instances/1.2.3.1:getStorageInfo"
    info = api.http.get(url, timeout=10).json()
    check("StorageInfo", info)
    assert info["blobStorageInfo"]["storageClass"] == "ARCHIVE"
