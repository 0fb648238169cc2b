"""What the emulator holds, thread-safe: the stores' index and files, long-running deletes, fault rules, the
request log. The index's values are in ``records``, fault rules and the configuration in ``controls``."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from .controls import Config, FaultRule
from .dicom import BIG_ENDIAN, EXPLICIT_LE, JsonDict, ParsedInstance
from .errors import ApiError
from .gcs_import import GcsReader
from .records import Instance, Operation, Store
from .seed import SeedTemplate, derived_sop_uid
from .storage_operations import StorageOperations, now_rfc3339

STORE_NAME_RE = re.compile(
    r"^(projects/[^/]+/locations/[^/]+/datasets/[^/]+)/dicomStores/[^/]+$",
)
DELETE_SERIES_METHOD = "google.cloud.healthcare.v1.dicomweb.studies.series.DeleteSeries"
DELETE_STUDY_METHOD = "google.cloud.healthcare.v1.dicomweb.studies.DeleteStudy"
SEED_HEADER_ALLOWANCE = 640  # about what a seeded instance's meta and attributes take


def _counter(success: int, failure: int, pending: int) -> dict[str, str]:
    """A ProgressCounter as proto3 JSON: int64 values as strings, zero values left out."""
    values = {"success": success, "failure": failure, "pending": pending}
    return {key: str(value) for key, value in values.items() if value}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class EmulatorState(StorageOperations):
    """Everything the emulator holds. All methods are thread-safe."""

    def __init__(self, data_dir: Path, config: Config, storage: GcsReader | None = None) -> None:
        self.lock = threading.RLock()
        self.config = config
        self.storage = storage  # Cloud Storage for imports (None: import answers 501)
        self.blob_dir = Path(data_dir) / "instances"
        shutil.rmtree(self.blob_dir, ignore_errors=True)
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.stores: dict[str, Store] = {}
        self.operations: dict[str, Operation] = {}
        self.faults: list[FaultRule] = []
        self.requests: deque[JsonDict] = deque(maxlen=200_000)
        self.bytes_served = 0
        self.instances_served = 0
        self._file_ids = itertools.count(1)
        self._op_ids = itertools.count(int(time.time()) * 1000)
        self._closed = False

    # ---- stores

    def create_store(self, name: Any) -> bool:
        if not isinstance(name, str) or not (match := STORE_NAME_RE.match(name)):
            raise ApiError(400, "name must look like projects/P/locations/L/datasets/D/dicomStores/S")
        with self.lock:
            if name in self.stores:
                return False
            self.stores[name] = Store(name=name, dataset=match.group(1))
            return True

    def store(self, name: str) -> Store:
        store = self.stores.get(name)
        if store is None:
            raise ApiError(404, f"DICOM store {name} not found")
        return store

    # ---- writes

    def store_instance(self, store: Store, parsed: ParsedInstance, data: bytes) -> None:
        """Store one STOW-RS instance; ApiError(409) when it exists or its series is being deleted."""
        self._check_storable(store, parsed)
        path = self.blob_dir / f"{next(self._file_ids):09d}.dcm"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        number = parsed.attrs.get("00200013", {}).get("Value", [None])[0]
        inst = Instance(
            study=parsed.study,
            series=parsed.series,
            sop=parsed.sop,
            sop_class=parsed.sop_class,
            number=_int_or_none(number),
            transfer_syntax=parsed.transfer_syntax,
            size=len(data),
            base_attrs=parsed.attrs,
            path=path,
        )
        with self.lock:
            try:
                self._check_storable(store, parsed)
            except ApiError:
                path.unlink(missing_ok=True)
                raise
            store.add(inst)

    def _check_storable(self, store: Store, parsed: ParsedInstance) -> None:
        with self.lock:
            if self.stores.get(store.name) is not store:
                raise ApiError(404, f"DICOM store {store.name} not found")
            if store.is_deleting(parsed.study, parsed.series):
                raise ApiError(409, f"series {parsed.series} is being deleted")
            if parsed.sop in store.sops:
                raise ApiError(409, f"instance {parsed.sop} already exists")

    def _seed_many(self, spec: JsonDict) -> JsonDict:
        """``seriesCount`` series ``{series}.{k}`` (k from 1) of the study, each seeded as ``spec`` says."""
        number = spec["seriesCount"]
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 1_000_000:
            raise ApiError(400, "seriesCount must be an integer from 1 to 1000000")
        one = {key: value for key, value in spec.items() if key != "seriesCount"}
        created = 0
        for k in range(1, number + 1):
            created += self.seed({**one, "series": f"{spec.get('series')}.{k}"})["created"]
        return {"seriesCount": number, "created": created}

    def seed(self, spec: Any) -> JsonDict:
        if isinstance(spec, dict) and "seriesCount" in spec:
            return self._seed_many(spec)
        if not isinstance(spec, dict):
            raise ApiError(400, "seed takes a JSON object")
        allowed = {"store", "study", "series", "count", "size", "transferSyntax", "start"}
        allowed |= {"modality", "studyDate", "patientName", "patientId"}
        unknown = set(spec) - allowed
        if unknown:
            raise ApiError(400, f"unknown seed keys: {sorted(unknown)}; known: {sorted(allowed)}")
        try:
            study, series = str(spec["study"]), str(spec["series"])
            count, start = int(spec["count"]), int(spec.get("start", 1))
            size = int(spec.get("size", 1024))
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(
                400, f"seed needs store, study, series, count (integers where numbers): {exc}"
            ) from exc
        ts = str(spec.get("transferSyntax") or EXPLICIT_LE)
        if ts == BIG_ENDIAN or ts == "*":
            raise ApiError(400, f"cannot seed in transfer syntax {ts}")
        if count < 0 or start < 0 or size < 0:
            raise ApiError(400, "count, start and size must not be negative")
        for uid in (study, series):
            if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", uid) or len(uid) > 64:
                raise ApiError(400, f"not a valid UID: {uid!r}")
        template = SeedTemplate(
            study=study,
            series=series,
            transfer_syntax=ts,
            pixel_bytes=max(2, size - SEED_HEADER_ALLOWANCE),
            modality=str(spec.get("modality", "OT")),
            study_date=str(spec.get("studyDate", "20240101")),
            patient_name=str(spec.get("patientName", "EMULATOR^SEED")),
            patient_id=str(spec.get("patientId", "SEED")),
        )
        base = template.attrs()
        created = skipped = 0
        first = last = None
        with self.lock:
            store = self.store(str(spec.get("store", "")))
            if store.is_deleting(study, series):
                raise ApiError(409, f"series {series} is being deleted")
            for index in range(start, start + count):
                sop = derived_sop_uid(series, index)
                first = first or sop
                last = sop
                if sop in store.sops:
                    skipped += 1
                    continue
                store.add(
                    Instance(
                        study=study,
                        series=series,
                        sop=sop,
                        sop_class=template.sop_class,
                        number=index,
                        transfer_syntax=ts,
                        size=template.size(sop, index),
                        base_attrs=base,
                        template=template,
                    )
                )
                created += 1
        return {
            "store": store.name,
            "study": study,
            "series": series,
            "count": count,
            "created": created,
            "skipped": skipped,
            "firstSopInstanceUid": first,
            "lastSopInstanceUid": last,
            "instanceSize": template.size(first, start) if first else 0,
        }

    def delete_instance(self, store: Store, study: str, series: str, sop: str) -> None:
        with self.lock:
            inst = store.sops.get(sop)
            if inst is None or inst.study != study or inst.series != series:
                raise ApiError(404, f"instance {sop} not found")
            self._drop([inst], store)

    def _drop(self, instances: list[Instance], store: Store) -> None:
        for inst in instances:
            store.remove(inst)
            if inst.path is not None:
                inst.path.unlink(missing_ok=True)

    # ---- long-running deletes

    def start_delete(
        self,
        store: Store,
        study: str,
        series: str | None,
        fail_with: JsonDict | None,
        delay: float | None = None,
    ) -> Operation:
        with self.lock:
            exists = study in store.studies and (series is None or series in store.studies[study])
            target = f"study {study}" if series is None else f"series {series} of study {study}"
            if not exists:
                if self.config.absent_delete == "404":
                    raise ApiError(404, f"{target} not found")
                fail_with = fail_with or {"code": 5, "message": f"{target} not found"}
            op = Operation(
                id=str(next(self._op_ids)),
                dataset=store.dataset,
                method=DELETE_STUDY_METHOD if series is None else DELETE_SERIES_METHOD,
                store=store.name,
                study=study,
                series=series,
                create_time=now_rfc3339(),
                fail_with=fail_with,
            )
            self.operations[op.id] = op
            if exists:
                key = (study, series)
                store.deleting[key] = store.deleting.get(key, 0) + 1
            if delay is None:
                delay = self.config.operation_delay
            op.timer = threading.Timer(delay, self._complete, args=(op, exists))
            op.timer.daemon = True
            op.timer.start()
            return op

    def _complete(self, op: Operation, registered: bool) -> None:
        with self.lock:
            if self._closed or op.done:
                return
            assert op.study is not None  # a delete's
            store = self.stores.get(op.store)
            if store is not None and registered:
                key = (op.study, op.series)
                remaining = store.deleting.get(key, 0) - 1
                if remaining > 0:
                    store.deleting[key] = remaining
                else:
                    store.deleting.pop(key, None)
            if op.fail_with is not None:
                op.error = {
                    "code": int(op.fail_with["code"]),
                    "message": str(op.fail_with.get("message", "")),
                }
                op.counter = {"failure": "1"}
            elif store is not None:
                victims = [
                    inst
                    for series_uid, sops in store.studies.get(op.study, {}).items()
                    if op.series is None or series_uid == op.series
                    for inst in sops.values()
                ]
                self._drop(victims, store)
                if victims:
                    op.counter = {"success": str(len(victims))}
            op.end_time = now_rfc3339()
            op.done = True

    def operation(self, dataset: str, op_id: str) -> Operation:
        with self.lock:
            op = self.operations.get(op_id)
            if op is None or op.dataset != dataset:
                raise ApiError(404, f"operation {dataset}/operations/{op_id} not found")
            return op

    # ---- faults, log, lifecycle

    def match_fault(self, method: str, path: str) -> FaultRule | None:
        with self.lock:
            for rule in self.faults:
                if rule.fires(method, path):
                    return rule
        return None

    def set_faults(self, spec: Any) -> None:
        if not isinstance(spec, dict) or not isinstance(spec.get("rules", []), list):
            raise ApiError(400, 'faults take {"rules": [...]}')
        rules = [FaultRule.parse(rule) for rule in spec.get("rules", [])]
        with self.lock:
            self.faults = rules

    def log(self, entry: JsonDict) -> None:
        with self.lock:
            self.requests.append(entry)

    def count_served(self, nbytes: int, instances: int = 0) -> None:
        with self.lock:
            self.bytes_served += nbytes
            self.instances_served += instances

    def reset(self) -> None:
        with self.lock:
            for op in self.operations.values():
                if op.timer is not None:
                    op.timer.cancel()
            self.operations.clear()
            self.stores.clear()
            self.faults = []
            self.requests.clear()
            self.bytes_served = self.instances_served = 0
            for path in self.blob_dir.glob("*"):
                path.unlink(missing_ok=True)

    def close(self) -> None:
        with self.lock:
            self._closed = True
            for op in self.operations.values():
                if op.timer is not None:
                    op.timer.cancel()
