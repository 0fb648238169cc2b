"""The validated values: Cloud Storage locations, DICOM stores, series references and instances."""

from __future__ import annotations

import pytest

from tests.unit.fakes import DATASET, LOCATION, PROJECT, SERIES, SOP, STORE, STORE_ID, STUDY
from worker.errors import InvalidValue
from worker.models import DicomStore, GcsLocation, Instance, SeriesRef, check_uid, parse_instance_path

BAD_BUCKET = "destination bucket is not a valid Cloud Storage bucket name"
BAD_PREFIX = (
    "destination prefix components may hold letters, digits and _.=+@,- only"
    " (no empty, '.' or '..' components)"
)


def permanent(error: pytest.ExceptionInfo[InvalidValue]) -> str:
    """The value objects raise InvalidValue (a ValueError) with a message for the sender."""
    return str(error.value)


# -- GcsLocation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("gs://my-bucket", "my-bucket", ""),
        ("gs://my-bucket/", "my-bucket", ""),
        ("gs://my-bucket/dicom", "my-bucket", "dicom"),
        ("gs://my-bucket/dicom/in/", "my-bucket", "dicom/in"),
        ("gs://my-bucket/dicom/in//", "my-bucket", "dicom/in"),
        ("gs://b.example.com/a=1/b+c/d@e,f", "b.example.com", "a=1/b+c/d@e,f"),
        ("gs://abc/...", "abc", "..."),
    ],
)
def test_gcs_location_parse(url: str, bucket: str, prefix: str) -> None:
    location = GcsLocation.parse(url)

    assert location == GcsLocation(bucket, prefix)
    assert GcsLocation.parse(location.uri()) == location


def test_gcs_location_uri_and_object_names() -> None:
    location = GcsLocation("my-bucket", "dicom/in")

    assert str(location) == "gs://my-bucket/dicom/in"
    assert location.object_name(STUDY, SERIES, f"{SOP}.dcm") == f"dicom/in/{STUDY}/{SERIES}/{SOP}.dcm"
    assert location.uri("x/y.dcm") == "gs://my-bucket/x/y.dcm"
    assert GcsLocation("my-bucket", "").object_name(STUDY, "a.dcm") == f"{STUDY}/a.dcm"


@pytest.mark.parametrize(
    ("location", "allowed", "within"),
    [
        ("gs://bucket/a", "gs://bucket/a", True),
        ("gs://bucket/a/b", "gs://bucket/a", True),
        ("gs://bucket/a/b/c", "gs://bucket/a", True),
        ("gs://bucket/ab", "gs://bucket/a", False),
        ("gs://bucket/a-b", "gs://bucket/a", False),
        ("gs://bucket/a.b", "gs://bucket/a", False),
        ("gs://bucket", "gs://bucket/a", False),
        ("gs://bucket/b/a", "gs://bucket/a", False),
        ("gs://bucket/anything/at/all", "gs://bucket", True),
        ("gs://bucket", "gs://bucket", True),
        ("gs://bucket2/a", "gs://bucket/a", False),
        ("gs://bucket/a", "gs://bucket2", False),
        ("gs://buck/a", "gs://bucket", False),
        ("gs://bucket/a/b", "gs://bucket/a/b/", True),
    ],
)
def test_within_compares_whole_path_components(location: str, allowed: str, within: bool) -> None:
    assert GcsLocation.parse(location).within(GcsLocation.parse(allowed)) is within


@pytest.mark.parametrize(
    "url",
    [
        "gs://",
        "gs:///prefix",
        "gs://ab",
        "gs://-bucket",
        "gs://bucket-",
        "gs://My-Bucket",
        "gs://bu..cket",
        "gs://bucket_",
        "gs://bu cket",
        "gs://bucket?x",
        "gs://bucket#x",
        "gs://" + "b" * 223,
        "gs://bücket",
        "gs://user@bucket",
    ],
)
def test_bad_buckets(url: str) -> None:
    with pytest.raises(InvalidValue) as error:
        GcsLocation.parse(url)
    assert permanent(error) == BAD_BUCKET


@pytest.mark.parametrize(
    "prefix",
    [
        "a//b",
        "/a",
        ".",
        "..",
        "a/./b",
        "a/../b",
        "../a",
        "%2e%2e",
        "a b",
        "a?b",
        "a#b",
        "a\nb",
        "a\x00b",
        "a\\b",
        "é",
        "a*b",
        "x" * 257,
    ],
)
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(InvalidValue) as error:
        GcsLocation.parse(f"gs://my-bucket/{prefix}")
    assert permanent(error) == BAD_PREFIX


@pytest.mark.parametrize(
    ("value", "named"), [(None, "must be a gs:// URL string"), ("b/x", "must be a gs://")]
)
def test_parse_names_the_field(value: object, named: str) -> None:
    with pytest.raises(InvalidValue) as error:
        GcsLocation.parse(value, "DEFAULT_DESTINATION")
    assert permanent(error).startswith(f"DEFAULT_DESTINATION {named}")


# -- DicomStore -----------------------------------------------------------------------------------


def test_dicom_store_parse_and_name() -> None:
    store = DicomStore.parse(STORE)

    assert store == DicomStore(PROJECT, LOCATION, DATASET, STORE_ID)
    assert store.name == STORE
    assert store.dataset_name == f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}"


def test_domain_scoped_project() -> None:
    store = DicomStore.parse(f"projects/example.com:my-project/locations/{LOCATION}/datasets/d/dicomStores/s")

    assert store.project == "example.com:my-project"


@pytest.mark.parametrize(
    "name",
    [
        f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}",
        f"{STORE}/dicomWeb",
        f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/fhirStores/{STORE_ID}",
        f"project/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/dicomStores/{STORE_ID}",
        f"/{STORE}",
        "",
    ],
)
def test_dicom_store_parse_rejects_other_shapes(name: str) -> None:
    with pytest.raises(InvalidValue) as error:
        DicomStore.parse(name)
    assert permanent(error) == "a DICOM store is projects/{p}/locations/{l}/datasets/{d}/dicomStores/{s}"


@pytest.mark.parametrize(
    ("components", "field"),
    [
        (("My-Project", LOCATION, DATASET, STORE_ID), "projectsId"),
        (("proj", LOCATION, DATASET, STORE_ID), "projectsId"),
        ((PROJECT, "us central1", DATASET, STORE_ID), "locationsId"),
        ((PROJECT, LOCATION, "..", STORE_ID), "datasetsId"),
        ((PROJECT, LOCATION, "a%2fb", STORE_ID), "datasetsId"),
        ((PROJECT, LOCATION, DATASET, "."), "dicomStoresId"),
        ((PROJECT, LOCATION, DATASET, "a/b"), "dicomStoresId"),
    ],
)
def test_dicom_store_components_are_validated(components: tuple[str, str, str, str], field: str) -> None:
    with pytest.raises(InvalidValue) as error:
        DicomStore(*components)
    assert permanent(error) == f"{field} has characters outside those allowed for it"


def test_dicom_store_components_must_be_strings() -> None:
    with pytest.raises(InvalidValue) as error:
        DicomStore(PROJECT, LOCATION, 7, STORE_ID)  # type: ignore[arg-type]
    assert permanent(error) == "datasetsId must be a string"


# -- SeriesRef ------------------------------------------------------------------------------------


def test_source_of_a_healthcare_series_is_its_resource_path() -> None:
    series = SeriesRef(DicomStore.parse(STORE), STUDY, SERIES)

    assert series.source == f"{STORE}/dicomWeb/studies/{STUDY}/series/{SERIES}"
    assert series.dicomweb_path == f"studies/{STUDY}/series/{SERIES}"
    assert SeriesRef.parse(series.source) == series


def test_source_of_a_dicomweb_series_is_relative() -> None:
    series = SeriesRef(None, STUDY, SERIES)

    assert series.source == f"studies/{STUDY}/series/{SERIES}"
    assert SeriesRef.parse(series.source) == series


@pytest.mark.parametrize(
    ("study", "series", "named"),
    [
        ("1.2.x", SERIES, "StudyInstanceUID"),
        (STUDY, "..", "SeriesInstanceUID"),
        (STUDY, "", "SeriesInstanceUID"),
    ],
)
def test_series_ref_validates_its_uids(study: str, series: str, named: str) -> None:
    with pytest.raises(InvalidValue) as error:
        SeriesRef(None, study, series)
    assert permanent(error) == f"{named} is not a DICOM UID (digits and dots, at most 64 characters)"


def test_parse_instance_path() -> None:
    series, sop = parse_instance_path(f"{STORE}/dicomWeb/studies/{STUDY}/series/{SERIES}/instances/{SOP}")

    assert series == SeriesRef(DicomStore.parse(STORE), STUDY, SERIES)
    assert sop == SOP


# -- UIDs and instances ---------------------------------------------------------------------------


@pytest.mark.parametrize("uid", ["1", "0", "1.2.840.10008.1.2.1", "1." + "2" * 62])
def test_check_uid_accepts(uid: str) -> None:
    assert check_uid(uid, "uid") == uid


def test_check_uid_names_the_field() -> None:
    with pytest.raises(InvalidValue) as error:
        check_uid(1.2, "SOPInstanceUID")
    assert permanent(error) == "SOPInstanceUID must be a string"


def test_instance_as_event_holds_uids_and_counts_only() -> None:
    instance = Instance(STUDY, SERIES, SOP, "1.2.840.10008.5.1.4.1.1.2", 7)

    assert instance.as_event() == {
        "sopInstanceUID": SOP,
        "sopClassUID": "1.2.840.10008.5.1.4.1.1.2",
        "instanceNumber": 7,
    }


@pytest.mark.parametrize(
    ("uids", "named"),
    [
        (("../x", SERIES, SOP), "StudyInstanceUID"),
        ((STUDY, "1.2.3a", SOP), "SeriesInstanceUID"),
        ((STUDY, SERIES, "../../x"), "SOPInstanceUID"),
        ((STUDY, SERIES, "1." + "3" * 63), "SOPInstanceUID"),
    ],
)
def test_instance_validates_its_uids(uids: tuple[str, str, str], named: str) -> None:
    with pytest.raises(InvalidValue) as error:
        Instance(*uids)
    assert permanent(error).startswith(f"{named} is not a DICOM UID")


def test_instance_without_a_sop_uid() -> None:
    with pytest.raises(InvalidValue) as error:
        Instance(STUDY, SERIES, None)  # type: ignore[arg-type]
    assert permanent(error) == "SOPInstanceUID must be a string"
