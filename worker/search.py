"""Action `search`: every instance of the series (QIDO-RS SearchForInstances), paged to the end."""

from __future__ import annotations

import json
from typing import Any

from worker.app import Job, Outcome
from worker.dicomweb import SourceGone
from worker.errors import Code, PermanentError
from worker.models import Instance, SeriesRef


def find_instances(job: Job) -> list[Instance]:
    """The series' instances in a stable order (instance number, then SOP UID)."""
    try:
        instances = job.dicomweb.search_instances(job.request.series, job.settings.search_page_size)
    except SourceGone:
        raise PermanentError(Code.SERIES_NOT_FOUND, "the DICOM store or study is not found (404)") from None
    return sorted(instances, key=lambda i: (i.instance_number is None, i.instance_number or 0, i.sop_uid))


def series_folder(series: SeriesRef) -> tuple[str, str]:
    """Object path components of a series, the layout of the Healthcare API's own export."""
    return series.study_uid, series.series_uid


def search(job: Job) -> Outcome:
    instances = find_instances(job)
    listing = [instance.as_event() for instance in instances]
    result: dict[str, Any] = {"instanceCount": len(instances)}
    encoded = json.dumps(listing, separators=(",", ":"))
    if len(encoded) <= job.settings.event_inline_bytes:
        result["instances"] = listing
        return result
    try:
        destination = job.destination()
    except PermanentError as error:
        if error.code is not Code.DESTINATION_MISSING:
            raise
        raise PermanentError(
            Code.RESULT_TOO_LARGE,
            f"{len(instances)} instances do not fit in an event and no destination is set to write them to",
        ) from None
    name = destination.object_name(*series_folder(job.request.series), "instances.json")
    stored = job.storage.write_json(
        destination.bucket,
        name,
        {"series": job.request.series.source, "instanceCount": len(instances), "instances": listing},
    )
    result["instancesUri"] = stored.uri
    return result
