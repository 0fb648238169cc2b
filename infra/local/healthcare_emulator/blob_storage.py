"""Storage classes inside a DICOM store: the request of ``dicomStores.setBlobStorageSettings`` and its filter
file, and the answer of ``...instances.getStorageInfo``.

As documented (``SetBlobStorageSettingsRequest``, ``DicomFilterConfig``): with ``filterConfig`` the
resource is the store, and ``resourcePathsGcsUri`` (``gs://bucket/path/to/object``, no wildcard) names a
file of resource paths ``/studies/{study}[/series/{series}[/instances/{instance}]]`` separated by ``\\n``
or ``\\r\\n``, which the Healthcare service agent reads from Cloud Storage. Every instance starts in
``STANDARD``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .dicom import JsonDict
from .errors import ApiError
from .gcs_import import ImportFailed
from .records import Instance

SET_BLOB_STORAGE_METHOD = "google.cloud.healthcare.v1.dicom.DicomService.SetBlobStorageSettings"
SET_BLOB_STORAGE_RESPONSE_TYPE = (
    "type.googleapis.com/google.cloud.healthcare.v1.dicom.SetBlobStorageSettingsResponse"
)
STORAGE_CLASSES = frozenset({"STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"})
_GCS_OBJECT = re.compile(r"gs://([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])/([^*?\[\]]+)")
_UID = r"[0-9]+(?:\.[0-9]+)*"
_RESOURCE = re.compile(rf"/studies/({_UID})(?:/series/({_UID})(?:/instances/({_UID}))?)?")

Resource = tuple[str, str | None, str | None]  # (study, series or None, instance or None)


@dataclass(frozen=True)
class BlobStorageRequest:
    storage_class: str
    bucket: str
    name: str  # the filter file's object name


def parse_set_blob_storage_request(body: bytes) -> BlobStorageRequest:
    """A ``SetBlobStorageSettingsRequest`` on a store: a class and a filter file; ApiError 400 otherwise."""
    try:
        spec: Any = json.loads(body) if body.strip() else {}
    except ValueError as exc:
        raise ApiError(400, f"Invalid JSON payload received. {exc}") from exc
    if not isinstance(spec, dict):
        raise ApiError(
            400, "Invalid JSON payload received. The request must be a SetBlobStorageSettingsRequest."
        )
    _no_unknown(spec, {"blobStorageSettings", "filterConfig"}, "")
    settings = spec.get("blobStorageSettings", {})
    if not isinstance(settings, dict):
        raise ApiError(400, "Invalid JSON payload received. blobStorageSettings must be an object.")
    _no_unknown(settings, {"blobStorageClass"}, "blobStorageSettings.")
    storage_class = settings.get("blobStorageClass", "BLOB_STORAGE_CLASS_UNSPECIFIED")
    if storage_class == "BLOB_STORAGE_CLASS_UNSPECIFIED":
        raise ApiError(400, "blobStorageSettings.blobStorageClass must be specified")
    if storage_class not in STORAGE_CLASSES:
        raise ApiError(400, f"Invalid value at 'blob_storage_settings.blob_storage_class': {storage_class!r}")
    config = spec.get("filterConfig")
    if not isinstance(config, dict):
        raise ApiError(400, "filterConfig is required when the resource is a DICOM store")
    _no_unknown(config, {"resourcePathsGcsUri"}, "filterConfig.")
    uri = config.get("resourcePathsGcsUri")
    match = _GCS_OBJECT.fullmatch(uri) if isinstance(uri, str) else None
    if match is None:
        raise ApiError(400, "filterConfig.resourcePathsGcsUri must be gs://bucket/path/to/object")
    return BlobStorageRequest(storage_class, match[1], match[2])


def parse_filter(data: bytes) -> list[Resource]:
    """The resource paths of a filter file, one a line (``\\n`` or ``\\r\\n``; blank lines skipped);
    ImportFailed(3) naming the first line that is not a resource path."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ImportFailed(3, "the filter file is not UTF-8 text") from None
    resources: list[Resource] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        match = _RESOURCE.fullmatch(line)
        if match is None:
            raise ImportFailed(3, f"line {number} of the filter file is not a DICOM resource path")
        resources.append((match[1], match[2], match[3]))
    if not resources:
        raise ImportFailed(3, "the filter file names no resource")
    return resources


def storage_info(store_name: str, inst: Instance) -> JsonDict:
    """A ``StorageInfo`` of one instance."""
    blob: JsonDict = {"sizeBytes": str(inst.size), "storageClass": inst.storage_class}
    if inst.storage_class_update_time is not None:
        blob["storageClassUpdateTime"] = inst.storage_class_update_time
    return {
        "referencedResource": (
            f"{store_name}/dicomWeb/studies/{inst.study}/series/{inst.series}/instances/{inst.sop}"
        ),
        "blobStorageInfo": blob,
        "structuredStorageInfo": {"sizeBytes": str(64 * len(inst.base_attrs))},
    }


def _no_unknown(obj: dict[str, Any], known: set[str], where: str) -> None:
    for key in obj:
        if key not in known:
            raise ApiError(
                400, f'Invalid JSON payload received. Unknown name "{where}{key}": Cannot find field.'
            )
