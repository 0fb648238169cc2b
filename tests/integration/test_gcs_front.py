"""The permission front (infra/local/gcs_front.py) answers as Cloud Storage does for objectCreator +
objectViewer, and worker/storage.py works under it: create-only writes, no delete, corrupt bodies refused."""

from __future__ import annotations

import io
import random
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from google.api_core.exceptions import Forbidden, PreconditionFailed

from infra.local.stack import Stack, loopback_session
from worker.errors import RetryableError
from worker.storage import SMALL_OBJECT_BYTES, Storage

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture
def front(stack: Stack) -> Iterator[Stack]:
    yield stack
    stack.gcs_front.corrupt_uploads(0)


def plant(stack: Stack, bucket: str, name: str, data: bytes) -> None:
    stack.storage_client(admin=True).bucket(bucket).blob(name).upload_from_string(data)


def names(stack: Stack, bucket: str) -> list[str]:
    return [blob.name for blob in stack.storage_client(admin=True).list_blobs(bucket)]


def test_an_existing_object_is_never_overwritten(front: Stack, bucket: str) -> None:
    plant(front, bucket, "a.dcm", b"original")
    blob = front.storage_client().bucket(bucket).blob("a.dcm")

    with pytest.raises(Forbidden):
        blob.upload_from_string(b"replacement")
    with pytest.raises(PreconditionFailed):
        blob.upload_from_string(b"replacement", if_generation_match=0)
    with pytest.raises(PreconditionFailed):  # resumable: refused when it begins
        blob.upload_from_file(io.BytesIO(b"replacement"), if_generation_match=0)
    assert front.storage_client(admin=True).bucket(bucket).blob("a.dcm").download_as_bytes() == b"original"


def test_a_resumable_upload_is_create_only_when_it_finishes(front: Stack, bucket: str) -> None:
    """Another writer creates the object while a resumable upload runs: its final request gets 412."""
    blob = front.storage_client().bucket(bucket).blob("race.dcm")
    session_url = blob.create_resumable_upload_session(if_generation_match=0, size=3)
    assert urlsplit(session_url).netloc == urlsplit(front.gcs_url).netloc  # the sessions go through the front
    plant(front, bucket, "race.dcm", b"first")

    response = loopback_session().put(
        session_url, data=b"new", headers={"Content-Range": "bytes 0-2/3"}, timeout=30
    )

    assert response.status_code == 412
    assert response.json()["error"]["code"] == 412
    assert front.storage_client(admin=True).bucket(bucket).blob("race.dcm").download_as_bytes() == b"first"


def test_objects_are_never_deleted_or_changed(front: Stack, bucket: str) -> None:
    plant(front, bucket, "a.dcm", b"original")
    blob = front.storage_client().bucket(bucket).get_blob("a.dcm")

    with pytest.raises(Forbidden):
        blob.delete()
    blob.metadata = {"changed": "yes"}
    with pytest.raises(Forbidden):
        blob.patch()
    with pytest.raises(Forbidden):
        front.storage_client().bucket(bucket).blob("a.dcm").compose([blob])
    response = loopback_session().delete(f"{front.gcs_url}/storage/v1/b/{bucket}/o/a.dcm", timeout=30)
    assert response.status_code == 403
    assert response.json()["error"]["errors"][0]["reason"] == "forbidden"
    kept = front.storage_client(admin=True).bucket(bucket).get_blob("a.dcm")
    assert (kept.download_as_bytes(), kept.metadata) == (b"original", None)


@pytest.mark.parametrize("size", [200_000, SMALL_OBJECT_BYTES + 3 * MIB], ids=["multipart", "resumable"])
def test_a_corrupted_upload_is_refused_and_the_retry_succeeds(front: Stack, bucket: str, size: int) -> None:
    data = random.Random(size).randbytes(size)
    store = Storage(front.storage_client(), 128 * MIB)
    front.gcs_front.corrupt_uploads(1)

    with pytest.raises(RetryableError, match="corrupted"):
        store.upload(bucket, "s/1.dcm", iter([data]), metadata={"sop": "1"})
    assert names(front, bucket) == []  # nothing left behind

    stored = store.upload(bucket, "s/1.dcm", iter([data]), metadata={"sop": "1"})
    assert front.storage_client(admin=True).bucket(bucket).blob("s/1.dcm").download_as_bytes() == data
    assert stored.size == size


def test_write_json_works_under_create_only_permissions(front: Stack, bucket: str) -> None:
    store = Storage(front.storage_client(), 128 * MIB)

    first = store.write_json(bucket, "s/manifest.json", {"count": 1})
    same = store.write_json(bucket, "s/manifest.json", {"count": 1})
    changed = store.write_json(bucket, "s/manifest.json", {"count": 2})

    assert (first.name, same.name, changed.name) == (
        "s/manifest.json",
        "s/manifest.json",
        "s/manifest.2.json",
    )
    assert [item.name for item in store.json_versions(bucket, "s/manifest.json")] == [
        first.name,
        changed.name,
    ]
    assert store.read_json(bucket, "s/manifest.json") == {"count": 1}
    assert store.read_json(bucket, changed.name) == {"count": 2}


def test_reads_listings_and_bucket_creation_pass_through(front: Stack) -> None:
    client = front.storage_client()
    name = f"front-{uuid.uuid4().hex[:10]}"
    client.create_bucket(name)
    client.bucket(name).blob("x.json").upload_from_string(b"{}", if_generation_match=0)

    assert [blob.name for blob in client.list_blobs(name)] == ["x.json"]
    assert client.bucket(name).blob("x.json").download_as_bytes() == b"{}"


def test_the_front_survives_unknown_paths_and_broken_bodies(front: Stack, bucket: str) -> None:
    session = loopback_session()
    assert session.get(f"{front.gcs_url}/no/such/path", timeout=10).status_code in (400, 404, 405)
    assert session.get(f"{front.gcs_url}/_front/nothing", timeout=10).status_code == 404
    address = urlsplit(front.gcs_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as raw:
        raw.sendall(
            f"POST /upload/storage/v1/b/{bucket}/o?uploadType=multipart HTTP/1.1\r\n"
            f"Host: {address.netloc}\r\nContent-Type: multipart/related; boundary=x\r\n"
            "Content-Length: 100000\r\n\r\n--x\r\n".encode()
        )  # and hangs up, 99,995 bytes short
    with socket.create_connection((address.hostname, address.port), timeout=10) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        raw.recv(1000)

    assert session.get(f"{front.gcs_url}/storage/v1/b/{bucket}/o", timeout=10).status_code == 200
    assert names(front, bucket) == []


# -- uploads of known length: the bulk streamed in one request, the CRC32C checked at finalisation ---------


def chunked(data: bytes, size: int = MIB) -> Iterator[bytes]:
    return iter([data[start : start + size] for start in range(0, len(data), size)])


@pytest.mark.parametrize(
    "size",
    [SMALL_OBJECT_BYTES + 1, 40 * 256 * 1024, 37_000_003],
    ids=["8MiB+1", "whole-granules", "37MB"],
)
def test_an_object_of_known_length_is_created_byte_identical(front: Stack, bucket: str, size: int) -> None:
    data = random.Random(size).randbytes(size)
    store = Storage(front.storage_client(), 128 * MIB)

    stored = store.upload(bucket, "s/big.dcm", chunked(data), metadata={"sop": "1"}, size=size)

    kept = front.storage_client(admin=True).bucket(bucket).get_blob("s/big.dcm")
    assert kept.download_as_bytes() == data
    assert (stored.size, stored.crc32c, kept.metadata) == (size, kept.crc32c, {"sop": "1"})


def test_a_crc32c_mismatch_is_refused_at_finalisation_and_creates_nothing(front: Stack, bucket: str) -> None:
    """The streamed bulk is corrupted on its way: the final request's X-Goog-Hash (the bytes read) no
    longer matches what arrived, and the front, as Cloud Storage, refuses to create the object."""
    data = random.Random(7).randbytes(12 * MIB)
    store = Storage(front.storage_client(), 128 * MIB)
    front.gcs_front.corrupt_uploads(1)

    with pytest.raises(RetryableError, match="corrupted"):
        store.upload(bucket, "s/1.dcm", chunked(data), metadata={}, size=len(data))
    assert names(front, bucket) == []

    store.upload(bucket, "s/1.dcm", chunked(data), metadata={}, size=len(data))  # the retry
    assert front.storage_client(admin=True).bucket(bucket).blob("s/1.dcm").download_as_bytes() == data


def test_a_final_request_with_a_wrong_hash_is_refused_with_400(front: Stack, bucket: str) -> None:
    blob = front.storage_client().bucket(bucket).blob("h.dcm")
    session_url = blob.create_resumable_upload_session(if_generation_match=0, size=3)

    response = loopback_session().put(
        session_url,
        data=b"abc",
        headers={"Content-Range": "bytes 0-2/3", "X-Goog-Hash": "crc32c=AAAAAA=="},
        timeout=30,
    )

    assert response.status_code == 400
    assert "CRC32C" in response.json()["error"]["message"]
    assert names(front, bucket) == []


def test_an_upload_cut_mid_stream_leaves_no_object_and_restarts(front: Stack, bucket: str) -> None:
    data = random.Random(8).randbytes(24 * MIB)
    store = Storage(front.storage_client(), 128 * MIB)

    def cut() -> Iterator[bytes]:
        yield from chunked(data[: 13 * MIB])
        raise RetryableError("the retrieve response broke off: ProtocolError")

    with pytest.raises(RetryableError, match="broke off"):
        store.upload(bucket, "s/cut.dcm", cut(), metadata={}, size=len(data))
    assert names(front, bucket) == []

    store.upload(bucket, "s/cut.dcm", chunked(data), metadata={}, size=len(data))
    assert front.storage_client(admin=True).bucket(bucket).blob("s/cut.dcm").download_as_bytes() == data
    assert names(front, bucket) == ["s/cut.dcm"]
