"""The emulator's operations that read Cloud Storage: dicomStores.import and setBlobStorageSettings, as a
part of EmulatorState (its lock, stores, operations and configuration)."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .blob_storage import (
    SET_BLOB_STORAGE_METHOD,
    SET_BLOB_STORAGE_RESPONSE_TYPE,
    BlobStorageRequest,
    Resource,
    parse_filter,
)
from .dicom import DicomError, JsonDict, ParsedInstance, parse_part10
from .errors import ApiError
from .gcs_import import IMPORT_METHOD, IMPORT_RESPONSE_TYPE, GcsPattern, GcsReader, ImportFailed
from .records import Operation, Store

if TYPE_CHECKING:
    from .controls import Config


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _counter(success: int, failure: int, pending: int) -> dict[str, str]:
    """A ProgressCounter as proto3 JSON: int64 values as strings, zero values left out."""
    values = {"success": success, "failure": failure, "pending": pending}
    return {key: str(value) for key, value in values.items() if value}


class StorageOperations:
    """Operations of a store that read Cloud Storage (`storage`, the emulator's --storage-url)."""

    lock: threading.RLock
    config: Config
    storage: GcsReader | None
    stores: dict[str, Store]
    operations: dict[str, Operation]
    _op_ids: itertools.count[int]
    _closed: bool

    def store_instance(self, store: Store, parsed: ParsedInstance, data: bytes) -> None:
        raise NotImplementedError  # EmulatorState's

    # ---- imports from Cloud Storage

    def start_import(self, store: Store, source: GcsPattern) -> Operation:
        """Start ``dicomStores.import`` of the objects ``source`` matches; the operation is done once every
        object is read and at least the operation delay after its start."""
        storage = self._storage_for("import")
        op, not_before = self._start_store_operation(store, IMPORT_METHOD, IMPORT_RESPONSE_TYPE, None, None)
        threading.Thread(
            target=self._run_import,
            args=(op, store, source, storage, not_before),
            name=f"import-{op.id}",
            daemon=True,
        ).start()
        return op

    def _storage_for(self, what: str) -> GcsReader:
        if self.storage is None:
            raise ApiError(501, f"the emulator was started without --storage-url: it cannot {what}")
        return self.storage

    def _start_store_operation(
        self,
        store: Store,
        method: str,
        response_type: str,
        fail_with: JsonDict | None,
        delay: float | None,
    ) -> tuple[Operation, float]:
        """A new operation of the store's dataset, and when it may be done at the earliest (its delay)."""
        with self.lock:
            if self.stores.get(store.name) is not store:
                raise ApiError(404, f"DICOM store {store.name} not found")
            op = Operation(
                id=str(next(self._op_ids)),
                dataset=store.dataset,
                method=method,
                store=store.name,
                study=None,
                series=None,
                create_time=now_rfc3339(),
                fail_with=fail_with,
                response={"@type": response_type},
            )
            self.operations[op.id] = op
            not_before = time.monotonic() + (self.config.operation_delay if delay is None else delay)
        return op, not_before

    def _run_import(
        self, op: Operation, store: Store, source: GcsPattern, storage: GcsReader, not_before: float
    ) -> None:
        """Store every object that is a DICOM instance; an instance already in the store is skipped and
        counted as a success (Google: "accepts duplicate DICOM instances by ignoring the newly-pushed
        instance"); any object that is not an instance, or cannot be stored, is a failure."""
        success = failure = 0
        error: JsonDict | None = None
        try:
            names = storage.list(source)
        except ImportFailed as exc:
            names, error = [], {"code": exc.code, "message": exc.message}
        for index, name in enumerate(names):
            with self.lock:
                if self._closed or self.operations.get(op.id) is not op:
                    return  # the emulator stopped or was reset
                op.counter = _counter(success, failure, len(names) - index)
            try:
                data = storage.read(source.bucket, name)
                parsed = parse_part10(data)
            except (ImportFailed, DicomError):
                failure += 1
                continue
            try:
                self.store_instance(store, parsed, data)
                success += 1
            except ApiError:
                with self.lock:
                    duplicate = parsed.sop in store.sops
                success, failure = (success + 1, failure) if duplicate else (success, failure + 1)
        if error is None and not names:
            error = {"code": 5, "message": f"no Cloud Storage object matches {source.uri}"}
        elif error is None and failure:
            error = {
                "code": 3,
                "message": f"{failure} of {len(names)} objects matching {source.uri} could not be imported;"
                " see the logs (logsUrl)",
            }
        time.sleep(max(0.0, not_before - time.monotonic()))
        with self.lock:
            if self._closed or self.operations.get(op.id) is not op:
                return
            op.counter = _counter(success, failure, 0)
            op.error = error
            op.end_time = now_rfc3339()
            op.done = True

    # ---- storage classes (setBlobStorageSettings)

    def start_set_blob_storage(
        self,
        store: Store,
        request: BlobStorageRequest,
        fail_with: JsonDict | None = None,
        delay: float | None = None,
    ) -> Operation:
        """Start ``dicomStores.setBlobStorageSettings``: the filter file is read from Cloud Storage, and
        the operation's delay after its start the class is set on every instance it names (``fail_with``:
        the operation ends with that error and changes nothing)."""
        storage = self._storage_for("read a filter file")
        op, not_before = self._start_store_operation(
            store, SET_BLOB_STORAGE_METHOD, SET_BLOB_STORAGE_RESPONSE_TYPE, fail_with, delay
        )
        threading.Thread(
            target=self._run_set_blob_storage,
            args=(op, store, request, storage, not_before),
            name=f"blob-storage-{op.id}",
            daemon=True,
        ).start()
        return op

    def _run_set_blob_storage(
        self, op: Operation, store: Store, request: BlobStorageRequest, storage: GcsReader, not_before: float
    ) -> None:
        error: JsonDict | None = None
        resources: list[Resource] = []
        try:
            resources = parse_filter(storage.read(request.bucket, request.name))
        except ImportFailed as exc:
            error = {"code": exc.code, "message": exc.message}
        time.sleep(max(0.0, not_before - time.monotonic()))
        with self.lock:
            if self._closed or self.operations.get(op.id) is not op:
                return
            if error is None and op.fail_with is not None:
                error = {"code": int(op.fail_with["code"]), "message": str(op.fail_with.get("message", ""))}
            success = failure = 0
            if error is None:
                changed = now_rfc3339()
                for study, series, sop in resources:
                    named = [
                        inst
                        for series_uid, sops in store.studies.get(study, {}).items()
                        if series is None or series_uid == series
                        for inst in sops.values()
                        if sop is None or inst.sop == sop
                    ]
                    if not named:
                        failure += 1
                    for inst in named:
                        inst.storage_class = request.storage_class
                        inst.storage_class_update_time = changed
                        success += 1
                if failure:
                    error = {
                        "code": 5,
                        "message": f"{failure} of {len(resources)} resource paths of the filter file name"
                        " nothing in the store",
                    }
            else:
                failure = 1
            op.counter = _counter(success, failure, 0)
            op.error = error
            op.end_time = now_rfc3339()
            op.done = True
