"""Storage writes only what objectCreator may: create-only, never a replacement, never a DELETE; Cloud
Storage checks each upload's CRC32C, and a refusal is retried. Runs the real google-cloud-storage on an
in-memory server (tests/unit/fake_gcs.py)."""

from __future__ import annotations

import json
import random

import pytest

from tests.unit.fake_gcs import FakeGcs, crc32c
from worker.errors import Code, ObjectExists, PermanentError, RetryableError
from worker.storage import RESUMABLE_CHUNK_BYTES, SMALL_OBJECT_BYTES, Storage

BUCKET = "archive"
MANIFEST = "dicom/1.2/1.2.3/manifest.json"
MIB = 1024 * 1024


@pytest.fixture
def gcs() -> FakeGcs:
    return FakeGcs()


@pytest.fixture
def store(gcs: FakeGcs) -> Storage:
    return gcs.worker_storage(128 * MIB)


def document(body: object) -> bytes:
    """The bytes write_json stores for `body`."""
    return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()


def uploads(gcs: FakeGcs) -> list[str]:
    return [item.query["uploadType"] for item in gcs.seen if item.path.startswith("/upload/")]


def assert_no_replacement_or_delete(gcs: FakeGcs) -> None:
    """What objectCreator allows: no DELETE, and every upload is create-only."""
    assert gcs.requests_of("DELETE") == []
    for item in gcs.seen:
        if item.method == "POST" and item.path.startswith("/upload/"):
            assert item.query.get("ifGenerationMatch") == "0", item


# -- write_json ------------------------------------------------------------------------------------


def test_write_json_creates_a_missing_document(gcs: FakeGcs, store: Storage) -> None:
    stored = store.write_json(BUCKET, MANIFEST, {"instances": 3})

    assert stored.name == MANIFEST
    assert gcs.objects[(BUCKET, MANIFEST)].data == document({"instances": 3})
    assert_no_replacement_or_delete(gcs)


def test_write_json_keeps_an_identical_document_without_writing(gcs: FakeGcs, store: Storage) -> None:
    planted = gcs.put(BUCKET, MANIFEST, document({"instances": 3}))

    stored = store.write_json(BUCKET, MANIFEST, {"instances": 3})

    assert (stored.name, stored.generation) == (MANIFEST, planted.generation)
    assert uploads(gcs) == []


def test_write_json_puts_a_changed_document_in_the_next_version(gcs: FakeGcs, store: Storage) -> None:
    gcs.put(BUCKET, MANIFEST, document({"instances": 3}))

    second = store.write_json(BUCKET, MANIFEST, {"instances": 4})
    third = store.write_json(BUCKET, MANIFEST, {"instances": 5})
    again = store.write_json(BUCKET, MANIFEST, {"instances": 4})

    assert second.name == "dicom/1.2/1.2.3/manifest.2.json"
    assert third.name == "dicom/1.2/1.2.3/manifest.3.json"
    assert again == second
    assert gcs.objects[(BUCKET, MANIFEST)].data == document({"instances": 3})  # never replaced
    assert gcs.objects[(BUCKET, second.name)].data == document({"instances": 4})
    assert_no_replacement_or_delete(gcs)


def test_write_json_finds_versions_with_one_listing_of_the_prefix(gcs: FakeGcs, store: Storage) -> None:
    gcs.put(BUCKET, MANIFEST, b"{}")

    store.write_json(BUCKET, MANIFEST, {"instances": 4})

    listings = [item for item in gcs.requests_of("GET") if item.path == f"/storage/v1/b/{BUCKET}/o"]
    assert [item.query["prefix"] for item in listings] == ["dicom/1.2/1.2.3/manifest."]


def test_write_json_goes_on_when_another_delivery_takes_the_version_first(
    gcs: FakeGcs, store: Storage
) -> None:
    gcs.put(BUCKET, MANIFEST, document({"instances": 3}))
    raced: list[str] = []

    def other_delivery(kind: str, data: bytes) -> None:
        if not raced:  # between our listing and our upload, another writer takes manifest.2.json
            raced.append(kind)
            gcs.put(BUCKET, "dicom/1.2/1.2.3/manifest.2.json", document({"instances": 9}))

    gcs.on_upload = other_delivery
    stored = store.write_json(BUCKET, MANIFEST, {"instances": 4})

    assert stored.name == "dicom/1.2/1.2.3/manifest.3.json"
    assert gcs.objects[(BUCKET, "dicom/1.2/1.2.3/manifest.2.json")].data == document({"instances": 9})
    assert_no_replacement_or_delete(gcs)


def test_write_json_returns_the_version_another_delivery_wrote_with_the_same_bytes(
    gcs: FakeGcs, store: Storage
) -> None:
    def other_delivery(kind: str, data: bytes) -> None:
        if (BUCKET, MANIFEST) not in gcs.objects:
            gcs.put(BUCKET, MANIFEST, document({"instances": 4}))

    gcs.on_upload = other_delivery
    stored = store.write_json(BUCKET, MANIFEST, {"instances": 4})

    assert stored.name == MANIFEST
    assert sorted(name for _, name in gcs.objects) == [MANIFEST]


def test_json_versions_are_the_document_and_its_numbered_versions_in_order(
    gcs: FakeGcs, store: Storage
) -> None:
    for name in (
        "manifest.10.json",
        "manifest.json",
        "manifest.2.json",
        "manifest.x.json",
        "manifest.2.json.bak",
        "manifest.01.json",
        "manifest.1.json",
        "manifest.json.2",
        "other.json",
        "1.2.3.4.dcm",
    ):
        gcs.put(BUCKET, f"dicom/1.2/1.2.3/{name}", b"{}")

    versions = store.json_versions(BUCKET, MANIFEST)

    assert [item.name.rsplit("/", 1)[1] for item in versions] == [
        "manifest.json",
        "manifest.2.json",
        "manifest.10.json",
    ]


def test_json_versions_of_a_missing_document_are_none(store: Storage) -> None:
    assert store.json_versions(BUCKET, MANIFEST) == []


# -- read_json -------------------------------------------------------------------------------------


def test_read_json_reads_a_document(gcs: FakeGcs, store: Storage) -> None:
    gcs.put(BUCKET, MANIFEST, document({"instances": [1, 2]}))

    assert store.read_json(BUCKET, MANIFEST) == {"instances": [1, 2]}
    assert store.read_json(BUCKET, "dicom/missing.json") is None


@pytest.mark.parametrize(
    "body",
    [b"not json", b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000],
    ids=["not-json", "not-utf8", "too-deep"],
)
def test_read_json_takes_a_body_it_cannot_parse_as_absent(gcs: FakeGcs, store: Storage, body: bytes) -> None:
    gcs.put(BUCKET, MANIFEST, body)

    assert store.read_json(BUCKET, MANIFEST) is None


def test_read_json_does_not_download_a_body_over_the_limit(
    gcs: FakeGcs, store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.storage.JSON_READ_LIMIT", 100)
    gcs.put(BUCKET, MANIFEST, document(list(range(100))))

    assert store.read_json(BUCKET, MANIFEST) is None
    assert [item for item in gcs.seen if item.path.startswith("/download/")] == []


# -- uploads: the CRC32C goes where Cloud Storage checks it ------------------------------------------


def test_a_small_upload_names_its_crc32c_in_the_object_resource(gcs: FakeGcs, store: Storage) -> None:
    data = random.Random(1).randbytes(100_000)

    stored = store.upload(BUCKET, "a/1.dcm", iter([data]), metadata={"sop": "1"})

    (request,) = [item for item in gcs.seen if item.path.startswith("/upload/")]
    assert request.query == {"uploadType": "multipart", "ifGenerationMatch": "0"}
    resource = json.loads(request.body.split(b"\r\n\r\n", 2)[1].split(b"\r\n--", 1)[0])
    assert resource["crc32c"] == crc32c(data) == stored.crc32c
    assert resource["metadata"] == {"sop": "1"}


@pytest.mark.parametrize(
    ("size", "final_length"),
    [
        (SMALL_OBJECT_BYTES + 1, SMALL_OBJECT_BYTES + 1),  # one request carries it all
        (RESUMABLE_CHUNK_BYTES + 5 * MIB, 5 * MIB),  # a full chunk, then the rest
        (2 * RESUMABLE_CHUNK_BYTES, 0),  # whole chunks: the end is known only after them
    ],
    ids=["one-request", "two-requests", "whole-chunks"],
)
def test_the_final_request_of_a_resumable_upload_carries_the_whole_crc32c(
    gcs: FakeGcs, store: Storage, size: int, final_length: int
) -> None:
    data = random.Random(size).randbytes(size)
    pieces = iter([data[start : start + 3 * MIB] for start in range(0, size, 3 * MIB)])

    stored = store.upload(BUCKET, "a/big.dcm", pieces, metadata={})

    puts = gcs.requests_of("PUT")
    assert [item.headers.get("X-Goog-Hash") for item in puts] == [None] * (len(puts) - 1) + [
        f"crc32c={crc32c(data)}"
    ]
    assert len(puts[-1].body) == final_length
    assert (stored.size, stored.crc32c) == (size, crc32c(data))
    assert gcs.objects[(BUCKET, "a/big.dcm")].data == data
    assert_no_replacement_or_delete(gcs)


@pytest.mark.parametrize("size", [1000, SMALL_OBJECT_BYTES + 1], ids=["multipart", "resumable"])
def test_a_body_corrupted_on_the_way_is_refused_and_retried_without_an_object(
    gcs: FakeGcs, store: Storage, size: int
) -> None:
    data = random.Random(size).randbytes(size)
    gcs.corrupt_in_transit = 1

    with pytest.raises(RetryableError, match="corrupted"):
        store.upload(BUCKET, "a/1.dcm", iter([data]), metadata={})
    assert gcs.objects == {}

    stored = store.upload(BUCKET, "a/1.dcm", iter([data]), metadata={})  # the retry
    assert gcs.objects[(BUCKET, "a/1.dcm")].data == data
    assert stored.crc32c == crc32c(data)
    assert_no_replacement_or_delete(gcs)


@pytest.mark.parametrize("size", [1000, SMALL_OBJECT_BYTES + 1], ids=["multipart", "resumable"])
def test_an_object_that_differs_from_the_bytes_read_is_a_conflict_and_is_not_deleted(
    gcs: FakeGcs, store: Storage, size: int
) -> None:
    """A server that does not check (none in production) stores other bytes: the library would delete
    the object after a resumable upload; the worker reports a conflict and leaves it."""
    gcs.trust_client = True
    gcs.corrupt_stored = True

    with pytest.raises(PermanentError) as raised:
        store.upload(BUCKET, "a/1.dcm", iter([random.Random(size).randbytes(size)]), metadata={})

    assert raised.value.code == Code.DESTINATION_CONFLICT
    assert "a/1.dcm" in raised.value.message
    assert (BUCKET, "a/1.dcm") in gcs.objects
    assert_no_replacement_or_delete(gcs)


def test_an_upload_onto_an_existing_object_raises_object_exists(gcs: FakeGcs, store: Storage) -> None:
    gcs.put(BUCKET, "a/1.dcm", b"already here")

    with pytest.raises(ObjectExists):
        store.upload(BUCKET, "a/1.dcm", iter([b"other bytes"]), metadata={})
    assert gcs.objects[(BUCKET, "a/1.dcm")].data == b"already here"
    assert_no_replacement_or_delete(gcs)


def test_storage_has_no_way_to_delete() -> None:
    """The function's service account may not delete objects: the boundary offers nothing that would."""
    assert [name for name in dir(Storage) if "delete" in name.lower()] == []
