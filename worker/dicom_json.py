"""DICOM JSON answers of a DICOMweb server read into the worker's values, without I/O: a QIDO-RS result as
an Instance, a STOW-RS answer as what it says of the one instance it was sent."""

from __future__ import annotations

import json
from typing import Any

from worker.errors import Code, InvalidValue, PermanentError, RetryableError
from worker.models import Instance, SeriesRef, Stow, is_uid

SOP_CLASS_TAG = "00080016"
_SOP_INSTANCE = "00080018"
STUDY_TAG = "0020000D"
SERIES_TAG = "0020000E"
INSTANCE_NUMBER_TAG = "00200013"
_FAILURE_REASON = "00081197"
_FAILED_SOPS = "00081198"
_REFERENCED_SOPS = "00081199"
_REFERENCED_SOP_INSTANCE = "00081155"
DUPLICATE_SOP = 0x0111  # STOW-RS failure reason: an instance with this SOP Instance UID is stored already
# Failure reasons a later attempt may not meet: processing failure (the Healthcare API's answer while an
# operation deletes the series), out of resources.
TRANSIENT_REASONS = frozenset({0x0110, 0xA700})


def stow_outcome(status: int, answer: bytes, sop_uid: str, *, healthcare: bool) -> Stow:
    """What a STOW-RS answer (200, 202 or 409; DICOM JSON) says of the one instance it was sent."""
    referenced: set[str] = set()
    failed: dict[str, int | None] = {}
    try:
        body = json.loads(answer) if answer.strip() else {}
    except (ValueError, RecursionError):
        body = None  # checked below: a 200 without a readable answer is taken as stored, then verified
    if isinstance(body, dict):
        for item in _sequence(body, _REFERENCED_SOPS):
            uid = first_value(item, _REFERENCED_SOP_INSTANCE)
            if isinstance(uid, str):
                referenced.add(uid)
        for item in _sequence(body, _FAILED_SOPS):
            uid = first_value(item, _REFERENCED_SOP_INSTANCE)
            reason = first_value(item, _FAILURE_REASON)
            failed[uid if isinstance(uid, str) else ""] = (
                reason if isinstance(reason, int) and not isinstance(reason, bool) else None
            )
    if sop_uid in referenced:
        return Stow.STORED
    reason = failed.get(sop_uid, failed.get("") if len(failed) == 1 else None)
    if reason == DUPLICATE_SOP:
        return Stow.PRESENT
    shown = f"0x{reason:04X}" if reason is not None else "none given"
    if failed or status == 409:
        if reason in TRANSIENT_REASONS or (status == 409 and healthcare and reason is None):
            raise RetryableError(
                f"STOW-RS of instance {sop_uid} answered {status} (failure reason {shown}); the series may"
                " be being deleted"
            )
        raise PermanentError(
            Code.SOURCE_REFUSED,
            f"the DICOMweb server refused to store instance {sop_uid} ({status}, failure reason {shown})",
            {"sopInstanceUID": sop_uid, "status": status, "failureReason": reason},
        )
    if referenced:
        raise PermanentError(
            Code.SOURCE_INVALID_RESPONSE,
            f"the STOW-RS answer for instance {sop_uid} names other instances only",
        )
    return Stow.STORED  # 200 without a list: the read-back that follows checks it


def _sequence(body: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    element = body.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return [item for item in values if isinstance(item, dict)] if isinstance(values, list) else []


def first_value(item: dict[str, Any], tag: str) -> Any:
    element = item.get(tag)
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    if not isinstance(values, list) or not values:
        return None
    return values[0]


def instance_from_json(item: object, series: SeriesRef) -> Instance | None:
    """One QIDO result. Results of another series are skipped (a server that ignores the path); a result
    of this series without a usable SOP Instance UID stops the request: skipping it would leave it out
    of the copy, and an archive would then delete it uncopied."""
    if not isinstance(item, dict):
        raise _unusable_result()
    series_uid = first_value(item, SERIES_TAG) or series.series_uid
    study_uid = first_value(item, STUDY_TAG) or series.study_uid
    if series_uid != series.series_uid or study_uid != series.study_uid:
        return None
    sop_uid = first_value(item, _SOP_INSTANCE)
    sop_class = first_value(item, SOP_CLASS_TAG)
    number = first_value(item, INSTANCE_NUMBER_TAG)
    try:
        number = int(number) if number is not None else None
    except (TypeError, ValueError, OverflowError):
        number = None
    if not is_uid(sop_class):
        sop_class = None  # it goes into events and object metadata: a UID or nothing
    try:
        return Instance(study_uid, series_uid, sop_uid, sop_class, number)
    except (InvalidValue, TypeError):
        raise _unusable_result() from None


def _unusable_result() -> PermanentError:
    return PermanentError(
        Code.UNSUPPORTED_INSTANCE,
        "the series holds an instance without a valid SOP Instance UID (digits and dots, at most 64"
        " characters); it cannot be copied safely, so nothing was copied or deleted",
    )
