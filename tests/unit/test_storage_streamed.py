"""An upload of known length: the bulk in one PUT streamed from the source, then the final piece with the
CRC32C of the whole object, which Cloud Storage checks before it creates anything. Runs the real
google-cloud-storage on an in-memory server (tests/unit/fake_gcs.py)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.unit.fake_gcs import FakeGcs, crc32c
from worker.errors import ObjectExists, RetryableError
from worker.storage import SMALL_OBJECT_BYTES, Storage

BUCKET = "archive"
NAME = "a/big.dcm"
MIB = 1024 * 1024
GRANULE = 256 * 1024


@pytest.fixture
def gcs() -> FakeGcs:
    return FakeGcs()


@pytest.fixture
def store(gcs: FakeGcs) -> Storage:
    return gcs.worker_storage(128 * MIB)


def pieces(data: bytes, size: int = MIB) -> Iterator[bytes]:
    return iter([data[start : start + size] for start in range(0, len(data), size)])


def breaking(data: bytes, after: int) -> Iterator[bytes]:
    """The source's bytes up to `after`, then the transfer breaks off (as a cut retrieve raises)."""
    yield from pieces(data[:after])
    raise RetryableError("the retrieve response broke off: ProtocolError")


def assert_create_only(gcs: FakeGcs) -> None:
    assert gcs.requests_of("DELETE") == []
    for item in gcs.seen:
        if item.method == "POST" and item.path.startswith("/upload/"):
            assert item.query.get("ifGenerationMatch") == "0", item


@pytest.mark.parametrize(
    ("size", "final_range"),
    [
        (SMALL_OBJECT_BYTES + 1, "bytes 8388608-8388608/8388609"),
        (30_000_000, "bytes 29884416-29999999/30000000"),
        (40 * GRANULE, f"bytes */{40 * GRANULE}"),  # whole granules: the final request is empty
    ],
    ids=["8MiB+1", "30MB", "whole-granules"],
)
def test_an_object_of_known_length_is_one_streamed_request_then_a_final_one_with_the_whole_crc32c(
    gcs: FakeGcs, store: Storage, size: int, final_range: str
) -> None:
    data = random.Random(size).randbytes(size)
    bulk = size // GRANULE * GRANULE

    stored = store.upload(BUCKET, NAME, pieces(data), metadata={"sop": "1"}, size=size)

    (initiate,) = gcs.requests_of("POST")
    assert initiate.query["uploadType"] == "resumable"
    assert initiate.query["ifGenerationMatch"] == "0"
    first, final = gcs.requests_of("PUT")
    assert first.streamed  # sent from the source as it came, not from a buffer
    assert first.headers["Content-Range"] == f"bytes 0-{bulk - 1}/*"
    assert first.headers["Content-Length"] == str(bulk)
    assert "Transfer-Encoding" not in first.headers
    assert "X-Goog-Hash" not in first.headers
    assert final.headers["Content-Range"] == final_range
    assert final.headers["X-Goog-Hash"] == f"crc32c={crc32c(data)}"
    assert len(final.body) == size - bulk
    assert gcs.objects[(BUCKET, NAME)].data == data
    assert gcs.objects[(BUCKET, NAME)].metadata == {"sop": "1"}
    assert (stored.size, stored.crc32c) == (size, crc32c(data))
    assert_create_only(gcs)


def test_a_source_that_breaks_mid_stream_creates_nothing_and_the_retry_starts_a_new_session(
    gcs: FakeGcs, store: Storage
) -> None:
    data = random.Random(2).randbytes(20 * MIB)

    with pytest.raises(RetryableError, match="broke off"):
        store.upload(BUCKET, NAME, breaking(data, 11 * MIB), metadata={}, size=len(data))
    assert gcs.objects == {}
    assert not [item for item in gcs.requests_of("PUT") if "X-Goog-Hash" in item.headers]

    store.upload(BUCKET, NAME, pieces(data), metadata={}, size=len(data))  # the retry

    first, second = gcs.requests_of("POST")  # a session of its own
    assert gcs.objects[(BUCKET, NAME)].data == data
    assert [item.query["upload_id"] for item in gcs.requests_of("PUT")] == [
        gcs.requests_of("PUT")[0].query["upload_id"]
    ] * 2
    assert first is not second
    assert_create_only(gcs)


@pytest.mark.parametrize(
    "actual", [12 * MIB, 12 * MIB + 1, 20 * MIB + 7], ids=["short", "short-by-1", "long"]
)
def test_a_source_of_another_length_than_announced_creates_nothing(
    gcs: FakeGcs, store: Storage, actual: int
) -> None:
    data = random.Random(actual).randbytes(actual)

    with pytest.raises(RetryableError, match="announced"):
        store.upload(BUCKET, NAME, pieces(data), metadata={}, size=12 * MIB + 100)

    assert gcs.objects == {}
    assert not [item for item in gcs.requests_of("PUT") if "X-Goog-Hash" in item.headers]


def test_bytes_corrupted_on_the_way_are_refused_at_finalisation_and_retried(
    gcs: FakeGcs, store: Storage
) -> None:
    data = random.Random(3).randbytes(10 * MIB)
    gcs.corrupt_in_transit = 1  # the streamed bulk

    with pytest.raises(RetryableError, match="corrupted"):
        store.upload(BUCKET, NAME, pieces(data), metadata={}, size=len(data))
    assert gcs.objects == {}

    stored = store.upload(BUCKET, NAME, pieces(data), metadata={}, size=len(data))
    assert gcs.objects[(BUCKET, NAME)].data == data
    assert stored.crc32c == crc32c(data)


def test_a_streamed_upload_onto_an_existing_object_raises_object_exists(gcs: FakeGcs, store: Storage) -> None:
    gcs.put(BUCKET, NAME, b"already here")
    data = random.Random(4).randbytes(9 * MIB)

    with pytest.raises(ObjectExists):
        store.upload(BUCKET, NAME, pieces(data), metadata={}, size=len(data))
    assert gcs.objects[(BUCKET, NAME)].data == b"already here"
    assert_create_only(gcs)


def test_an_announced_small_object_still_goes_in_one_multipart_request(gcs: FakeGcs, store: Storage) -> None:
    data = random.Random(5).randbytes(SMALL_OBJECT_BYTES)

    store.upload(BUCKET, NAME, pieces(data), metadata={}, size=len(data))

    assert [item.query.get("uploadType") for item in gcs.seen if item.path.startswith("/upload/")] == [
        "multipart"
    ]
    assert gcs.objects[(BUCKET, NAME)].data == data


def test_an_announced_small_object_of_another_length_creates_nothing(gcs: FakeGcs, store: Storage) -> None:
    with pytest.raises(RetryableError, match="announced"):
        store.upload(BUCKET, NAME, iter([b"x" * 1000]), metadata={}, size=1001)
    assert gcs.objects == {}


class Persisting(FakeGcs):
    """A server that keeps less of the streamed bulk than it was sent, or fails it with `status`."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status

    def _chunk(self, session: Any, upload_id: str, headers: Mapping[str, str], body: bytes) -> Any:
        if headers.get("Content-Range", "").endswith("/*"):
            return (self.status, {"Range": f"bytes=0-{GRANULE - 1}"}, b"")
        return super()._chunk(session, upload_id, headers, body)


@pytest.mark.parametrize("status", [308, 503], ids=["persisted-less", "unavailable"])
def test_a_bulk_the_server_did_not_keep_whole_is_retried_from_a_new_session(status: int) -> None:
    gcs = Persisting(status)
    store = gcs.worker_storage(128 * MIB)
    data = random.Random(6).randbytes(9 * MIB)

    with pytest.raises(RetryableError):
        store.upload(BUCKET, NAME, pieces(data), metadata={}, size=len(data))

    assert gcs.objects == {}
    assert not [item for item in gcs.requests_of("PUT") if "X-Goog-Hash" in item.headers]
