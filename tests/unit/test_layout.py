"""The object layout (worker/layout.py): the Healthcare API export's, which dicomStores.import reads."""

from __future__ import annotations

from worker.layout import INSTANCES_NAME, MANIFEST_NAME, METADATA_NAME, SeriesFolder
from worker.models import GcsLocation, SeriesRef

SERIES = SeriesRef(None, "1.2.3", "1.2.3.4")


def test_a_series_folder_is_prefix_study_series() -> None:
    folder = SeriesFolder(GcsLocation("my-bucket", "archive/2026"), SERIES)

    assert folder.bucket == "my-bucket"
    assert folder.name == "archive/2026/1.2.3/1.2.3.4"
    assert folder.location == GcsLocation("my-bucket", "archive/2026/1.2.3/1.2.3.4")
    assert folder.uri == "gs://my-bucket/archive/2026/1.2.3/1.2.3.4"
    assert folder.instance("1.2.3.4.5") == "archive/2026/1.2.3/1.2.3.4/1.2.3.4.5.dcm"


def test_a_destination_without_prefix_puts_the_study_at_the_top() -> None:
    folder = SeriesFolder(GcsLocation("my-bucket", ""), SERIES)

    assert folder.instance("9") == "1.2.3/1.2.3.4/9.dcm"
    assert folder.uri == "gs://my-bucket/1.2.3/1.2.3.4"


def test_records_sit_beside_the_instances_and_are_never_dcm() -> None:
    folder = SeriesFolder(GcsLocation("my-bucket", "a"), SERIES)

    names = [folder.record(name) for name in (MANIFEST_NAME, METADATA_NAME, INSTANCES_NAME)]

    assert names == [
        "a/1.2.3/1.2.3.4/manifest.json",
        "a/1.2.3/1.2.3.4/metadata.json",
        "a/1.2.3/1.2.3.4/instances.json",
    ]
    assert not any(name.endswith(".dcm") for name in names)  # a **.dcm import leaves them out
