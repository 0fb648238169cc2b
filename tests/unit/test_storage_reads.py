"""Storage.read: one generation of an object, streamed from one media download, never held whole. Runs
the real google-cloud-storage on an in-memory server (tests/unit/fake_gcs.py), and the worker's own
storage client on a loopback server."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

import worker.storage
from tests.unit.fake_gcs import FakeGcs
from tests.unit.test_dicomweb import FakeServer, Reply, Seen, server  # noqa: F401 (server: the fixture)
from worker.errors import RetryableError
from worker.settings import Settings
from worker.storage import Storage
from worker.wiring import storage_client

BUCKET = "archive"
NAME = "dicom/1.2/1.2.3/1.2.3.4.dcm"
CHUNK = 1024


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> FakeGcs:
    monkeypatch.setattr(worker.storage, "READ_CHUNK_BYTES", CHUNK)
    return FakeGcs()


@pytest.fixture
def store(gcs: FakeGcs) -> Storage:
    return gcs.worker_storage(128 * 1024 * 1024)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK, 3 * CHUNK + 7])
def test_read_streams_the_generations_bytes_from_one_download(
    gcs: FakeGcs, store: Storage, size: int
) -> None:
    data = bytes(n % 251 for n in range(size))
    blob = gcs.put(BUCKET, NAME, data)

    chunks = list(store.read(BUCKET, NAME, blob.generation))

    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= CHUNK for chunk in chunks)  # never more than READ_CHUNK_BYTES held
    downloads = [seen for seen in gcs.requests_of("GET") if seen.path.startswith("/download/")]
    assert len(downloads) == 1  # one request whatever the size: no request per range
    assert downloads[0].query.get("generation") == str(blob.generation)
    assert downloads[0].query.get("alt") == "media"


def test_a_generation_no_longer_there_is_retryable(gcs: FakeGcs, store: Storage) -> None:
    old = gcs.put(BUCKET, NAME, b"first")
    gcs.put(BUCKET, NAME, b"second")

    with pytest.raises(RetryableError, match="changed or vanished"):
        list(store.read(BUCKET, NAME, old.generation))


def test_a_download_cut_short_is_retryable(gcs: FakeGcs, store: Storage) -> None:
    blob = gcs.put(BUCKET, NAME, bytes(3 * CHUNK))
    gcs.truncate_downloads = 1

    with pytest.raises(RetryableError, match="broke off"):
        list(store.read(BUCKET, NAME, blob.generation))


def test_the_stored_bytes_are_read_as_stored_even_when_compressed(gcs: FakeGcs, store: Storage) -> None:
    """An object stored with Content-Encoding gzip is read as stored (the bytes its CRC32C covers),
    never decompressed on the way."""
    stored = gzip.compress(b"instance " * 200)
    blob = gcs.put(BUCKET, NAME, stored)
    gcs.content_encoding = "gzip"

    assert b"".join(store.read(BUCKET, NAME, blob.generation)) == stored


def test_the_storage_client_ignores_proxy_variables_and_netrc(
    server: FakeServer,  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Like the DICOMweb sessions, Cloud Storage requests go where the worker says, with no credential
    of the environment's: proxy variables and a .netrc are not read."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "unit-tests")
    resource = {"bucket": BUCKET, "name": NAME, "size": "4", "generation": "7", "crc32c": "AAAAAA=="}

    def respond(seen: Seen) -> Reply:
        if seen.path.startswith("/download/"):
            return Reply(200, b"DICM", headers={"Content-Type": "application/dicom"})
        return Reply(200, json.dumps(resource).encode(), headers={"Content-Type": "application/json"})

    server.respond = respond
    store = storage_client(Settings())

    assert store.stat(BUCKET, NAME) is not None  # the library's requests session
    assert b"".join(store.read(BUCKET, NAME, 7)) == b"DICM"  # the worker's own media download

    paths = [seen.path for seen in server.seen]  # every request came here, none through the proxy
    assert any(path.startswith("/storage/v1/") for path in paths)
    assert any(path.startswith("/download/") for path in paths)
    assert not any("authorization" in seen.headers for seen in server.seen)


def test_reading_is_lazy(gcs: FakeGcs, store: Storage) -> None:
    blob = gcs.put(BUCKET, NAME, bytes(5 * CHUNK))

    stream = store.read(BUCKET, NAME, blob.generation)
    next(stream)

    downloads = [seen for seen in gcs.requests_of("GET") if seen.path.startswith("/download/")]
    assert len(downloads) == 1  # one range fetched for one chunk taken
