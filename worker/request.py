"""The request message: one Pub/Sub message naming one series (schemas/request.schema.json).

Accepted forms of the message data (UTF-8):
- JSON with `series` as a Healthcare path (`projects/.../dicomStores/s/dicomWeb/studies/X/series/Y`) or,
  for a DICOMWEB_URL server, `studies/X/series/Y`;
- JSON with the fields of the original API request: projectsId, locationsId, datasetsId, dicomStoresId,
  studiesId, seriesId;
- a DICOM store's own notification: the bare path of one stored instance (not JSON): retrieve that instance.

The fields the worker sets on its own follow-ups (`operation`, `instance`, a nonzero `continuation`) are
accepted only under its signature (worker/continuation.py). No error message repeats a value or a field
name taken from the message: the failed event must carry no sender text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from worker.continuation import SIGNATURE_FIELD, KeyRing
from worker.errors import Code, InvalidValue, PermanentError, invalid
from worker.models import DICOMWEB_STORE, DicomStore, GcsLocation, SeriesRef, check_uid, parse_instance_path

MAX_MESSAGE_BYTES = 64 * 1024
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_OPERATION = re.compile(
    r"projects/[^/?#\s]+/locations/[^/?#\s]+/datasets/[^/?#\s]+/operations/[0-9A-Za-z_-]{1,64}"
)
_STORE_FIELDS = ("projectsId", "locationsId", "datasetsId", "dicomStoresId")
_TOP_FIELDS = frozenset(
    {"action", "series", "destination", "requestId", "options"}
    | {"operation", "continuation", "instance", SIGNATURE_FIELD}
    | set(_STORE_FIELDS)
    | {"studiesId", "seriesId"}
)
UNSIGNED = (
    "fields the worker sets on its own follow-up messages (operation, instance, continuation, signature)"
    " need its signature"
)
_TRANSFER_SYNTAX = re.compile(r"\*|[0-9]+(?:\.[0-9]+)*")


class Action(StrEnum):
    SEARCH = "search"
    RETRIEVE = "retrieve"
    DELETE = "delete"
    ARCHIVE = "archive"
    RESTORE = "restore"
    VERIFY = "verify"
    TIER = "tier"
    SWEEP = "sweep"  # not a series action: a SweepRequest (parse_message)


class Mode(StrEnum):
    AUTO = "auto"  # per series, from its average instance size (worker/retrieve.py, choose_mode)
    INSTANCES = "instances"  # one RetrieveInstance request per instance, concurrent, retried one by one
    SERIES = "series"  # one RetrieveSeries request, split as it streams


class RestoreMethod(StrEnum):
    STOW = "stow"  # STOW-RS, one instance per request, streamed from the archive (any DICOMweb server)
    IMPORT = "import"  # the Healthcare API's dicomStores.import of the series folder, and its operation


class StorageClass(StrEnum):
    """The Healthcare API's blob storage classes inside a DICOM store (action tier)."""

    STANDARD = "STANDARD"
    NEARLINE = "NEARLINE"
    COLDLINE = "COLDLINE"
    ARCHIVE = "ARCHIVE"


@dataclass(frozen=True)
class RetrieveOptions:
    transfer_syntax: str = "*"
    include_metadata: bool = False
    mode: Mode = Mode.AUTO
    method: RestoreMethod = RestoreMethod.STOW
    storage_class: StorageClass | None = None  # tier: required

    def as_json(self) -> dict[str, Any]:
        body = {
            "transferSyntax": self.transfer_syntax,
            "includeMetadata": self.include_metadata,
            "mode": str(self.mode),
            "method": str(self.method),
        }
        if self.storage_class is not None:
            body["storageClass"] = str(self.storage_class)
        return body


_OPTIONS_OF: dict[Action, frozenset[str]] = {
    Action.SEARCH: frozenset(),
    Action.RETRIEVE: frozenset({"transferSyntax", "includeMetadata", "mode"}),
    Action.ARCHIVE: frozenset({"mode"}),
    Action.DELETE: frozenset(),
    Action.RESTORE: frozenset({"method"}),
    Action.VERIFY: frozenset(),
    Action.TIER: frozenset({"storageClass"}),
}


@dataclass(frozen=True)
class Message:
    """One delivery of a Pub/Sub message, as the entry point decoded it."""

    data: bytes
    attributes: Mapping[str, str]
    message_id: str
    delivery_attempt: int | None = None


@dataclass(frozen=True)
class SeriesRequest:
    action: Action
    series: SeriesRef
    request_id: str
    destination: GcsLocation | None = None
    options: RetrieveOptions = field(default_factory=RetrieveOptions)
    instance_uid: str | None = None  # a store notification names one instance
    operation: str | None = None  # a delete follow-up waits on this operation instead of deleting again
    continuation: int = 0  # how many deliveries handed this request on before

    def as_json(self) -> dict[str, Any]:
        """The message that, published, asks for this same request (used for continuations)."""
        body: dict[str, Any] = {
            "action": str(self.action),
            "series": self.series.source,
            "requestId": self.request_id,
            "continuation": self.continuation,
        }
        if self.destination is not None:
            body["destination"] = self.destination.uri()
        if self.action in (Action.RETRIEVE, Action.ARCHIVE, Action.RESTORE, Action.TIER):
            allowed = _OPTIONS_OF[self.action]
            body["options"] = {k: v for k, v in self.options.as_json().items() if k in allowed}
        if self.instance_uid is not None:
            body["instance"] = self.instance_uid
        if self.operation is not None:
            body["operation"] = self.operation
        return body


def parse_request(message: Message, keys: KeyRing | None = None) -> SeriesRequest:
    """Validate one message into a request; raises PermanentError naming what is wrong.

    `keys` verify the worker's own follow-ups; without them no follow-up field is accepted."""
    if len(message.data) > MAX_MESSAGE_BYTES:
        raise PermanentError(Code.INVALID_MESSAGE, f"message data exceeds {MAX_MESSAGE_BYTES} bytes")
    try:
        text = message.data.decode("utf-8")
    except UnicodeDecodeError:
        raise PermanentError(Code.INVALID_MESSAGE, "message data is not UTF-8") from None
    stripped = text.strip()
    try:
        if stripped.startswith("projects/") and "/instances/" in stripped and not stripped.startswith("{"):
            return _from_notification(stripped, message)
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):  # JSONDecodeError, and numbers too long to convert
            raise PermanentError(Code.INVALID_MESSAGE, "message data is not JSON") from None
        if not isinstance(body, dict):
            raise PermanentError(Code.INVALID_MESSAGE, "message data must be a JSON object")
        return from_json(body, message, keys)
    except InvalidValue as error:  # a UID, path or bucket the value objects refused
        raise invalid(str(error)) from None


def request_id_of(message: Message) -> str:
    """For the failed event of a rejected message: its own valid requestId if it has one, so a caller
    that correlates by requestId sees the failure; the message id otherwise."""
    try:
        body = json.loads(message.data.decode("utf-8")) if len(message.data) <= MAX_MESSAGE_BYTES else None
    except (ValueError, RecursionError):
        body = None
    value = body.get("requestId") if isinstance(body, dict) else None
    return value if isinstance(value, str) and _REQUEST_ID.fullmatch(value) else message.message_id


def _from_notification(path: str, message: Message) -> SeriesRequest:
    series, sop_uid = parse_instance_path(path)
    return SeriesRequest(Action.RETRIEVE, series, _message_request_id(message), instance_uid=sop_uid)


def from_json(body: dict[str, Any], message: Message, keys: KeyRing | None) -> SeriesRequest:
    unknown = set(body) - _TOP_FIELDS
    if unknown:
        raise invalid(f"unknown fields: {len(unknown)}; accepted fields: {', '.join(sorted(_TOP_FIELDS))}")
    action = _action(body.get("action", message.attributes.get("action")))
    if action is Action.SWEEP:
        raise invalid("sweep is not a series action (and a sweep's then cannot be another sweep)")
    request_id = parse_request_id(body.get("requestId"), message)
    series = _series(body)
    destination = GcsLocation.parse(body["destination"]) if body.get("destination") is not None else None
    options = _options(action, body.get("options"))
    if action is Action.TIER and options.storage_class is None:
        raise invalid("options.storageClass is required for tier")
    instance = body.get("instance")
    if instance is not None:
        instance = check_uid(instance, "instance")
        if action is not Action.RETRIEVE:
            raise invalid("instance is only accepted with action retrieve")
    operation = body.get("operation")
    if operation is not None:
        if action not in (Action.DELETE, Action.ARCHIVE, Action.RESTORE, Action.TIER):
            raise invalid("operation is only accepted with actions delete, archive, restore and tier")
        if not isinstance(operation, str) or not _OPERATION.fullmatch(operation):
            raise invalid("operation must be projects/{p}/locations/{l}/datasets/{d}/operations/{id}")
        if series.store is None or not operation.startswith(series.store.dataset_name + "/"):
            raise invalid("operation must belong to the series' dataset")
    continuation = body.get("continuation", 0)
    if not isinstance(continuation, int) or isinstance(continuation, bool) or not 0 <= continuation <= 10_000:
        raise invalid("continuation must be an integer between 0 and 10000")
    follow_up = instance is not None or operation is not None or continuation != 0
    if (follow_up or SIGNATURE_FIELD in body) and not (
        keys is not None and keys.verify(body, body.get(SIGNATURE_FIELD))
    ):
        raise invalid(UNSIGNED)
    return SeriesRequest(
        action=action,
        series=series,
        request_id=request_id,
        destination=destination,
        options=options,
        instance_uid=instance,
        operation=operation,
        continuation=continuation,
    )


def _action(value: object) -> Action:
    if value is None:
        raise invalid("action is missing (in the data or the message attribute 'action')")
    if not isinstance(value, str):
        raise invalid("action must be a string")
    try:
        return Action(value)
    except ValueError:
        raise invalid(f"unknown action; expected one of {', '.join(a.value for a in Action)}") from None


def _message_request_id(message: Message) -> str:
    if _REQUEST_ID.fullmatch(message.message_id):
        return message.message_id
    raise PermanentError(Code.INVALID_MESSAGE, "message id is not usable as a request id")


def parse_request_id(value: object, message: Message) -> str:
    if value is None:
        return _message_request_id(message)
    if not isinstance(value, str) or not _REQUEST_ID.fullmatch(value):
        raise invalid("requestId must be 1 to 128 characters of letters, digits and _.:-")
    return value


def _series(body: dict[str, Any]) -> SeriesRef:
    separate = [name for name in (*_STORE_FIELDS, "studiesId", "seriesId") if name in body]
    if "series" in body:
        if separate:
            raise invalid(f"give either series or the separate fields, not both ({', '.join(separate)})")
        return SeriesRef.parse(body["series"])
    if not separate:
        raise invalid("series is missing: give series, or projectsId ... seriesId")
    for name in ("studiesId", "seriesId"):
        if name not in body:
            raise invalid(f"{name} is missing")
    present = [name for name in _STORE_FIELDS if name in body]
    store = None
    if present:
        missing = [name for name in _STORE_FIELDS if name not in body]
        if missing:
            raise invalid(f"missing fields of the DICOM store: {', '.join(missing)}")
        values = [body[name] for name in _STORE_FIELDS]
        for name, value in zip(_STORE_FIELDS, values, strict=True):
            if not isinstance(value, str):
                raise invalid(f"{name} must be a string")
        store = DicomStore(*values)
    return SeriesRef(
        store, check_uid(body["studiesId"], "studiesId"), check_uid(body["seriesId"], "seriesId")
    )


def _options(action: Action, value: object) -> RetrieveOptions:
    if value is None:
        return RetrieveOptions()
    if not isinstance(value, dict):
        raise invalid("options must be an object")
    allowed = _OPTIONS_OF[action]
    unknown = set(value) - allowed
    if unknown:
        raise invalid(
            f"unknown options for {action}: {len(unknown)}; accepted: {', '.join(sorted(allowed)) or 'none'}"
        )
    transfer_syntax = value.get("transferSyntax", "*")
    if not isinstance(transfer_syntax, str) or len(transfer_syntax) > 64:
        raise invalid("options.transferSyntax must be '*' or a transfer syntax UID")
    if not _TRANSFER_SYNTAX.fullmatch(transfer_syntax):
        raise invalid("options.transferSyntax must be '*' or a transfer syntax UID")
    include_metadata = value.get("includeMetadata", False)
    if not isinstance(include_metadata, bool):
        raise invalid("options.includeMetadata must be true or false")
    mode = value.get("mode", "auto")
    try:
        mode = Mode(mode)
    except ValueError:
        raise invalid("options.mode must be 'auto', 'instances' or 'series'") from None
    try:
        method = RestoreMethod(value.get("method", "stow"))
    except ValueError:
        raise invalid("options.method must be 'stow' or 'import'") from None
    storage_class = value.get("storageClass")
    if storage_class is not None:
        try:
            storage_class = StorageClass(storage_class)
        except ValueError:
            raise invalid(
                f"options.storageClass must be one of {', '.join(c.value for c in StorageClass)}"
            ) from None
    return RetrieveOptions(transfer_syntax, include_metadata, mode, method, storage_class)


def store_allowed(store: DicomStore | None, patterns: tuple[str, ...]) -> bool:
    """ALLOWED_DICOM_STORES, compared component by component: a pattern component `*` stands for exactly
    one whole id, any other is literal, so no pattern is broader than it looks (settings refuses any
    pattern not shaped `projects/P/locations/L/datasets/D/dicomStores/S` or `dicomweb`). No patterns
    allows all."""
    if not patterns:
        return True
    parts = (store.name if store is not None else DICOMWEB_STORE).split("/")
    return any(_components_match(parts, pattern.split("/")) for pattern in patterns)


def _components_match(parts: list[str], pattern: list[str]) -> bool:
    return len(parts) == len(pattern) and all(
        want in ("*", part) for part, want in zip(parts, pattern, strict=True)
    )


# -- the sweep request: a rule over a store, not a series ------------------------------------------
