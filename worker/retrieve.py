"""Action `retrieve`: copy a series into Cloud Storage byte for byte, streaming, concurrent, idempotent.

Objects are named `{prefix}/{study}/{series}/{sop}.dcm` (the layout of the Healthcare API's export,
which `dicomStores.import` reads back). Mode `auto` (the default) reads a series of small instances with
one RetrieveSeries request and one of large instances with a RetrieveInstance each (`choose_mode`).
Each is written create-only; an object this worker already
wrote for the same instance and transfer syntax counts as done (it was checked end to end when it was
written); any other existing object is compared with the source's bytes, and one that differs is never
overwritten. So a redelivered or continued request finishes without duplicates, holes or re-uploads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from google.api_core import exceptions as api_exceptions

from worker import retries
from worker.errors import Code, InstanceGone, ObjectExists, PermanentError, RetryableError, SourceGone
from worker.job import HandedOn, Job, Outcome
from worker.layout import METADATA_NAME, SeriesFolder
from worker.manifest import Copied, write_manifest
from worker.models import GcsLocation, Instance, SeriesMetrics, StoredObject, is_uid
from worker.multipart import content_type_params
from worker.part10 import peek_identity
from worker.pool import BoundedPool
from worker.ports import Part
from worker.request import Mode
from worker.search import find_series
from worker.storage import SMALL_OBJECT_BYTES, measure

log = logging.getLogger(__name__)
_R = TypeVar("_R")

WRITER = "dicom-series-worker"
INSTANCE_RETRY_SLACK_SECONDS = 30.0
SERIES_BUFFER_BYTES = 32 * 1024 * 1024  # mode series: parts read ahead and waiting on their upload
SERIES_MODE_MAX_BYTES = SMALL_OBJECT_BYTES  # mode auto: series mode up to this average instance size


def choose_mode(requested: Mode, metrics: SeriesMetrics | None) -> Mode | None:
    """The mode to copy a series in; None when `auto` has no average size to go by (a DICOMweb server
    without series metrics): the first part of a RetrieveSeries response decides (`_copy_series_stream`).

    RetrieveSeries streams a series in one request, which suits many small instances (a round trip per
    instance saved); it streams parts one after the other, so large instances go faster each in its
    own RetrieveInstance, concurrently, each upload streaming in one request."""
    if requested is not Mode.AUTO:
        return requested
    average = metrics.average_instance_bytes if metrics is not None else None
    if average is None:
        return None
    return Mode.SERIES if average <= SERIES_MODE_MAX_BYTES else Mode.INSTANCES


class SeriesCopy:
    """Copies the instances of one series under one destination, for one job."""

    def __init__(
        self, job: Job, destination: GcsLocation, *, verify_sources: bool = False, mode: Mode | None = None
    ) -> None:
        """`mode`: read the series so, whatever the request asked (archive's later rounds keep the
        first round's)."""
        self.job = job
        self.requested = mode or job.request.options.mode
        self.verify_sources = verify_sources  # archive: compare every existing object with the source
        self.destination = destination
        self.transfer_syntax = job.request.options.transfer_syntax
        self.folder = SeriesFolder(destination, job.request.series)
        self.present: dict[str, StoredObject] | None = None  # the series folder's objects, once listed
        self.mode: Mode | None = None  # how copy_all read the series (the event's `mode`)

    @property
    def exchange_deadline(self) -> float:
        """When a transfer from the source is cut off, however slowly it comes (time.monotonic)."""
        return self.job.deadline + INSTANCE_RETRY_SLACK_SECONDS

    def object_name(self, sop_uid: str) -> str:
        return self.folder.instance(sop_uid)

    def metadata(self, instance: Instance, transfer_syntax: str | None) -> dict[str, str]:
        return {
            "writer": WRITER,
            "studyInstanceUID": instance.study_uid,
            "seriesInstanceUID": instance.series_uid,
            "sopInstanceUID": instance.sop_uid,
            "sopClassUID": instance.sop_class_uid or "",
            "transferSyntaxUID": transfer_syntax or "",
            "requestedTransferSyntax": self.transfer_syntax,
            "sourceStore": self.job.request.series.store_name,
            "requestId": self.job.request.request_id,
        }

    # -- one instance ------------------------------------------------------------------------------

    def copy_instance(self, instance: Instance) -> Copied:
        """Copy one instance (RetrieveInstance), retrying a broken transfer within the deadline."""
        existing = self._existing(instance.sop_uid)
        if existing is not None:
            return self.settle_existing(existing, instance, None)
        retrying = retries.one_instance(
            self.job.remaining() + INSTANCE_RETRY_SLACK_SECONDS,
            on_error=lambda error: log.warning(
                "instance transfer failed, retrying",
                extra={"sopInstanceUID": instance.sop_uid, "reason": str(error)},
            ),
        )
        try:
            copied: Copied = retrying(self._transfer_instance)(instance)
        except api_exceptions.RetryError as error:  # the retry budget ran out
            raise RetryableError(f"instance {instance.sop_uid} failed: {error}") from None
        return copied

    def _transfer_instance(self, instance: Instance) -> Copied:
        return self._from_source(
            instance, lambda part: self.store_part(instance, part.headers, part.iter_chunks())
        )

    def _from_source(self, instance: Instance, consume: Callable[[Part], _R]) -> _R:
        """RetrieveInstance, the part handed to `consume`; a 404 is InstanceGone (a redelivery searches
        again)."""
        try:
            with self.job.dicomweb.retrieve_instance(
                self.job.request.series,
                instance.sop_uid,
                self.transfer_syntax,
                deadline=self.exchange_deadline,
            ) as part:
                return consume(part)
        except SourceGone:
            raise InstanceGone(f"instance {instance.sop_uid} is no longer in the source (404)") from None

    def store_part(self, instance: Instance, headers: Mapping[str, str], body: Iterator[bytes]) -> Copied:
        """Upload one streamed part as the instance's object, create-only."""
        identity, chunks = peek_identity(body)
        if identity.sop_instance_uid is None:
            raise PermanentError(
                Code.INSTANCE_UNREADABLE,
                f"the bytes the server sent for instance {instance.sop_uid} name no SOP Instance UID that"
                " can be read (or two that differ); nothing was stored",
                {"sopInstanceUID": instance.sop_uid},
            )
        if identity.sop_instance_uid != instance.sop_uid:
            raise RetryableError(f"the server sent another instance than {instance.sop_uid}")
        transfer_syntax = content_type_params(headers.get("content-type", "")).get("transfer-syntax")
        if transfer_syntax is None or not is_uid(transfer_syntax):
            transfer_syntax = identity.transfer_syntax_uid if is_uid(identity.transfer_syntax_uid) else None
        name = self.object_name(instance.sop_uid)
        try:
            length = _content_length(headers)
            stored = self.job.storage.upload(
                self.destination.bucket,
                name,
                chunks,
                metadata=self.metadata(instance, transfer_syntax),
                size=length if length >= 0 else None,
            )
        except ObjectExists:
            existing = self.job.storage.stat(self.destination.bucket, name)
            if existing is None:
                raise RetryableError(f"object {name} was there and then was not") from None
            return self.settle_existing(existing, instance, None)
        return Copied(
            instance.sop_uid,
            instance.sop_class_uid,
            name,
            stored.size,
            stored.crc32c,
            transfer_syntax,
            uploaded=True,
        )

    def settle_existing(
        self, existing: StoredObject, instance: Instance, source: Iterator[bytes] | None
    ) -> Copied:
        """An object is already there: done if it is ours for this instance, else compared with the source."""
        mine = (
            existing.metadata.get("writer") == WRITER
            and existing.metadata.get("sopInstanceUID") == instance.sop_uid
            and existing.metadata.get("requestedTransferSyntax") == self.transfer_syntax
        )
        # Written by an earlier delivery of this same request: Cloud Storage checked its CRC32C against
        # the bytes that delivery read from this source, so archive need not read the source again (a
        # continuation would otherwise re-read everything copied before it and never finish).
        this_request = (
            mine
            and existing.metadata.get("requestId") == self.job.request.request_id
            and existing.metadata.get("sourceStore") == self.metadata(instance, None)["sourceStore"]
        )
        if not mine or (self.verify_sources and not this_request):
            size, crc32c = self._measure(instance) if source is None else measure(source)
            if (size, crc32c) != (existing.size, existing.crc32c):
                if self.verify_sources:  # archive: the copy is not the source, so nothing is deleted
                    raise PermanentError(
                        Code.VERIFICATION_FAILED,
                        f"object {existing.name} differs from source instance {instance.sop_uid}; nothing"
                        " was deleted",
                        {
                            "differenceCount": 1,
                            "differences": [
                                {"sopInstanceUID": instance.sop_uid, "problem": "object_differs"}
                            ],
                            "object": existing.uri,
                        },
                    )
                raise PermanentError(
                    Code.DESTINATION_CONFLICT,
                    f"object {existing.name} exists and differs from source instance {instance.sop_uid};"
                    " it was not overwritten",
                    {"object": existing.uri},
                )
        return Copied(
            instance.sop_uid,
            instance.sop_class_uid,
            existing.name,
            existing.size,
            existing.crc32c,
            existing.metadata.get("transferSyntaxUID") or None,
            uploaded=False,
        )

    def _measure(self, instance: Instance) -> tuple[int, str]:
        return self._from_source(instance, lambda part: measure(part.iter_chunks()))

    # -- the whole series ----------------------------------------------------------------------------

    def _existing(self, sop_uid: str) -> StoredObject | None:
        name = self.object_name(sop_uid)
        if self.present is not None:
            return self.present.get(name)
        return self.job.storage.stat(self.destination.bucket, name)

    def copy_all(
        self, instances: list[Instance], metrics: SeriesMetrics | None = None
    ) -> dict[str, Copied] | HandedOn:
        # One listing of the series' folder instead of one metadata request per instance: a redelivery
        # or continuation of a large series skips what is done at almost no cost.
        self.present = {item.name: item for item in self.job.storage.list(self.folder.location)}
        done: dict[str, Copied] = {}
        self.mode = choose_mode(self.requested, metrics)
        if self.requested is Mode.AUTO and all(
            self.object_name(item.sop_uid) in self.present for item in instances
        ):
            self.mode = Mode.INSTANCES  # every object there already: settled one by one, nothing streamed
        if self.mode is not Mode.INSTANCES:
            try:
                self._copy_series_stream(instances, done)
            except RetryableError as error:
                log.warning(
                    "series retrieve broke off; going on instance by instance",
                    extra={"reason": str(error), "copied": len(done)},
                )
            self.mode = self.mode or Mode.SERIES  # an auto stream that broke before its first part
        pending = [instance for instance in instances if instance.sop_uid not in done]
        handed = self._copy_concurrently(pending, done)
        return handed or done

    def _copy_series_stream(self, instances: list[Instance], done: dict[str, Copied]) -> None:
        """One RetrieveSeries request; each part is named from its file meta header and streamed on.

        A part small enough for a single-request upload (its Content-Length at most SMALL_OBJECT_BYTES)
        is read whole and uploaded by a pool while the stream goes on, at most CONCURRENCY parts and
        SERIES_BUFFER_BYTES of them at a time (so a series of 5 MB parts holds a few, not sixteen); a
        larger one, or one of unknown length, streams into its upload inline. Mode auto without an
        average size (self.mode None) goes on only if the first part is small; else it stops before
        reading that part and every instance is copied by RetrieveInstance (self.mode INSTANCES).
        """
        wanted = {instance.sop_uid: instance for instance in instances}

        def record(copied: Copied) -> None:
            done[copied.sop_uid] = copied
            self.job.report(1, copied.size)

        pool = BoundedPool(self.job.settings.concurrency, record, budget=SERIES_BUFFER_BYTES, name="upload")
        with pool:
            try:
                with self.job.dicomweb.retrieve_series(
                    self.job.request.series, self.transfer_syntax, deadline=self.exchange_deadline
                ) as parts:
                    for part in parts:
                        if self.job.remaining() <= 0:
                            break
                        length = _content_length(part.headers)
                        if self.mode is None:  # auto: the first part's length decides
                            self.mode = (
                                Mode.SERIES if 0 <= length <= SERIES_MODE_MAX_BYTES else Mode.INSTANCES
                            )
                            if self.mode is Mode.INSTANCES:
                                break
                        identity, chunks = peek_identity(part.iter_chunks())
                        instance = wanted.get(identity.sop_instance_uid or "")
                        if instance is None or instance.sop_uid in done:
                            continue  # added after the search, or not Part 10: the next search sees it
                        if 0 <= length <= SMALL_OBJECT_BYTES:
                            pool.wait_for_room(length)  # before the part is read: the budget bounds memory
                            body = [b"".join(chunks)]
                            pool.submit(
                                self._store_streamed, instance, part.headers, iter(body), weight=length
                            )
                        else:
                            record(self._store_streamed(instance, part.headers, chunks))
                pool.wait_all()
            except SourceGone:
                # The search has just listed instances: some servers cannot retrieve the series whole
                # (Orthanc splits a series whose instances name several patients). Go instance by instance.
                raise RetryableError(
                    "RetrieveSeries answered 404 although the search listed instances"
                ) from None

    def _store_streamed(
        self, instance: Instance, headers: Mapping[str, str], chunks: Iterator[bytes]
    ) -> Copied:
        existing = self._existing(instance.sop_uid)
        if existing is not None:
            return self.settle_existing(existing, instance, chunks)
        return self.store_part(instance, headers, chunks)

    def _copy_concurrently(self, pending: list[Instance], done: dict[str, Copied]) -> HandedOn | None:
        """RetrieveInstance for each, CONCURRENCY at a time; stop starting new ones at the deadline."""
        if not pending:
            return None
        concurrency = self.job.settings.concurrency

        def record(copied: Copied) -> None:
            done[copied.sop_uid] = copied
            self.job.report(1, copied.size)

        with BoundedPool(concurrency, record, name="copy") as pool:
            for started, instance in enumerate(pending):
                pool.wait_for_room()
                # Past the deadline no new instance starts, except a first batch: every delivery makes
                # progress, however long the search before it took.
                if self.job.remaining() <= 0 and started >= concurrency:
                    break
                pool.submit(self.copy_instance, instance)
            pool.wait_all()
        left = len(pending) - sum(1 for instance in pending if instance.sop_uid in done)
        if left:
            return self.job.hand_on("deadline")
        return None


def _content_length(headers: Mapping[str, str]) -> int:
    """A part's Content-Length, or -1 when it has none (or a malformed one)."""
    try:
        return int(headers.get("content-length", "-1"))
    except ValueError:
        return -1


def copy_series(job: Job) -> Outcome:
    """Copy the whole series and write its manifest."""
    destination = job.destination()
    listing = find_series(job)
    instances = listing.instances
    if not instances:
        raise PermanentError(Code.SERIES_NOT_FOUND, "the series has no instances in the source")
    copy = SeriesCopy(job, destination)
    done = copy.copy_all(instances, listing.metrics)
    if isinstance(done, HandedOn):
        return done
    copied = [done[instance.sop_uid] for instance in instances]
    stored = write_manifest(job.storage, copy.folder, copy.transfer_syntax, copied, job.request.request_id)
    result: dict[str, Any] = {
        "instanceCount": len(copied),
        "bytes": sum(item.size for item in copied),
        "destination": copy.folder.uri,
        "manifestUri": stored.uri,
        "uploadedCount": sum(1 for item in copied if item.uploaded),
        "skippedCount": sum(1 for item in copied if not item.uploaded),
        "mode": str(copy.mode),
    }
    metadata_uri = _write_metadata(job, copy) if job.request.options.include_metadata else None
    if metadata_uri is not None:
        result["metadataUri"] = metadata_uri
    return result


def _write_metadata(job: Job, copy: SeriesCopy) -> str | None:
    """The series' metadata, stored create-only once it parsed (a body cut short is never kept)."""
    name = copy.folder.record(METADATA_NAME)
    try:
        body = job.dicomweb.metadata(job.request.series)
    except SourceGone:
        log.warning("the server has no metadata for the series (404); the copy goes on without it")
        return None
    try:
        stored = job.storage.upload(
            copy.destination.bucket,
            name,
            iter([body]),
            metadata={"writer": WRITER, "seriesInstanceUID": job.request.series.series_uid},
            content_type="application/dicom+json",
        )
    except ObjectExists:
        return copy.destination.uri(name)
    return stored.uri


def retrieve(job: Job) -> Outcome:
    if job.request.instance_uid is not None:
        return _retrieve_one(job, job.request.instance_uid)
    return copy_series(job)


def _retrieve_one(job: Job, sop_uid: str) -> Outcome:
    """A store notification: copy the one instance it names into the same layout."""
    copy = SeriesCopy(job, job.destination())
    series = job.request.series
    instance = Instance(series.study_uid, series.series_uid, sop_uid)
    try:
        copied = copy.copy_instance(instance)
    except InstanceGone:
        raise PermanentError(Code.SERIES_NOT_FOUND, f"instance {sop_uid} is not in the source") from None
    return {
        "instanceCount": 1,
        "bytes": copied.size,
        "destination": copy.folder.uri,
        "objectUri": copy.destination.uri(copied.object_name),
        "uploadedCount": int(copied.uploaded),
        "skippedCount": int(not copied.uploaded),
    }
