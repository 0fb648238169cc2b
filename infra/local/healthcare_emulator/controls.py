"""The emulator's controls, set through its admin API: fault rules and the configuration."""

from __future__ import annotations

import base64
import random
import re
from dataclasses import dataclass
from typing import Any

from .dicom import JsonDict
from .errors import ApiError

FAULT_KEYS = frozenset(
    {
        "method",
        "path",
        "status",
        "retryAfter",
        "times",
        "rate",
        "seed",
        "latency",
        "dropAfterBytes",
        "operationError",
        "operationDelay",
        "storeInstance",
    }
)


@dataclass
class FaultRule:
    spec: JsonDict
    method: str
    path: re.Pattern[str]
    status: int | None
    retry_after: float | None
    times: int | None
    rate: float | None
    latency: float
    drop_after: int | None
    operation_error: JsonDict | None
    operation_delay: float | None
    rng: random.Random
    store_instance: tuple[str, bytes] | None = None  # (store, Part 10 bytes) stored when the rule fires
    fired: int = 0

    @classmethod
    def parse(cls, spec: Any) -> FaultRule:
        if not isinstance(spec, dict):
            raise ApiError(400, "each fault rule must be a JSON object")
        unknown = set(spec) - FAULT_KEYS
        if unknown:
            raise ApiError(400, f"unknown fault rule keys: {sorted(unknown)}; known: {sorted(FAULT_KEYS)}")
        try:
            pattern = re.compile(str(spec.get("path", "")))
        except re.error as exc:
            raise ApiError(400, f"bad path regex: {exc}") from exc
        op_error = spec.get("operationError")
        if op_error is not None and not (
            isinstance(op_error, dict) and isinstance(op_error.get("code"), int)
        ):
            raise ApiError(400, 'operationError must look like {"code": 13, "message": "..."}')
        store_instance = spec.get("storeInstance")
        if store_instance is not None:
            if not (
                isinstance(store_instance, dict)
                and isinstance(store_instance.get("store"), str)
                and isinstance(store_instance.get("data"), str)
            ):
                raise ApiError(400, 'storeInstance must look like {"store": name, "data": base64 Part 10}')
            try:
                data = base64.b64decode(store_instance["data"], validate=True)
            except ValueError as exc:
                raise ApiError(400, "storeInstance.data is not base64") from exc
            store_instance = (store_instance["store"], data)
        try:
            rule = cls(
                spec=dict(spec),
                method=str(spec.get("method", "*")).upper(),
                path=pattern,
                status=_opt(spec, "status", int),
                retry_after=_opt(spec, "retryAfter", float),
                times=_opt(spec, "times", int),
                rate=_opt(spec, "rate", float),
                latency=_opt(spec, "latency", float) or 0.0,
                drop_after=_opt(spec, "dropAfterBytes", int),
                operation_error=dict(op_error) if op_error else None,
                operation_delay=_opt(spec, "operationDelay", float),
                rng=random.Random(spec.get("seed")),
                store_instance=store_instance,
            )
        except (TypeError, ValueError) as exc:
            raise ApiError(400, f"bad fault rule {spec}: {exc}") from exc
        if rule.status is not None and not 100 <= rule.status <= 599:
            raise ApiError(400, "status must be an HTTP status code")
        return rule

    def fires(self, method: str, path: str) -> bool:
        """Whether this rule faults this request (counts it when it does)."""
        if self.method not in ("*", method) or not self.path.search(path):
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        if self.rate is not None and self.rng.random() >= self.rate:
            return False
        self.fired += 1
        return True

    def as_json(self) -> JsonDict:
        return {**self.spec, "fired": self.fired}


def _opt(spec: JsonDict, key: str, kind: type[int] | type[float]) -> Any:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{key} must be a number")
    return kind(value)


@dataclass
class Config:
    operation_delay: float = 0.5
    absent_delete: str = "404"
    boundary_quoting: str = "random"
    qido_cap: int = 0  # > 0: instance searches return at most this many, whatever limit and offset say
    qido_max_limit: int = 0  # > 0: study and series search pages hold at most this many (Google: 5,000)
    qido_max_offset: int = 1_000_000  # a larger offset answers 400 (Google's limit)

    def update(self, spec: Any) -> None:
        if not isinstance(spec, dict):
            raise ApiError(400, "config must be a JSON object")
        unknown = set(spec) - {"operationDelay", "absentDelete", "boundaryQuoting", "qidoCap"}
        unknown -= {"qidoMaxLimit", "qidoMaxOffset"}
        if unknown:
            raise ApiError(400, f"unknown config keys: {sorted(unknown)}")
        if "operationDelay" in spec:
            delay = spec["operationDelay"]
            if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
                raise ApiError(400, "operationDelay must be a number of seconds >= 0")
            self.operation_delay = float(delay)
        if "absentDelete" in spec:
            if str(spec["absentDelete"]) not in ("404", "operation"):
                raise ApiError(400, 'absentDelete must be "404" or "operation"')
            self.absent_delete = str(spec["absentDelete"])
        if "qidoCap" in spec:
            cap = spec["qidoCap"]
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
                raise ApiError(400, "qidoCap must be an integer >= 0 (0: no cap)")
            self.qido_cap = cap
        for key, attribute in (("qidoMaxLimit", "qido_max_limit"), ("qidoMaxOffset", "qido_max_offset")):
            if key in spec:
                value = spec[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ApiError(400, f"{key} must be an integer >= 0")
                setattr(self, attribute, value)
        if "boundaryQuoting" in spec:
            if spec["boundaryQuoting"] not in ("quoted", "unquoted", "random"):
                raise ApiError(400, 'boundaryQuoting must be "quoted", "unquoted" or "random"')
            self.boundary_quoting = str(spec["boundaryQuoting"])

    def as_json(self) -> JsonDict:
        return {
            "operationDelay": self.operation_delay,
            "absentDelete": self.absent_delete,
            "boundaryQuoting": self.boundary_quoting,
            "qidoCap": self.qido_cap,
            "qidoMaxLimit": self.qido_max_limit,
            "qidoMaxOffset": self.qido_max_offset,
        }
