"""Actions `delete` and `archive`: the irreversible step, taken only when it is known to be safe.

`delete` DELETEs the series and, on the Healthcare API, waits on the long-running operation it returns:
success is reported only once the operation is done without error. Near the deadline the wait is handed
to a follow-up message that carries the operation's name, so the follow-up waits and never DELETEs again.

`archive` copies the series (as `retrieve` does), then verifies the copy against a fresh search of the
source and a listing of the bucket; every instance must be there with the size and CRC32C of the bytes
read from the source in this delivery. Only then does it delete.
"""

from __future__ import annotations

import logging
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry

from worker.app import HandedOn, Job, Outcome
from worker.dicomweb import Operation, SourceGone
from worker.errors import Code, PermanentError, RetryableError
from worker.models import GcsLocation
from worker.retrieve import MANIFEST_NAME, Copied, SeriesCopy, copy_series
from worker.search import find_instances

log = logging.getLogger(__name__)

NOT_FOUND = 5  # google.rpc.Code.NOT_FOUND
POLL_MARGIN_SECONDS = 5.0


class _NotDone(Exception):
    """The operation is still running (the poll's retry predicate)."""


def delete(job: Job) -> Outcome:
    return _delete(job, {})


def _delete(job: Job, result: dict[str, Any]) -> Outcome:
    """DELETE the series (or, in a follow-up, only wait on the operation already started)."""
    name = job.request.operation
    if name is None:
        try:
            operation = job.dicomweb.delete_series(job.request.series)
        except SourceGone:
            log.info("the series is already absent")
            return {**result, "alreadyAbsent": True}
        if operation is None:  # a server that deletes synchronously
            return {**result, "alreadyAbsent": False, "deleted": True}
        log.info("delete operation started", extra={"operation": operation.name})
        name = operation.name
    return _wait(job, name, result)


def _wait(job: Job, name: str, result: dict[str, Any]) -> Outcome:
    """Poll the operation with backoff until done; hand the wait on before the deadline."""

    def poll() -> Operation:
        operation = job.dicomweb.get_operation(name)
        if not operation.done:
            raise _NotDone()
        return operation

    budget = job.remaining() - min(POLL_MARGIN_SECONDS, job.settings.deadline_seconds / 4)
    if budget <= 0:
        return job.hand_on("no time left to wait on the operation", operation=name)
    polling = api_retry.Retry(
        predicate=api_retry.if_exception_type(_NotDone),
        initial=0.5,
        maximum=10.0,
        multiplier=1.5,
        timeout=budget,
    )
    try:
        operation = polling(poll)()
    except SourceGone:
        raise PermanentError(
            Code.DELETE_FAILED,
            "the delete operation is not found (unknown or expired); the series was not reported deleted",
            {"operation": name},
        ) from None
    except (api_exceptions.RetryError, _NotDone):
        return job.hand_on("operation still running", operation=name)
    except RetryableError as error:
        # Polling failed for now. Redelivering this message would DELETE again: hand on the wait instead.
        log.warning("polling the operation failed; handing the wait on", extra={"reason": str(error)})
        return job.hand_on("operation polling failed", operation=name)
    base = {**result, "operation": name}
    if operation.error is None:
        return {**base, "alreadyAbsent": False, "deleted": True}
    code = operation.error.get("code")
    if code == NOT_FOUND:
        return {**base, "alreadyAbsent": True}
    raise PermanentError(
        Code.DELETE_FAILED,
        f"the delete operation finished with error code {code}; the series was not reported deleted",
        {"operation": name, "operationErrorCode": code},
    )


def archive(job: Job) -> Outcome:
    if job.request.operation is not None:  # a follow-up: the copy was verified and the delete started
        return _delete(job, _manifest_result(job))
    try:
        copied = copy_series(job, verify_sources=True)
    except PermanentError as error:
        if error.code is Code.SERIES_NOT_FOUND:
            return _already_archived(job, error)
        if error.code is not Code.DESTINATION_CONFLICT:
            raise
        raise PermanentError(
            Code.VERIFICATION_FAILED,
            f"an object in the bucket differs from the source; nothing was deleted ({error.message})",
            {"differenceCount": 1, "differences": [{**error.details, "problem": "object_differs"}]},
        ) from None
    if isinstance(copied, HandedOn):
        return copied
    copy, result, entries = copied
    _verify(job, copy, entries)
    log.info("archive verified; deleting the source series", extra={"instanceCount": len(entries)})
    return _delete(job, {**result, "verified": True})


def _verify(job: Job, copy: SeriesCopy, entries: list[Copied]) -> None:
    """The copy must hold every instance the source has now, each object as the source's bytes were."""
    differences: list[dict[str, Any]] = []
    fresh = {instance.sop_uid for instance in find_instances(job)}
    copied = {entry.sop_uid: entry for entry in entries}
    for sop_uid in sorted(fresh - copied.keys()):
        differences.append({"sopInstanceUID": sop_uid, "problem": "not_copied"})
    for sop_uid in sorted(copied.keys() - fresh):
        differences.append({"sopInstanceUID": sop_uid, "problem": "not_in_source"})
    objects = {
        item.name: item for item in job.storage.list(GcsLocation(copy.destination.bucket, copy.folder))
    }
    for entry in entries:
        found = objects.get(entry.object_name)
        if found is None:
            differences.append({"sopInstanceUID": entry.sop_uid, "problem": "object_missing"})
        elif (found.size, found.crc32c) != (entry.size, entry.crc32c):
            differences.append({"sopInstanceUID": entry.sop_uid, "problem": "object_differs"})
    if differences:
        raise PermanentError(
            Code.VERIFICATION_FAILED,
            f"{len(differences)} differences between the source and the copy; nothing was deleted",
            {"differenceCount": len(differences), "differences": differences[:100]},
        )


def _already_archived(job: Job, error: PermanentError) -> Outcome:
    """The source has no such series: an earlier delivery may have archived it already (a redelivery, or
    a DELETE whose answer was lost). Its manifest in the bucket tells; without one it is not found."""
    result = _manifest_result(job)
    if "instanceCount" not in result:
        raise error
    log.info("the series is absent from the source and its manifest is in the bucket")
    del result["verified"]  # not by this delivery: the copy is as its manifest says
    return {**result, "alreadyAbsent": True}


def _manifest_result(job: Job) -> dict[str, Any]:
    destination = job.destination()
    folder = destination.object_name(job.request.series.study_uid, job.request.series.series_uid)
    name = f"{folder}/{MANIFEST_NAME}"
    body = job.storage.read_json(destination.bucket, name)
    result: dict[str, Any] = {"verified": True, "manifestUri": destination.uri(name)}
    if isinstance(body, dict):
        result.update({key: body.get(key) for key in ("instanceCount", "bytes", "destination")})
    return result
