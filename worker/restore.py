"""Action `restore`: a series back from its archive into the store, by STOW-RS, then proved byte for byte.

The series folder is read once (worker.manifest.read_archive): the instances of its manifests of the same
series and store, else its `.dcm` objects. An archive whose objects do not match its manifest is
`verification_failed` before anything is written. The store's series is searched once, completely; an
instance it already has is read back (`transfer-syntax=*`) and compared (size and CRC32C) with the
archive: equal is skipped, different is `restore_conflict` and is never overwritten. Every other instance
is sent by STOW-RS, one per request, streamed from its object's listed generation (bounded memory),
concurrently, each retried on its own; the bytes sent are checked against the archive's size and CRC32C
as they stream, and a stream that differs is broken off before its end, so the store keeps nothing of it.
An instance the server already holds (failure reason 0x0111) is compared like the others (Orthanc lists a
duplicate as stored and keeps its own bytes: the read-back of the verification compares it).

Then verification: a complete search must list every archived instance, and every instance this delivery
stored is read back and compared with the archive (the skipped ones were just read back). `verified: true`
only for a byte-identical round trip; else a failed `verification_failed` event listing the differences.

At the deadline no new instance starts and the request is handed on; the continuation searches again and
skips (after comparing) what an earlier delivery stored, so its `restoredCount` counts only its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import google_crc32c
from google.api_core import exceptions as api_exceptions

from worker import operations, retries
from worker.errors import Code, PermanentError, RetryableError, SourceGone
from worker.job import HandedOn, Job, Outcome
from worker.layout import SeriesFolder
from worker.manifest import ArchiveContents, Archived, read_archive
from worker.models import Stow
from worker.part10 import peek_identity
from worker.request import RestoreMethod
from worker.search import SETTLE_MARGIN_SECONDS, complete_listing
from worker.storage import crc32c_base64
from worker.verify import (
    INSTANCE_RETRY_SLACK_SECONDS,
    archive_result,
    concurrently,
    difference,
    read_back,
    verification_failed,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Restored:
    """One archived instance now in the store: stored by this delivery, or found there with equal bytes."""

    sop_uid: str
    stored: bool  # False: skipped, already in the store
    checked: bool  # read back from the store and compared by this delivery


def restore(job: Job) -> Outcome:
    archive = read_archive(job.storage, SeriesFolder(job.destination(), job.request.series))
    if not archive.entries:
        raise PermanentError(
            Code.SERIES_NOT_FOUND, "the destination holds no archived instance of the series"
        )
    _check_archive(archive)
    if job.request.options.method is RestoreMethod.IMPORT:
        return _restore_by_import(job, archive)
    in_store = {instance.sop_uid for instance in complete_listing(job).instances}
    entries = [archive.entries[uid] for uid in sorted(archive.entries)]
    done = concurrently(
        job, entries, lambda entry: _restore_one(job, archive, entry, in_store), _uid, "restore"
    )
    if isinstance(done, HandedOn):
        return done
    verified = _verify(job, archive, done)
    if isinstance(verified, HandedOn):
        return verified
    restored = sum(1 for item in done.values() if item.stored)
    log.info("restore verified", extra={"instanceCount": len(entries), "restoredCount": restored})
    return {
        **archive_result(archive, len(entries), sum(entry.size for entry in entries)),
        "restoredCount": restored,
        "skippedCount": len(entries) - restored,
    }


def _restore_by_import(job: Job, archive: ArchiveContents) -> Outcome:
    """dicomStores.import of the series folder's `.dcm` objects (Healthcare API only), its operation
    waited on (a follow-up carries it near the deadline), then the same verification as STOW's. Instances
    the store already has are compared first: different bytes are a restore_conflict before anything is
    imported (the import itself skips an instance that exists, and never overwrites it)."""
    store = job.request.series.store
    if store is None:
        raise PermanentError(Code.INVALID_REQUEST, "options.method import needs a Healthcare API store")
    entries = [archive.entries[uid] for uid in sorted(archive.entries)]
    name = job.request.operation
    counts: dict[str, int] = {}
    checked: set[str] = set()
    if name is None:
        in_store = {instance.sop_uid for instance in complete_listing(job).instances}
        present = [entry for entry in entries if entry.sop_uid in in_store]
        compared = concurrently(job, present, lambda entry: _compare(job, archive, entry), _uid, "restore")
        if isinstance(compared, HandedOn):
            return compared
        checked = set(compared)
        folder = archive.folder
        operation = job.dicomweb.import_instances(store, folder.destination.uri(f"{folder.name}/*.dcm"))
        log.info("import operation started", extra={"operation": operation.name})
        name = operation.name
        counts = {"restoredCount": len(entries) - len(present), "skippedCount": len(present)}

    def not_found() -> PermanentError:
        return PermanentError(
            Code.IMPORT_FAILED, "the import operation is not found (unknown or expired)", {"operation": name}
        )

    finished = operations.wait(job, name, not_found=not_found)
    if isinstance(finished, HandedOn):
        return finished
    if finished.error is not None:
        raise PermanentError(
            Code.IMPORT_FAILED,
            "the import operation finished with an error; the restore was not verified",
            {"operation": name, "operationErrorCode": operations.error_code(finished)},
        )
    done = {
        entry.sop_uid: Restored(
            entry.sop_uid, stored=entry.sop_uid not in checked, checked=entry.sop_uid in checked
        )
        for entry in entries
    }
    verified = _verify(job, archive, done)
    if isinstance(verified, HandedOn):
        return verified
    # restoredCount and skippedCount only when this delivery started the import: a follow-up cannot tell.
    return {
        **archive_result(archive, len(entries), sum(entry.size for entry in entries)),
        **counts,
        "operation": name,
    }


def _uid(entry: Archived) -> str:
    return entry.sop_uid


def _check_archive(archive: ArchiveContents) -> None:
    """Every archived instance's object must be there with the size and CRC32C of its manifest entry."""
    differences = [difference(uid, problem) for uid, problem in archive.damaged()]
    if differences:
        raise verification_failed(differences, "the manifest and the archive's objects; nothing was restored")


def _restore_one(job: Job, archive: ArchiveContents, entry: Archived, in_store: set[str]) -> Restored:
    if entry.sop_uid in in_store:
        return _compare(job, archive, entry)
    if _stow(job, archive, entry) is Stow.PRESENT:  # stored meanwhile, or the search lagged
        return _compare(job, archive, entry)
    return Restored(entry.sop_uid, stored=True, checked=False)


def _compare(job: Job, archive: ArchiveContents, entry: Archived) -> Restored:
    """An instance the store has: skipped when its bytes are the archive's, never overwritten."""
    found = read_back(job, entry.sop_uid)
    if found is None:
        raise RetryableError(f"instance {entry.sop_uid} is listed by the store but cannot be read (404)")
    if found != (entry.size, entry.crc32c):
        raise PermanentError(
            Code.RESTORE_CONFLICT,
            f"the store holds instance {entry.sop_uid} with other bytes than the archive; it was not"
            " overwritten",
            {"sopInstanceUID": entry.sop_uid, "object": archive.folder.destination.uri(entry.object_name)},
        )
    return Restored(entry.sop_uid, stored=False, checked=True)


def _stow(job: Job, archive: ArchiveContents, entry: Archived) -> Stow:
    """STOW-RS of one instance streamed from its object, retried on its own within the deadline."""
    stored = archive.stored(entry.sop_uid)
    assert stored is not None  # _check_archive
    bucket = archive.folder.bucket

    def attempt() -> Stow:
        chunks = _exactly(job.storage.read(bucket, stored.name, stored.generation), entry)
        identity, chunks = peek_identity(chunks)
        if identity.sop_instance_uid != entry.sop_uid:
            raise PermanentError(
                Code.INSTANCE_UNREADABLE,
                f"object {stored.name} does not hold instance {entry.sop_uid} (its bytes name no SOP"
                " Instance UID that can be read, or another one); nothing was restored from it",
                {"sopInstanceUID": entry.sop_uid},
            )
        try:
            return job.dicomweb.store_instance(
                job.request.series,
                entry.sop_uid,
                chunks,
                entry.size,
                deadline=job.deadline + INSTANCE_RETRY_SLACK_SECONDS,
            )
        except SourceGone:
            raise PermanentError(
                Code.SERIES_NOT_FOUND, "the DICOM store answered 404 to STOW-RS; nothing was restored"
            ) from None

    retrying = retries.one_instance(
        job.remaining() + INSTANCE_RETRY_SLACK_SECONDS,
        on_error=lambda error: log.warning(
            "STOW-RS of an instance failed, retrying",
            extra={"sopInstanceUID": entry.sop_uid, "reason": str(error)},
        ),
    )
    try:
        result: Stow = retrying(attempt)()
    except api_exceptions.RetryError:
        raise RetryableError(f"STOW-RS of instance {entry.sop_uid} kept failing") from None
    return result


def _exactly(chunks: Iterator[bytes], entry: Archived) -> Iterator[bytes]:
    """The chunks, one behind, the last only once the whole stream measured the archive's size and
    CRC32C: bytes that differ never make a whole request body."""
    checksum = google_crc32c.Checksum()
    size = 0
    held: bytes | None = None
    for chunk in chunks:
        checksum.update(chunk)
        size += len(chunk)
        if held is not None:
            yield held
        held = chunk
    if (size, crc32c_base64(checksum)) != (entry.size, entry.crc32c):
        raise RetryableError(f"the object of instance {entry.sop_uid} read other bytes than archived")
    if held is not None:
        yield held


def _listing_with(job: Job, expected: set[str]) -> set[str]:
    """The series' SOP UIDs from a complete search, searched again with backoff while some expected one
    is missing, for at most SEARCH_SETTLE_SECONDS (search results may lag behind the store's writes)."""
    settle = job.settings.search_settle_seconds
    until = time.monotonic() + max(0.0, min(settle, job.remaining() - SETTLE_MARGIN_SECONDS))
    delay = 0.25
    while True:
        listed = {instance.sop_uid for instance in complete_listing(job).instances}
        if expected <= listed or time.monotonic() + delay > until:
            return listed
        time.sleep(delay)
        delay = min(delay * 2, 4.0)


def _verify(job: Job, archive: ArchiveContents, done: dict[str, Restored]) -> HandedOn | None:
    """A complete search lists every archived instance; each one stored by this delivery reads back
    with the archive's size and CRC32C (the skipped ones were read back and compared already)."""
    listed = _listing_with(job, set(done))
    differences = [difference(uid, "not_in_store") for uid in sorted(done) if uid not in listed]
    unchecked = [uid for uid in sorted(done) if uid in listed and not done[uid].checked]
    measured = concurrently(job, unchecked, lambda uid: read_back(job, uid), lambda uid: uid, "verification")
    if isinstance(measured, HandedOn):
        return measured
    for uid in unchecked:
        entry = archive.entries[uid]
        found = measured[uid]
        if found is None:
            differences.append(difference(uid, "not_in_store"))
        elif found != (entry.size, entry.crc32c):
            differences.append(difference(uid, "instance_differs"))
    if differences:
        raise verification_failed(
            sorted(differences, key=lambda d: d["sopInstanceUID"]), "the archive and the restored series"
        )
    return None
