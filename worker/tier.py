"""Action `tier`: a series moved to another blob storage class inside its Healthcare API store, then checked.

A filter file naming the series (`/studies/X/series/Y`, one line) is written create-only in the series
folder under the destination (`tier-ARCHIVE.txt`; an object of that name with other bytes is never
replaced: the next free version `tier-ARCHIVE.2.txt`, ... is written, and one that holds exactly these
bytes is used as it is). `dicomStores.setBlobStorageSettings` is called with that filter and the class of
`options.storageClass`; its operation is waited on (near the deadline a signed follow-up carries it, and
never calls setBlobStorageSettings again). An operation that ends with an error is `tier_failed`.

Then every instance the series holds is asked its class (`getStorageInfo`): the event reports the
class, `instanceCount` and `inClassCount`, and `verified: true` only when every instance is in the class.
Other DICOMweb servers have no storage classes: `tier_not_supported`.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import google_crc32c

from worker import operations
from worker.errors import Code, ObjectExists, PermanentError, SourceGone, invalid
from worker.job import HandedOn, Job, Outcome
from worker.layout import SeriesFolder
from worker.models import Instance
from worker.request import StorageClass
from worker.search import find_instances
from worker.storage import crc32c_base64
from worker.verify import concurrently

log = logging.getLogger(__name__)

FILTER_VERSIONS = 20  # versions of a filter file's name tried before giving up
FILTER_CONTENT_TYPE = "text/plain"


def tier(job: Job) -> Outcome:
    storage_class = job.request.options.storage_class
    if storage_class is None:
        raise invalid("options.storageClass is required for tier")
    store = job.request.series.store
    if not job.dicomweb.healthcare or store is None:
        raise PermanentError(
            Code.TIER_NOT_SUPPORTED, "storage classes inside a store are the Healthcare API's only"
        )
    name = job.request.operation
    if name is None:
        if not find_instances(job):
            raise PermanentError(Code.SERIES_NOT_FOUND, "the series has no instances; nothing was tiered")
        filter_uri = write_filter(job, SeriesFolder(job.destination(), job.request.series), storage_class)
        operation = job.dicomweb.set_blob_storage_class(store, str(storage_class), filter_uri)
        log.info("setBlobStorageSettings operation started", extra={"operation": operation.name})
        name = operation.name

    def not_found() -> PermanentError:
        return PermanentError(
            Code.TIER_FAILED,
            "the setBlobStorageSettings operation is not found (unknown or expired)",
            {"operation": name},
        )

    finished = operations.wait(job, name, not_found=not_found)
    if isinstance(finished, HandedOn):
        return finished
    if finished.error is not None:
        raise PermanentError(
            Code.TIER_FAILED,
            "the setBlobStorageSettings operation finished with an error; the series was not verified",
            {"operation": name, "operationErrorCode": operations.error_code(finished)},
        )
    # From here a follow-up only checks: it carries the finished operation, never starts another.
    checking = replace(job, request=replace(job.request, operation=name))
    instances = find_instances(checking)
    found = concurrently(
        checking, instances, lambda instance: _storage_class(checking, instance), _uid, "storage class check"
    )
    if isinstance(found, HandedOn):
        return found
    in_class = sum(1 for value in found.values() if value == storage_class.value)
    log.info("tier checked", extra={"instanceCount": len(instances), "inClassCount": in_class})
    return {
        "storageClass": str(storage_class),
        "instanceCount": len(instances),
        "inClassCount": in_class,
        "verified": bool(instances) and in_class == len(instances),
        "operation": name,
    }


def filter_line(job: Job) -> bytes:
    """The filter file's content: the series' resource path, one line."""
    return f"/{job.request.series.dicomweb_path}\n".encode("ascii")


def write_filter(job: Job, folder: SeriesFolder, storage_class: StorageClass) -> str:
    """The gs:// URI of a filter file naming the series, written create-only under the series folder:
    the first of `tier-CLASS.txt`, `tier-CLASS.2.txt`, ... that is free or holds exactly these bytes."""
    data = filter_line(job)
    checksum = crc32c_base64(google_crc32c.Checksum(data))
    for version in range(1, FILTER_VERSIONS + 1):
        suffix = "" if version == 1 else f".{version}"
        name = folder.record(f"tier-{storage_class}{suffix}.txt")
        found = job.storage.stat(folder.bucket, name)
        if found is None:
            try:
                job.storage.upload(
                    folder.bucket,
                    name,
                    iter([data]),
                    metadata={"requestId": job.request.request_id},
                    content_type=FILTER_CONTENT_TYPE,
                )
                return folder.destination.uri(name)
            except ObjectExists:  # another delivery wrote it meanwhile: compare
                found = job.storage.stat(folder.bucket, name)
        if found is not None and (found.size, found.crc32c) == (len(data), checksum):
            return folder.destination.uri(name)
    raise PermanentError(
        Code.DESTINATION_CONFLICT,
        f"{FILTER_VERSIONS} filter file names under the series folder hold other bytes; nothing was tiered",
    )


def _storage_class(job: Job, instance: Instance) -> str | None:
    """The instance's storage class; None for one gone meanwhile (it is not in the class)."""
    try:
        return job.dicomweb.instance_storage_class(job.request.series, instance.sop_uid)
    except SourceGone:
        return None


def _uid(instance: Instance) -> str:
    return instance.sop_uid
