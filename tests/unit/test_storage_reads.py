"""Storage.read: one generation of an object, streamed in ranged reads, never held whole. Runs the real
google-cloud-storage on an in-memory server (tests/unit/fake_gcs.py)."""

from __future__ import annotations

import pytest

import worker.storage
from tests.unit.fake_gcs import FakeGcs
from worker.errors import RetryableError
from worker.storage import Storage

BUCKET = "archive"
NAME = "dicom/1.2/1.2.3/1.2.3.4.dcm"
CHUNK = 1024


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> FakeGcs:
    monkeypatch.setattr(worker.storage, "READ_CHUNK_BYTES", CHUNK)
    return FakeGcs()


@pytest.fixture
def store(gcs: FakeGcs) -> Storage:
    return Storage(gcs.client(), 128 * 1024 * 1024)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK, 3 * CHUNK + 7])
def test_read_yields_the_objects_bytes_in_ranges(gcs: FakeGcs, store: Storage, size: int) -> None:
    data = bytes(n % 251 for n in range(size))
    blob = gcs.put(BUCKET, NAME, data)

    chunks = list(store.read(BUCKET, NAME, blob.generation))

    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= CHUNK for chunk in chunks)
    downloads = [seen for seen in gcs.requests_of("GET") if seen.path.startswith("/download/")]
    assert all(seen.headers.get("Range", "").startswith("bytes=") for seen in downloads)
    assert all(seen.query.get("generation") == str(blob.generation) for seen in downloads)


def test_a_generation_no_longer_there_is_retryable(gcs: FakeGcs, store: Storage) -> None:
    old = gcs.put(BUCKET, NAME, b"first")
    gcs.put(BUCKET, NAME, b"second")

    with pytest.raises(RetryableError, match="changed or vanished"):
        list(store.read(BUCKET, NAME, old.generation))


def test_reading_is_lazy(gcs: FakeGcs, store: Storage) -> None:
    blob = gcs.put(BUCKET, NAME, bytes(5 * CHUNK))

    stream = store.read(BUCKET, NAME, blob.generation)
    next(stream)

    downloads = [seen for seen in gcs.requests_of("GET") if seen.path.startswith("/download/")]
    assert len(downloads) == 1  # one range fetched for one chunk taken
