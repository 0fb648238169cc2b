"""Action `verify`: an archive checked byte for byte, with no writes but the event.

When the store has the series, every instance it has is read now (`transfer-syntax=*`) and must be in the
series folder as an object of the same size and CRC32C (and agree with the manifest's entry, when there is
a manifest), and every archived instance (the manifest's, else the folder's `.dcm` objects) must still be
in the store. When the store no longer has the series, every manifest entry must be in the bucket with
its recorded size and CRC32C; without a manifest there is nothing to check the objects against, and the
archive is not claimed verified.

Differences are a failed `verification_failed` event naming each instance and its problem:
`object_missing` (archived but its object is gone), `object_differs` (the object's size or CRC32C is not
the store's or the manifest's), `not_in_archive` (the store has an instance the archive lacks),
`not_in_store` (the archive has an instance the store lacks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.api_core import exceptions as api_exceptions

from worker import retries
from worker.errors import Code, PermanentError, RetryableError, SourceGone
from worker.job import HandedOn, Job, Outcome
from worker.layout import SeriesFolder
from worker.manifest import ArchiveContents, read_archive
from worker.pool import BoundedPool
from worker.search import complete_listing
from worker.storage import measure

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_R = TypeVar("_R")

INSTANCE_RETRY_SLACK_SECONDS = 30.0
MAX_LISTED_DIFFERENCES = 100

Measured = tuple[int, str]  # size, CRC32C (base64)


def read_back(job: Job, sop_uid: str) -> Measured | None:
    """One instance read from the store exactly as stored (`transfer-syntax=*`) and measured; None when
    the store does not have it (404). Retried on its own within the deadline."""
    series = job.request.series

    def once() -> Measured | None:
        try:
            with job.dicomweb.retrieve_instance(
                series, sop_uid, "*", deadline=job.deadline + INSTANCE_RETRY_SLACK_SECONDS
            ) as part:
                return measure(part.iter_chunks())
        except SourceGone:
            return None

    retrying = retries.one_instance(job.remaining() + INSTANCE_RETRY_SLACK_SECONDS)
    try:
        found: Measured | None = retrying(once)()
    except api_exceptions.RetryError:
        raise RetryableError(f"reading instance {sop_uid} back kept failing") from None
    return found


def concurrently(
    job: Job, items: Sequence[_T], task: Callable[[_T], _R], key: Callable[[_T], str], name: str
) -> dict[str, _R] | HandedOn:
    """`task` for every item, CONCURRENCY at a time, results by `key`. Past the deadline no new item
    starts (except a first batch, so every delivery makes progress) and the request is handed on."""
    done: dict[str, _R] = {}
    concurrency = job.settings.concurrency

    def run(item: _T) -> tuple[str, _R]:
        return key(item), task(item)

    def record(result: tuple[str, _R]) -> None:
        done[result[0]] = result[1]

    with BoundedPool(concurrency, record, name=name) as pool:
        for started, item in enumerate(items):
            pool.wait_for_room()
            if job.remaining() <= 0 and started >= concurrency:
                break
            pool.submit(run, item)
        pool.wait_all()
    if len(done) < len({key(item) for item in items}):
        return job.hand_on(f"deadline during {name}")
    return done


def difference(sop_uid: str, problem: str) -> dict[str, str]:
    return {"sopInstanceUID": sop_uid, "problem": problem}


def verification_failed(differences: list[dict[str, str]], what: str) -> PermanentError:
    return PermanentError(
        Code.VERIFICATION_FAILED,
        f"{len(differences)} differences between {what}",
        {"differenceCount": len(differences), "differences": differences[:MAX_LISTED_DIFFERENCES]},
    )


def archive_result(archive: ArchiveContents, count: int, size: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "instanceCount": count,
        "bytes": size,
        "verified": True,
        "destination": archive.folder.uri,
    }
    if archive.manifest is not None:
        result["manifestUri"] = archive.manifest.stored.uri
    return result


def verify(job: Job) -> Outcome:
    archive = read_archive(job.storage, SeriesFolder(job.destination(), job.request.series))
    listing = complete_listing(job)
    if listing.instances:
        return _against_store(job, archive, sorted(instance.sop_uid for instance in listing.instances))
    return _against_manifest(archive)


def _against_store(job: Job, archive: ArchiveContents, in_store: list[str]) -> Outcome:
    measured = concurrently(job, in_store, lambda uid: read_back(job, uid), lambda uid: uid, "verify")
    if isinstance(measured, HandedOn):
        return measured
    differences: list[dict[str, str]] = []
    total = 0
    for uid in in_store:
        found, stored, entry = measured[uid], archive.stored(uid), archive.entries.get(uid)
        if found is None:  # listed, then gone: a redelivery searches again
            raise RetryableError(f"instance {uid} left the store during the verification")
        total += found[0]
        if stored is None:
            differences.append(difference(uid, "object_missing" if entry is not None else "not_in_archive"))
        elif (stored.size, stored.crc32c) != found or (
            entry is not None and (entry.size, entry.crc32c) != found
        ):
            differences.append(difference(uid, "object_differs"))
    listed = set(in_store)
    differences += [difference(uid, "not_in_store") for uid in sorted(archive.entries) if uid not in listed]
    if differences:
        raise verification_failed(differences, "the store and the archive; nothing was changed")
    log.info("the archive matches the store", extra={"instanceCount": len(in_store)})
    result = archive_result(archive, len(in_store), total)
    return {**result, "checkedAgainst": "store"}


def _against_manifest(archive: ArchiveContents) -> Outcome:
    if archive.manifest is None:
        if not archive.entries:
            raise PermanentError(
                Code.SERIES_NOT_FOUND, "neither the store nor the destination holds the series"
            )
        raise PermanentError(
            Code.VERIFICATION_FAILED,
            "the store no longer has the series and its folder has no manifest: the objects cannot be"
            " checked against anything",
            {"differenceCount": 0, "differences": []},
        )
    differences = [difference(uid, problem) for uid, problem in archive.damaged()]
    if differences:
        raise verification_failed(differences, "the manifest and the bucket; nothing was changed")
    entries = archive.entries.values()
    result = archive_result(archive, len(entries), sum(entry.size for entry in entries))
    return {**result, "checkedAgainst": "manifest"}
