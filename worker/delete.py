"""Actions `delete` and `archive`: the irreversible step, and only what is known to be safe.

`delete` asks for the whole series (DeleteSeries and, on the Healthcare API, its long-running operation,
polled to the end; near the deadline the wait is handed to a follow-up that carries the operation's name,
so the follow-up never DELETEs again). It reports `deleted: true` only once a search finds the series
empty.

`archive` never deletes a series. It copies the instances, checks every object against the bytes it read
from the source in this request, and then deletes exactly those instances, one by one. A search after the
deletes finds instances stored meanwhile; they are archived the same way in further rounds. `deleted:
true` only when the series is empty; an instance this request did not copy and check is never deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry

from worker.errors import Code, PermanentError, RetryableError, SourceGone
from worker.job import HandedOn, Job, Outcome
from worker.models import GcsLocation, Instance, Operation
from worker.retrieve import MANIFEST_NAME, Copied, SeriesCopy, write_manifest
from worker.search import Listing, find_instances, list_series

log = logging.getLogger(__name__)

NOT_FOUND = 5  # google.rpc.Code.NOT_FOUND
POLL_MARGIN_SECONDS = 5.0
ARCHIVE_ROUNDS = 3  # copy, check, delete; then again for instances stored meanwhile
ROUND_MARGIN_SECONDS = 30.0  # a new round starts only with this much time left before the deadline


class _NotDone(Exception):
    """The operation is still running (the poll's retry predicate)."""


# -- delete ---------------------------------------------------------------------------------------


def delete(job: Job) -> Outcome:
    """DELETE the series (or, in a follow-up, only wait on the operation already started), then check."""
    name = job.request.operation
    result: dict[str, Any] = {}
    absent = False
    if name is None:
        try:
            operation = job.dicomweb.delete_series(job.request.series)
        except SourceGone:
            operation, absent = None, True
        if operation is not None:
            log.info("delete operation started", extra={"operation": operation.name})
            name = operation.name
    if name is not None:
        result["operation"] = name
        finished = _wait(job, name)
        if isinstance(finished, HandedOn):
            return finished
        absent = finished.error is not None  # NOT_FOUND: any other error was raised by _wait
    listing = _settled(job, lambda instance: True)
    if listing.instances or not listing.consistent:
        if job.remaining() < POLL_MARGIN_SECONDS * 2 and name is not None:
            return job.hand_on("the series is not empty yet", operation=name)
        raise PermanentError(
            Code.SERIES_NOT_EMPTY,
            "the series is not empty after the delete; it was not reported deleted",
            {**result, "remainingCount": max(len(listing.instances), listing.metrics_count or 0)},
        )
    if absent:
        return {**result, "alreadyAbsent": True}
    return {**result, "alreadyAbsent": False, "deleted": True}


def _wait(job: Job, name: str) -> Operation | HandedOn:
    """Poll the operation with backoff until done; hand the wait on before the deadline."""
    store = job.request.series.store
    if store is None:
        raise PermanentError(Code.INVALID_REQUEST, "only a Healthcare API series has operations")

    def poll() -> Operation:
        operation = job.dicomweb.get_operation(name, store)
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
    if operation.error is None or operation.error.get("code") == NOT_FOUND:
        return operation
    code = operation.error.get("code")
    raise PermanentError(
        Code.DELETE_FAILED,
        "the delete operation finished with an error; the series was not reported deleted",
        {"operation": name, "operationErrorCode": code if isinstance(code, int) else None},
    )


def _settled(job: Job, lagging: Callable[[Instance], bool]) -> Listing:
    """The series after deletes. Search results can lag behind deletes (and behind the series metrics),
    so while the search still lists an instance `lagging` says was deleted, or disagrees with the
    metrics, search again with backoff, for at most SEARCH_SETTLE_SECONDS (never past the deadline)."""
    settle = job.settings.search_settle_seconds
    until = time.monotonic() + max(0.0, min(settle, job.remaining() - POLL_MARGIN_SECONDS))
    delay = 0.25
    while True:
        listing = list_series(job)
        if listing.consistent and not any(lagging(instance) for instance in listing.instances):
            return listing
        if time.monotonic() + delay > until:
            return listing
        time.sleep(delay)
        delay = min(delay * 2, 4.0)


# -- archive --------------------------------------------------------------------------------------


def archive(job: Job) -> Outcome:
    destination = job.destination()
    instances = find_instances_or_none(job)
    if not instances:
        return _already_archived(job, destination)
    archived: dict[str, Copied] = {}  # copied, checked and deleted by this delivery
    deleted = 0  # of those, how many this delivery's DELETE removed (the rest were gone already)
    for round_number in range(1, ARCHIVE_ROUNDS + 1):
        copy = SeriesCopy(job, destination, verify_sources=True)
        copied = copy.copy_all(instances)
        if isinstance(copied, HandedOn):
            return copied
        entries = [copied[instance.sop_uid] for instance in instances]
        _verify(job, copy, entries)
        manifest = write_manifest(job, copy, [*archived.values(), *entries])
        log.info("archive verified; deleting the instances", extra={"instanceCount": len(entries)})
        outcome = _delete_instances(job, [entry.sop_uid for entry in entries])
        if isinstance(outcome, HandedOn):
            return outcome
        deleted += outcome
        archived.update({entry.sop_uid: entry for entry in entries})
        listing = _settled(job, lambda instance: instance.sop_uid in archived)
        if not listing.instances and listing.consistent:
            items = list(archived.values())
            return {
                "instanceCount": len(items),
                "bytes": sum(item.size for item in items),
                "destination": destination.uri(copy.folder),
                "manifestUri": manifest.uri,
                "uploadedCount": sum(1 for item in items if item.uploaded),
                "skippedCount": sum(1 for item in items if not item.uploaded),
                "verified": True,
                "deletedCount": deleted,
                "alreadyAbsent": False,
                "deleted": True,
                "rounds": round_number,
            }
        instances = [instance for instance in listing.instances if instance.sop_uid not in archived]
        if not instances or round_number == ARCHIVE_ROUNDS or job.remaining() < ROUND_MARGIN_SECONDS:
            break
        log.info("instances were stored during the archive", extra={"instanceCount": len(instances)})
    if instances and round_number == ARCHIVE_ROUNDS:
        raise PermanentError(
            Code.SERIES_NOT_EMPTY,
            f"instances kept arriving: {len(archived)} were archived and deleted, {len(listing.instances)}"
            " remain in the series and were not deleted",
            {
                "archivedCount": len(archived),
                "remainingCount": len(listing.instances),
                "manifestUri": manifest.uri,
            },
        )
    # Time is short, or the search still lists deleted instances (or disagrees with the series
    # metrics) after SEARCH_SETTLE_SECONDS: a fresh delivery searches again and archives what it finds.
    return job.hand_on("the series is not empty yet")


def find_instances_or_none(job: Job) -> list[Instance]:
    """The series' instances; an absent store or study is an empty series here (archived before?)."""
    try:
        return find_instances(job)
    except PermanentError as error:
        if error.code is Code.SERIES_NOT_FOUND:
            return []
        raise


def _verify(job: Job, copy: SeriesCopy, entries: list[Copied]) -> None:
    """Every object must be in the bucket with the size and CRC32C of the bytes read from the source."""
    differences: list[dict[str, Any]] = []
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


def _delete_instances(job: Job, sop_uids: Iterable[str]) -> int | HandedOn:
    """Delete exactly these instances, concurrently, each retried with backoff (a lost answer's retry
    finds it absent). Returns how many this delivery deleted; hands on when the deadline comes first."""
    series = job.request.series

    def delete_one(sop_uid: str) -> bool | None:
        if job.remaining() <= 0:
            return None  # not started: the follow-up copies, checks and deletes it again
        retrying = api_retry.Retry(
            predicate=api_retry.if_exception_type(RetryableError),
            initial=0.5,
            maximum=8.0,
            multiplier=2.0,
            timeout=max(job.remaining(), 1.0),
        )
        try:
            deleted: bool = retrying(job.dicomweb.delete_instance)(series, sop_uid)
        except api_exceptions.RetryError:
            raise RetryableError(f"deleting instance {sop_uid} kept failing") from None
        return deleted

    with ThreadPoolExecutor(job.settings.concurrency, thread_name_prefix="delete") as pool:
        outcomes = list(pool.map(delete_one, sop_uids))
    if any(outcome is None for outcome in outcomes):
        return job.hand_on("deadline during the deletes")
    return sum(1 for outcome in outcomes if outcome)


def _already_archived(job: Job, destination: GcsLocation) -> Outcome:
    """The source has no such series: an earlier delivery may have archived it (a redelivery, or one
    whose event was lost). Only a manifest this worker wrote for the same series of the same store says
    so; without one the series is not found. Nothing is claimed verified or deleted by this delivery."""
    folder = SeriesCopy(job, destination).folder
    series = job.request.series
    source_store = series.store.name if series.store is not None else "dicomweb"
    for stored in reversed(job.storage.json_versions(destination.bucket, f"{folder}/{MANIFEST_NAME}")):
        body = job.storage.read_json(destination.bucket, stored.name)
        if (
            isinstance(body, dict)
            and body.get("sourceStore") == source_store
            and body.get("series") == series.source
            and isinstance(body.get("instanceCount"), int)
        ):
            log.info("the series is absent from the source and its manifest is in the bucket")
            return {
                "instanceCount": body["instanceCount"],
                "bytes": body.get("bytes"),
                "destination": body.get("destination"),
                "manifestUri": stored.uri,
                "alreadyAbsent": True,
            }
    raise PermanentError(Code.SERIES_NOT_FOUND, "the series has no instances in the source")
