"""The external systems an action talks to, as typed ports: what the actions need of each, and nothing else.

The real adapters are `worker.dicomweb.DicomWebClient`, `worker.storage.Storage` and
`worker.pubsub.Publisher`; tests pass typed fakes. The actions see only these protocols.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from worker.models import (
    DicomStore,
    GcsLocation,
    Instance,
    Operation,
    SeriesMetrics,
    SeriesRef,
    StoredObject,
    Stow,
)


class Part(Protocol):
    """One instance of a retrieve response: its part headers and its bytes, streamed."""

    headers: Mapping[str, str]

    def iter_chunks(self) -> Iterator[bytes]: ...


class DicomWebSource(Protocol):
    """Search, retrieve, store and delete on one configured DICOMweb server (raises worker errors only)."""

    @property
    def healthcare(self) -> bool: ...

    def root(self, series: SeriesRef) -> str: ...

    def search_instances(self, series: SeriesRef, page_size: int) -> list[Instance]: ...

    def series_metrics(self, series: SeriesRef) -> SeriesMetrics | None: ...

    def search_series(
        self, store: DicomStore | None, study_uid: str | None, filters: Mapping[str, str], page_size: int
    ) -> list[SeriesRef]: ...

    def search_series_page(
        self, store: DicomStore | None, params: Mapping[str, str], limit: int, offset: int
    ) -> list[SeriesRef]: ...

    def retrieve_instance(
        self, series: SeriesRef, sop_uid: str, transfer_syntax: str, *, deadline: float | None = None
    ) -> contextlib.AbstractContextManager[Part]: ...

    def retrieve_series(
        self, series: SeriesRef, transfer_syntax: str, *, deadline: float | None = None
    ) -> contextlib.AbstractContextManager[Iterator[Part]]: ...

    def metadata(self, series: SeriesRef) -> bytes: ...

    def store_instance(
        self,
        series: SeriesRef,
        sop_uid: str,
        chunks: Iterator[bytes],
        size: int,
        *,
        deadline: float | None = None,
    ) -> Stow: ...

    def delete_series(self, series: SeriesRef) -> Operation | None: ...

    def delete_instance(self, series: SeriesRef, sop_uid: str) -> bool: ...

    def get_operation(self, name: str, store: DicomStore) -> Operation: ...

    def import_instances(self, store: DicomStore, uri: str) -> Operation: ...

    def set_blob_storage_class(self, store: DicomStore, storage_class: str, filter_uri: str) -> Operation: ...

    def instance_storage_class(self, series: SeriesRef, sop_uid: str) -> str | None: ...


class ObjectStore(Protocol):
    """Create-only writes and reads of one object store (raises worker errors only)."""

    def stat(self, bucket: str, name: str) -> StoredObject | None: ...

    def list(self, location: GcsLocation) -> Iterator[StoredObject]: ...

    def upload(
        self,
        bucket: str,
        name: str,
        chunks: Iterator[bytes],
        *,
        metadata: Mapping[str, str],
        content_type: str = ...,
        size: int | None = ...,
    ) -> StoredObject: ...

    def write_json(self, bucket: str, name: str, body: Any) -> StoredObject: ...

    def json_versions(self, bucket: str, name: str) -> builtins.list[StoredObject]: ...

    def read_json(self, bucket: str, name: str) -> Any: ...

    def read(self, bucket: str, name: str, generation: int) -> Iterator[bytes]: ...


class EventPublisher(Protocol):
    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str: ...

    def publish_batch(self, topic: str, messages: Sequence[tuple[bytes, Mapping[str, str]]]) -> int: ...


@dataclass(frozen=True)
class Ports:
    """The one bundle of external systems a worker runs with."""

    dicomweb: DicomWebSource
    storage: ObjectStore
    publisher: EventPublisher
