"""Action `search`: every instance of the series (QIDO-RS SearchForInstances), paged to the end."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.errors import Code, PermanentError, SourceGone
from worker.job import Job, Outcome
from worker.layout import INSTANCES_NAME, SeriesFolder
from worker.models import Instance, SeriesMetrics

RECHECK_SECONDS = 1.0  # a count that disagrees with the series metrics is searched once more after this
SETTLE_MARGIN_SECONDS = 5.0  # the settling after deletes ends this long before the deadline


@dataclass(frozen=True)
class Listing:
    """One search of a series, with the Healthcare API's own count of it where that exists."""

    instances: list[Instance]
    metrics: SeriesMetrics | None
    absent: bool = False  # the store or study answered 404

    @property
    def metrics_count(self) -> int | None:
        return None if self.metrics is None else self.metrics.instance_count

    @property
    def consistent(self) -> bool:
        return self.metrics_count is None or self.metrics_count == len(self.instances)


def list_series(job: Job) -> Listing:
    """The series as the source shows it now (an absent store, study or series lists empty)."""
    series = job.request.series
    try:
        instances = job.dicomweb.search_instances(series, job.settings.search_page_size)
    except SourceGone:
        return Listing([], job.dicomweb.series_metrics(series), absent=True)
    ordered = sorted(instances, key=lambda i: (i.instance_number is None, i.instance_number or 0, i.sop_uid))
    return Listing(ordered, job.dicomweb.series_metrics(series))


def complete_listing(job: Job) -> Listing:
    """The series as the source shows it, complete or nothing (an absent store or study lists empty).

    On the Healthcare API the count must agree with getSeriesMetrics; a difference (an instance stored
    meanwhile) is searched once more, and one that stays is SEARCH_INCOMPLETE.
    """
    listing = list_series(job)
    if not listing.consistent:
        time.sleep(RECHECK_SECONDS)
        listing = list_series(job)
    if not listing.consistent:
        raise PermanentError(
            Code.SEARCH_INCOMPLETE,
            f"the search found {len(listing.instances)} instances but the series metrics count"
            f" {listing.metrics_count}; nothing was acted on",
        )
    return listing


def find_series(job: Job) -> Listing:
    """The series' instances in a stable order (instance number, then SOP UID), complete or nothing,
    with its metrics; SERIES_NOT_FOUND when the store or study is not found."""
    listing = complete_listing(job)
    if listing.absent:
        raise PermanentError(Code.SERIES_NOT_FOUND, "the DICOM store or study is not found (404)")
    return listing


def find_instances(job: Job) -> list[Instance]:
    return find_series(job).instances


def settled(job: Job, lagging: Callable[[Instance], bool]) -> Listing:
    """The series after deletes. Search results can lag behind deletes (and behind the series metrics),
    so while the search still lists an instance `lagging` says was deleted, or disagrees with the
    metrics, search again with backoff, for at most SEARCH_SETTLE_SECONDS (never past the deadline)."""
    settle = job.settings.search_settle_seconds
    until = time.monotonic() + max(0.0, min(settle, job.remaining() - SETTLE_MARGIN_SECONDS))
    delay = 0.25
    while True:
        listing = list_series(job)
        if listing.consistent and not any(lagging(instance) for instance in listing.instances):
            return listing
        if time.monotonic() + delay > until:
            return listing
        time.sleep(delay)
        delay = min(delay * 2, 4.0)


def search(job: Job) -> Outcome:
    instances = find_instances(job)
    listing = [instance.as_event() for instance in instances]
    result: dict[str, Any] = {"instanceCount": len(instances)}
    encoded = json.dumps(listing, separators=(",", ":"))
    if len(encoded) <= job.settings.event_inline_bytes:
        result["instances"] = listing
        return result
    if job.request.destination is None and job.settings.default_destination is None:
        raise PermanentError(
            Code.RESULT_TOO_LARGE,
            f"{len(instances)} instances do not fit in an event and no destination is set to write them to",
        )
    destination = job.destination()
    stored = job.storage.write_json(
        destination.bucket,
        SeriesFolder(destination, job.request.series).record(INSTANCES_NAME),
        {"series": job.request.series.source, "instanceCount": len(instances), "instances": listing},
    )
    result["instancesUri"] = stored.uri
    return result
