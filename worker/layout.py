"""The one place that knows where a series lives in a bucket: the layout of the Healthcare API's export.

`{prefix}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm`, which `dicomStores.import` of
`gs://bucket/prefix/**.dcm` reads back; beside the instances, the records this worker writes (not `.dcm`,
so such an import leaves them out).
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.models import GcsLocation, SeriesRef

MANIFEST_NAME = "manifest.json"
METADATA_NAME = "metadata.json"
INSTANCES_NAME = "instances.json"


@dataclass(frozen=True)
class SeriesFolder:
    """A series' folder under a destination."""

    destination: GcsLocation
    series: SeriesRef

    @property
    def bucket(self) -> str:
        return self.destination.bucket

    @property
    def name(self) -> str:
        return self.destination.object_name(self.series.study_uid, self.series.series_uid)

    @property
    def location(self) -> GcsLocation:
        return GcsLocation(self.destination.bucket, self.name)

    @property
    def uri(self) -> str:
        return self.destination.uri(self.name)

    def instance(self, sop_uid: str) -> str:
        return f"{self.name}/{sop_uid}.dcm"

    def record(self, record_name: str) -> str:
        """The object name of one of the worker's records (MANIFEST_NAME, METADATA_NAME, INSTANCES_NAME)."""
        return f"{self.name}/{record_name}"
