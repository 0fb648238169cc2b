"""The emulator's index: stored instances, DICOM stores and long-running operations."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .dicom import JsonDict, file_chunks, ui
from .seed import SeedTemplate

OPERATION_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata"


@dataclass(slots=True)
class Instance:
    study: str
    series: str
    sop: str
    sop_class: str
    number: int | None
    transfer_syntax: str
    size: int
    base_attrs: JsonDict  # shared between the instances of a seeded batch
    path: Path | None = None
    template: SeedTemplate | None = None
    storage_class: str = "STANDARD"  # setBlobStorageSettings changes it
    storage_class_update_time: str | None = None

    def attrs(self) -> JsonDict:
        """All attributes as DICOM JSON (bulk data as markers, see dicom.with_bulk_uris)."""
        if self.template is None:
            return self.base_attrs
        out = dict(self.base_attrs)
        out["00080018"] = ui(self.sop)
        out["00200013"] = {"vr": "IS", "Value": [self.number]}
        return dict(sorted(out.items()))

    def element(self, key: str) -> JsonDict | None:
        """One attribute, without building them all."""
        if self.template is not None:
            if key == "00080018":
                return ui(self.sop)
            if key == "00200013":
                return {"vr": "IS", "Value": [self.number]}
        elem: JsonDict | None = self.base_attrs.get(key)
        return elem

    def chunks(self) -> Iterator[bytes]:
        """The stored bytes, unchanged."""
        if self.template is not None:
            return self.template.stream(self.sop, self.number or 0)
        assert self.path is not None
        return file_chunks(str(self.path))

    def read(self) -> bytes:
        return b"".join(self.chunks())


@dataclass
class Store:
    name: str
    dataset: str
    # study -> series -> sop -> instance, all in insertion order
    studies: dict[str, dict[str, dict[str, Instance]]] = field(default_factory=dict)
    sops: dict[str, Instance] = field(default_factory=dict)
    # (study, series or None for a whole study) -> number of running delete operations
    deleting: dict[tuple[str, str | None], int] = field(default_factory=dict)

    def is_deleting(self, study: str, series: str) -> bool:
        return bool(self.deleting.get((study, series)) or self.deleting.get((study, None)))

    def series_instances(self, study: str, series: str) -> dict[str, Instance] | None:
        return self.studies.get(study, {}).get(series)

    def add(self, inst: Instance) -> None:
        self.studies.setdefault(inst.study, {}).setdefault(inst.series, {})[inst.sop] = inst
        self.sops[inst.sop] = inst

    def remove(self, inst: Instance) -> None:
        self.sops.pop(inst.sop, None)
        series = self.studies.get(inst.study, {})
        sops = series.get(inst.series)
        if sops is not None:
            sops.pop(inst.sop, None)
            if not sops:
                del series[inst.series]
        if not series:
            self.studies.pop(inst.study, None)


@dataclass
class Operation:
    id: str
    dataset: str
    method: str
    store: str
    study: str | None  # of a delete; None for an import
    series: str | None
    create_time: str
    fail_with: JsonDict | None
    response: JsonDict = field(default_factory=dict)  # the answer once done without error
    done: bool = False
    end_time: str | None = None
    error: JsonDict | None = None
    counter: dict[str, str] = field(default_factory=dict)
    timer: threading.Timer | None = None

    @property
    def name(self) -> str:
        return f"{self.dataset}/operations/{self.id}"

    def as_json(self, initial: bool = False) -> JsonDict:
        metadata: JsonDict = {
            "@type": OPERATION_TYPE,
            "apiMethodName": self.method,
            "createTime": self.create_time,
            "counter": {} if initial else dict(self.counter),
            "logsUrl": f"https://console.cloud.google.com/logs/query/emulator/operations/{self.id}",
        }
        out: JsonDict = {"name": self.name, "metadata": metadata}
        if initial or not self.done:
            return out
        metadata["endTime"] = self.end_time
        out["done"] = True
        if self.error is not None:
            out["error"] = self.error
        else:
            out["response"] = dict(self.response)
        return out
