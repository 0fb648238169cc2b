"""Frozen, validated values: what a request names, and what the worker found.

Everything that reaches a URL or an object name passes through these constructors, so a message cannot
smuggle a path trick (`..`, `%2e`, `/`, `?`, `#`, whitespace) into a request to the DICOMweb server or
into a bucket path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from worker.errors import InvalidValue, RetryableError

DICOMWEB_STORE = "dicomweb"  # how the DICOMWEB_URL server is named where a Healthcare store name goes
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_PROJECT = re.compile(r"(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,61}[a-z0-9]")
_LOCATION = re.compile(r"[a-z][a-z0-9-]{0,62}")
_HEALTHCARE_ID = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_OBJECT_COMPONENT = re.compile(r"[A-Za-z0-9_.=+@,-]{1,256}")


def is_uid(value: object) -> bool:
    """A DICOM UID: digits and dots, at most 64 characters, no empty component."""
    return isinstance(value, str) and len(value) <= 64 and _UID.fullmatch(value) is not None


def check_uid(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"{field} must be a string")
    if not is_uid(value):
        raise InvalidValue(f"{field} is not a DICOM UID (digits and dots, at most 64 characters)")
    return value


def _check_id(value: object, field: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"{field} must be a string")
    if not pattern.fullmatch(value) or value in {".", ".."}:
        raise InvalidValue(f"{field} has characters outside those allowed for it")
    return value


@dataclass(frozen=True)
class DicomStore:
    """A Healthcare API DICOM store, `projects/p/locations/l/datasets/d/dicomStores/s`."""

    project: str
    location: str
    dataset: str
    store: str

    def __post_init__(self) -> None:
        _check_id(self.project, "projectsId", _PROJECT)
        _check_id(self.location, "locationsId", _LOCATION)
        _check_id(self.dataset, "datasetsId", _HEALTHCARE_ID)
        _check_id(self.store, "dicomStoresId", _HEALTHCARE_ID)

    @property
    def name(self) -> str:
        return (
            f"projects/{self.project}/locations/{self.location}/datasets/{self.dataset}"
            f"/dicomStores/{self.store}"
        )

    @property
    def dataset_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/datasets/{self.dataset}"

    @classmethod
    def parse(cls, name: str) -> DicomStore:
        parts = name.split("/")
        if len(parts) != 8 or parts[0::2] != ["projects", "locations", "datasets", "dicomStores"]:
            raise InvalidValue("a DICOM store is projects/{p}/locations/{l}/datasets/{d}/dicomStores/{s}")
        return cls(parts[1], parts[3], parts[5], parts[7])


@dataclass(frozen=True)
class SeriesRef:
    """One series: in a Healthcare API store, or (store None) under the configured DICOMWEB_URL."""

    store: DicomStore | None
    study_uid: str
    series_uid: str

    def __post_init__(self) -> None:
        check_uid(self.study_uid, "StudyInstanceUID")
        check_uid(self.series_uid, "SeriesInstanceUID")

    @property
    def store_name(self) -> str:
        """The store's resource name, or `dicomweb` for the DICOMWEB_URL server (in events, metadata,
        manifests and the ALLOWED_DICOM_STORES patterns)."""
        return self.store.name if self.store is not None else DICOMWEB_STORE

    @property
    def dicomweb_path(self) -> str:
        """The path below a DICOMweb service root."""
        return f"studies/{self.study_uid}/series/{self.series_uid}"

    @property
    def source(self) -> str:
        """The path events report: the Healthcare resource path, or the DICOMweb-relative one."""
        if self.store is None:
            return self.dicomweb_path
        return f"{self.store.name}/dicomWeb/{self.dicomweb_path}"

    @classmethod
    def parse(cls, path: str) -> SeriesRef:
        """Parse `projects/.../dicomStores/s/dicomWeb/studies/X/series/Y` or `studies/X/series/Y`."""
        series, instance = _parse_dicomweb_path(path, want_instance=False)
        assert instance is None
        return series


def parse_instance_path(path: str) -> tuple[SeriesRef, str]:
    """Parse a store notification: `projects/.../dicomWeb/studies/X/series/Y/instances/Z`."""
    series, instance = _parse_dicomweb_path(path, want_instance=True)
    assert instance is not None
    return series, instance


def _parse_dicomweb_path(path: str, *, want_instance: bool) -> tuple[SeriesRef, str | None]:
    what = "an instance path" if want_instance else "a series path"
    if not isinstance(path, str):
        raise InvalidValue(f"{what} must be a string")
    if path.startswith("/"):
        path = path[1:]
    parts = path.split("/")
    store: DicomStore | None = None
    if parts[:1] == ["projects"]:
        if len(parts) < 9 or parts[8] != "dicomWeb":
            raise InvalidValue(f"{what} must contain .../dicomStores/{{s}}/dicomWeb/studies/...")
        store = DicomStore.parse("/".join(parts[:8]))
        parts = parts[9:]
    expected = ["studies", "series", "instances"] if want_instance else ["studies", "series"]
    if parts[0::2] != expected or len(parts) != 2 * len(expected):
        shape = "studies/{study}/series/{series}" + ("/instances/{sop}" if want_instance else "")
        raise InvalidValue(f"{what} must end with {shape}")
    series = SeriesRef(store, parts[1], parts[3])
    return series, check_uid(parts[5], "SOPInstanceUID") if want_instance else None


@dataclass(frozen=True)
class GcsLocation:
    """`gs://bucket/prefix`: where copies go. The prefix has no empty, `.` or `..` component."""

    bucket: str
    prefix: str

    def __post_init__(self) -> None:
        if not _BUCKET.fullmatch(self.bucket) or ".." in self.bucket:
            raise InvalidValue("destination bucket is not a valid Cloud Storage bucket name")
        if self.prefix:
            for component in self.prefix.split("/"):
                if not _OBJECT_COMPONENT.fullmatch(component) or component in {".", ".."}:
                    raise InvalidValue(
                        "destination prefix components may hold letters, digits and _.=+@,- only"
                        " (no empty, '.' or '..' components)"
                    )

    @classmethod
    def parse(cls, value: object, field: str = "destination") -> GcsLocation:
        if not isinstance(value, str):
            raise InvalidValue(f"{field} must be a gs:// URL string")
        if not value.startswith("gs://"):
            raise InvalidValue(f"{field} must be a gs://bucket/prefix URL")
        bucket, _, prefix = value[len("gs://") :].partition("/")
        return cls(bucket, prefix.rstrip("/"))

    def object_name(self, *components: str) -> str:
        return "/".join([self.prefix, *components] if self.prefix else components)

    def uri(self, name: str | None = None) -> str:
        return f"gs://{self.bucket}/{name if name is not None else self.prefix}"

    def within(self, allowed: GcsLocation) -> bool:
        """True when this location is the allowed one or below it (by whole path components)."""
        if self.bucket != allowed.bucket:
            return False
        return (
            not allowed.prefix
            or self.prefix == allowed.prefix
            or self.prefix.startswith(allowed.prefix + "/")
        )

    def __str__(self) -> str:
        return self.uri()


@dataclass(frozen=True)
class Instance:
    """What a search tells of one instance: UIDs and counts, never patient attributes."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str | None = None
    instance_number: int | None = None

    def __post_init__(self) -> None:
        check_uid(self.study_uid, "StudyInstanceUID")
        check_uid(self.series_uid, "SeriesInstanceUID")
        check_uid(self.sop_uid, "SOPInstanceUID")

    def as_event(self) -> dict[str, Any]:
        return {
            "sopInstanceUID": self.sop_uid,
            "sopClassUID": self.sop_class_uid,
            "instanceNumber": self.instance_number,
        }


@dataclass(frozen=True)
class StoredObject:
    """What Cloud Storage says of one object; crc32c is base64 of the big-endian value, as GCS gives it."""

    bucket: str
    name: str
    size: int
    crc32c: str
    generation: int
    metadata: Mapping[str, str]

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


@dataclass(frozen=True)
class Operation:
    """A Healthcare API long-running operation, as far as the worker needs it."""

    name: str
    done: bool
    error: dict[str, Any] | None

    @classmethod
    def from_json(cls, body: object) -> Operation:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise RetryableError("the operation response has no name")
        error = body.get("error")
        return cls(body["name"], bool(body.get("done")), error if isinstance(error, dict) else None)


@dataclass(frozen=True)
class SeriesMetrics:
    """The Healthcare API's own figures of a series (getSeriesMetrics); `blob_bytes` None when not given."""

    instance_count: int
    blob_bytes: int | None = None

    @property
    def average_instance_bytes(self) -> int | None:
        if self.blob_bytes is None or self.instance_count <= 0:
            return None
        return self.blob_bytes // self.instance_count


class Stow(StrEnum):
    """What a STOW-RS of one instance did."""

    STORED = "stored"  # the server stored it for this request
    PRESENT = "present"  # the server already held an instance with this SOP Instance UID (0x0111)
