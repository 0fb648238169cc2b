"""Action `archive`: copy, check, then delete exactly what was checked; never lose an instance.

It never deletes a series. It copies the instances (as `retrieve` does, re-reading the source for every
object already in the bucket unless this same request wrote it), checks every object against the bytes
read from the source, writes the manifest, and then deletes exactly those instances, one by one. A search
after the deletes finds instances stored meanwhile; they are archived the same way in further rounds.
`deleted: true` only when the series is then empty; an instance this request did not copy and check is
never deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from google.api_core import exceptions as api_exceptions

from worker import retries
from worker.errors import Code, PermanentError, RetryableError
from worker.job import HandedOn, Job, Outcome
from worker.layout import SeriesFolder
from worker.manifest import Copied, copied_by, latest_manifest, manifests, write_manifest
from worker.models import GcsLocation, Instance
from worker.pool import BoundedPool
from worker.request import Mode
from worker.retrieve import SeriesCopy
from worker.search import complete_listing, settled

log = logging.getLogger(__name__)

ARCHIVE_ROUNDS = 3  # copy, check, delete; then again for instances stored meanwhile
ROUND_MARGIN_SECONDS = 30.0  # a new round starts only with this much time left before the deadline


def archive(job: Job) -> Outcome:
    destination = job.destination()
    listing = complete_listing(job)
    instances = listing.instances  # absent: empty (archived before?)
    if not instances:
        return _already_archived(job, destination)
    # Copied, checked and deleted by this request: by its earlier deliveries (handed on part-way), then
    # by this one. The manifest and the event speak for the whole request.
    archived = _deleted_by_earlier_deliveries(job, SeriesFolder(destination, job.request.series), instances)
    deleted = 0  # how many this delivery's DELETEs removed (the rest were gone already)
    mode: Mode | None = None  # as the first round read the series, so do the later ones (the event's mode)
    for round_number in range(1, ARCHIVE_ROUNDS + 1):
        copy = SeriesCopy(job, destination, verify_sources=True, mode=mode)
        copied = copy.copy_all(instances, listing.metrics)  # the metrics choose only in the first round
        if isinstance(copied, HandedOn):
            return copied
        mode = copy.mode
        entries = [copied[instance.sop_uid] for instance in instances]
        _verify(job, copy, entries)
        everything = [*archived.values(), *entries]
        manifest = write_manifest(
            job.storage, copy.folder, copy.transfer_syntax, everything, job.request.request_id
        )
        log.info("archive verified; deleting the instances", extra={"instanceCount": len(entries)})
        outcome = _delete_instances(job, [entry.sop_uid for entry in entries])
        if isinstance(outcome, HandedOn):
            return outcome
        deleted += outcome
        archived.update({entry.sop_uid: entry for entry in entries})
        listing = settled(job, lambda instance: instance.sop_uid in archived)
        if not listing.instances and listing.consistent:
            items = list(archived.values())
            return {
                "instanceCount": len(items),
                "bytes": sum(item.size for item in items),
                "destination": copy.folder.uri,
                "manifestUri": manifest.uri,
                "uploadedCount": sum(1 for item in items if item.uploaded),
                "skippedCount": sum(1 for item in items if not item.uploaded),
                "verified": True,
                "deletedCount": deleted,
                "alreadyAbsent": False,
                "deleted": True,
                "rounds": round_number,
                "mode": str(mode),
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


def _verify(job: Job, copy: SeriesCopy, entries: list[Copied]) -> None:
    """Every object must be in the bucket with the size and CRC32C of the bytes read from the source."""
    differences: list[dict[str, Any]] = []
    objects = {item.name: item for item in job.storage.list(copy.folder.location)}
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


def _deleted_by_earlier_deliveries(
    job: Job, folder: SeriesFolder, instances: list[Instance]
) -> dict[str, Copied]:
    """What earlier deliveries of this request archived and deleted: the entries of its own manifests
    (the requestId in them) for instances no longer in the source whose objects are still in the bucket
    with the recorded size and CRC32C. Another request's manifests do not count."""
    found = copied_by(manifests(job.storage, folder), folder, job.request.request_id)
    if not found:
        return {}
    present = {instance.sop_uid for instance in instances}
    objects = {item.name: item for item in job.storage.list(folder.location)}
    carried: dict[str, Copied] = {}
    for uid, entry in found.items():
        stored = objects.get(entry.object_name)
        if (
            uid not in present
            and stored is not None
            and (stored.size, stored.crc32c) == (entry.size, entry.crc32c)
        ):
            carried[uid] = entry
    return carried


def _delete_instances(job: Job, sop_uids: Sequence[str]) -> int | HandedOn:
    """Delete exactly these instances, concurrently, each retried with backoff (a lost answer's retry
    finds it absent). Returns how many this delivery deleted; hands on when the deadline comes first."""
    series = job.request.series

    def delete_one(sop_uid: str) -> bool:
        retrying = retries.one_instance(job.remaining())
        try:
            deleted: bool = retrying(job.dicomweb.delete_instance)(series, sop_uid)
        except api_exceptions.RetryError:
            raise RetryableError(f"deleting instance {sop_uid} kept failing") from None
        return deleted

    outcomes: list[bool] = []
    with BoundedPool(job.settings.concurrency, outcomes.append, name="delete") as pool:
        for sop_uid in sop_uids:
            pool.wait_for_room()
            if job.remaining() <= 0:
                break  # not started: a follow-up copies, checks and deletes it again
            pool.submit(delete_one, sop_uid)
        pool.wait_all()
    if len(outcomes) < len(sop_uids):
        return job.hand_on("deadline during the deletes")
    return sum(outcomes)


def _already_archived(job: Job, destination: GcsLocation) -> Outcome:
    """The source has no such series: an earlier delivery may have archived it (a redelivery, or one
    whose event was lost). Only a manifest this worker wrote for the same series of the same store says
    so; without one the series is not found. Nothing is claimed verified or deleted by this delivery."""
    found = latest_manifest(job.storage, SeriesFolder(destination, job.request.series))
    if found is None:
        raise PermanentError(Code.SERIES_NOT_FOUND, "the series has no instances in the source")
    log.info("the series is absent from the source and its manifest is in the bucket")
    result = {"instanceCount": found.body["instanceCount"], "manifestUri": found.stored.uri}
    for key, kind in (("bytes", int), ("destination", str)):  # copied only when of the schema's type
        if isinstance(found.body.get(key), kind):
            result[key] = found.body[key]
    return {**result, "alreadyAbsent": True}
