"""The Cloud Storage boundary: create-only streaming uploads with end-to-end CRC32C, and object stats.

Every write works with only roles/storage.objectCreator + objectViewer (the Terraform module's grant):
nothing is ever replaced or deleted. Uploads are create-only (`if_generation_match=0`), so the library's
own retry is safe; a JSON document that would change goes to the next numbered version instead
(`write_json`).

Cloud Storage itself checks every upload's CRC32C, so a body corrupted on the way is refused and no object
is created: an object of up to SMALL_OBJECT_BYTES goes in one multipart request whose object resource
carries its CRC32C. A larger one of known length (the part's Content-Length) is a resumable upload of
two requests (`_StreamedUpload`): everything up to the last 256 KiB boundary in one PUT streamed straight
from the source, then the rest (under 256 KiB, possibly empty) in the final PUT with `X-Goog-Hash:
crc32c=...` of the whole stream, which Cloud Storage checks before it creates the object. One of unknown
length streams in chunks (`chunk_bytes`: an eighth of the budget) whose final request carries the same
hash. A refusal is retried (the source is read again); a source that breaks off abandons its session,
which creates nothing. The library's own clean-up, which deletes an object whose CRC32C differs after a
resumable upload, is disabled (`_CreateOnlyBlob`).

Reads stream each object from one media download (`read`), as stored.

Memory: an upload of known length holds the source's chunk in flight and the final piece
(STREAMED_UPLOAD_BYTES), whatever the object's size. Otherwise it holds its first SMALL_OBJECT_BYTES,
then up to three times the object (multipart: our bytes, the library's request body and, while it
concatenates it, one more copy) or the head plus two chunks (chunked resumable). Uploads wait for that
much room in a byte budget (UPLOAD_BUFFER_MIB) before the library copies anything, so CONCURRENCY bounds
the number of transfers and the budget their memory.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import io
import json
import posixpath
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import google_crc32c
import requests
import urllib3
from google.api_core import exceptions as api_exceptions
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from worker import retries
from worker.errors import Code, ObjectExists, PermanentError, RetryableError
from worker.http_exchange import Transport, release
from worker.models import GcsLocation, StoredObject

SMALL_OBJECT_BYTES = 8 * 1024 * 1024
RESUMABLE_GRANULE_BYTES = 256 * 1024  # every request of a resumable upload but the last is a multiple
RESUMABLE_CHUNK_BYTES = 16 * 1024 * 1024  # chunks of an upload of unknown length, at most (see chunk_bytes)
RESUMABLE_UPLOAD_BYTES = SMALL_OBJECT_BYTES + 2 * RESUMABLE_CHUNK_BYTES  # what one chunked upload holds
STREAMED_UPLOAD_BYTES = 2 * 1024 * 1024  # an upload of known length: a source chunk and the final piece
TRANSFER_TIMEOUT = 120.0  # seconds without progress on the connection of one upload or download request
DICOM_CONTENT_TYPE = "application/dicom"
JSON_READ_LIMIT = 64 * 1024 * 1024  # read_json reads no more than this
JSON_WRITE_ATTEMPTS = 8  # write_json: versions that other writers may take meanwhile before it gives up
READ_CHUNK_BYTES = 4 * 1024 * 1024  # read: at most this much of a download held at a time
DOWNLOAD_RETRIES = 3  # urllib3's retries of one media download (connection errors, 429 and 5xx)


def crc32c_base64(checksum: google_crc32c.Checksum) -> str:
    return base64.b64encode(checksum.digest()).decode("ascii")


def measure(chunks: Iterator[bytes]) -> tuple[int, str]:
    """The size and CRC32C (base64, as Cloud Storage gives it) of a stream, read to its end."""
    checksum = google_crc32c.Checksum()
    size = 0
    for chunk in chunks:
        checksum.update(chunk)
        size += len(chunk)
    return size, crc32c_base64(checksum)


class ChecksummingReader(io.RawIOBase):
    """A read-only, non-seekable file over byte chunks that counts and checksums the chunks it takes.

    `size` and `crc32c` cover every chunk taken from the iterator: once the reader is exhausted, exactly
    the stream's bytes (checksummed whole chunks at a time, without copying them).
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._replayed: list[memoryview] = []  # bytes served again from the start (see rewind)
        self._position = 0
        self._taken = 0
        self._checksum = google_crc32c.Checksum()

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def _fill(self) -> bool:
        """Take the next chunk when the current one is used up; False at the end of the stream."""
        while not self._pending:
            if self._replayed:
                self._pending = self._replayed.pop(0)
                continue
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            self._checksum.update(chunk)
            self._taken += len(chunk)
            self._pending = memoryview(chunk)
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._fill():
            return 0
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        self._position += count
        return count

    def read(self, size: int | None = -1, /) -> bytes:
        """Exactly `size` bytes, fewer only at the end: a resumable upload takes a short read for the end."""
        pieces: list[memoryview] = []
        remaining = size if size is not None and size >= 0 else None
        while (remaining is None or remaining > 0) and self._fill():
            piece = self._pending if remaining is None else self._pending[:remaining]
            pieces.append(piece)
            self._pending = self._pending[len(piece) :]
            self._position += len(piece)
            if remaining is not None:
                remaining -= len(piece)
        if len(pieces) == 1 and isinstance(pieces[0].obj, bytes) and len(pieces[0]) == len(pieces[0].obj):
            return pieces[0].obj  # one whole chunk (an instance that came in one piece): no copy
        return b"".join(pieces)

    def take(self, limit: int) -> memoryview:
        """The next bytes as they came, at most `limit` of them, without a copy; empty at the end."""
        if not self._fill():
            return memoryview(b"")
        piece = self._pending[:limit]
        self._pending = self._pending[len(piece) :]
        self._position += len(piece)
        return piece

    def rewind(self, head: bytes) -> None:
        """Serve `head` (what was read so far) again from position 0, then go on: lets an upload start
        from the beginning after the first bytes were read to choose its kind, without a second copy."""
        if len(head) != self._position:
            raise ValueError("rewind takes exactly the bytes read so far")
        self._replayed = [memoryview(head), self._pending]
        self._pending = memoryview(b"")
        self._position = 0

    @property
    def size(self) -> int:
        return self._taken

    @property
    def crc32c(self) -> str:
        return crc32c_base64(self._checksum)


class ByteBudget:
    """At most `limit` bytes held at once by those who asked; one holder alone may exceed it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held = 0
        self._room = threading.Condition()

    @contextlib.contextmanager
    def hold(self, size: int) -> Iterator[None]:
        with self._room:
            self._room.wait_for(lambda: self._held == 0 or self._held + size <= self.limit)
            self._held += size
        try:
            yield
        finally:
            with self._room:
                self._held -= size
                self._room.notify_all()


def chunk_bytes(buffer_bytes: int) -> int:
    """The chunk of an upload of unknown length: an eighth of the budget, in whole 256 KiB granules,
    at most RESUMABLE_CHUNK_BYTES (fewer, larger chunks cost fewer requests; each upload holds two)."""
    granules = buffer_bytes // 8 // RESUMABLE_GRANULE_BYTES
    return max(1, min(granules, RESUMABLE_CHUNK_BYTES // RESUMABLE_GRANULE_BYTES)) * RESUMABLE_GRANULE_BYTES


class Storage:
    def __init__(
        self,
        client: storage.Client,
        buffer_bytes: int,
        *,
        connections: int = 10,
        downloads: Transport | None = None,
    ) -> None:
        """`downloads`: what sends `read`'s media downloads; by default urllib3 with the client's
        credentials, `connections` kept per host."""
        self._client = client
        self._buffers = ByteBudget(buffer_bytes)
        self._chunk_bytes = chunk_bytes(buffer_bytes)
        self._downloads = downloads if downloads is not None else _download_transport(client, connections)

    def stat(self, bucket: str, name: str) -> StoredObject | None:
        try:
            blob = self._client.bucket(bucket).get_blob(name)
        except Exception as error:
            raise _translate(error, "reading object metadata") from None
        return _stored(blob) if blob is not None else None

    def list(self, location: GcsLocation) -> Iterator[StoredObject]:
        prefix = location.prefix + "/" if location.prefix else ""
        try:
            for blob in self._client.list_blobs(location.bucket, prefix=prefix):
                yield _stored(blob)
        except Exception as error:
            raise _translate(error, "listing objects") from None

    def subfolders(self, location: GcsLocation) -> builtins.list[str]:
        """The names of the folders right below a location, from a listing with a delimiter (no object
        below them is listed)."""
        prefix = location.prefix + "/" if location.prefix else ""
        try:
            iterator = self._client.list_blobs(location.bucket, prefix=prefix, delimiter="/")
            for _ in iterator.pages:  # the prefixes are collected page by page
                pass
        except Exception as error:
            raise _translate(error, "listing folders") from None
        return sorted(str(name)[len(prefix) :].rstrip("/") for name in iterator.prefixes)

    def upload(
        self,
        bucket: str,
        name: str,
        chunks: Iterator[bytes],
        *,
        metadata: Mapping[str, str],
        content_type: str = DICOM_CONTENT_TYPE,
        size: int | None = None,
    ) -> StoredObject:
        """Create `name` from the chunks, create-only; raises ObjectExists if it is already there.

        `size`: how many bytes the chunks hold, when the source said so (a part's Content-Length); a
        stream of another length is a RetryableError and creates nothing.
        RetryableError when Cloud Storage refused the bytes as corrupt (nothing was created);
        PermanentError(DESTINATION_CONFLICT) when the object it created holds other bytes than were read
        (impossible while the server checks the CRC32C sent; the object is left, never deleted).
        """
        reader = ChecksummingReader(chunks)
        if size is not None and size > SMALL_OBJECT_BYTES:
            with self._buffers.hold(STREAMED_UPLOAD_BYTES):
                stored = self._upload(bucket, name, reader, None, size, metadata, content_type)
        else:
            head = reader.read(SMALL_OBJECT_BYTES + 1)
            if size is not None and len(head) != size:
                raise RetryableError(f"the source did not hold the {size} bytes it announced")
            small = len(head) <= SMALL_OBJECT_BYTES
            with self._buffers.hold(3 * len(head) if small else SMALL_OBJECT_BYTES + 2 * self._chunk_bytes):
                stored = self._upload(bucket, name, reader, head, len(head), metadata, content_type)
        if stored.size != reader.size or stored.crc32c != reader.crc32c:
            raise _differs(name)
        return stored

    def _upload(
        self,
        bucket: str,
        name: str,
        reader: ChecksummingReader,
        head: bytes | None,
        size: int,
        metadata: Mapping[str, str],
        content_type: str,
    ) -> StoredObject:
        """Streamed (`head` None: `size` bytes), one multipart request, or chunks after the head."""
        blob = self._blob(bucket, name)
        blob.metadata = dict(metadata)
        try:
            if head is None:
                self._stream(blob, reader, size, content_type)
            elif len(head) <= SMALL_OBJECT_BYTES:
                blob.upload_from_string(
                    head, content_type=content_type, if_generation_match=0, checksum="crc32c"
                )
            else:
                reader.rewind(head)
                blob.upload_from_file(
                    reader, content_type=content_type, if_generation_match=0, checksum="crc32c"
                )
        except api_exceptions.PreconditionFailed:
            raise ObjectExists(name) from None
        except (RetryableError, PermanentError):
            raise
        except Exception as error:
            raise _translate(error, "uploading an object") from None
        return _stored(blob)

    def _stream(self, blob: storage.Blob, reader: ChecksummingReader, size: int, content_type: str) -> None:
        """A resumable upload of `size` bytes in two requests (the module's docstring)."""
        url = blob.create_resumable_upload_session(
            content_type=content_type, size=size, if_generation_match=0, checksum=None
        )
        upload = _StreamedUpload(url, size)
        transport = self._client._http
        upload.sent_bulk(transport.put(**upload.bulk_request(reader), timeout=TRANSFER_TIMEOUT))
        blob._set_properties(
            upload.finished(transport.put(**upload.final_request(reader), timeout=TRANSFER_TIMEOUT))
        )

    def _blob(self, bucket: str, name: str) -> storage.Blob:
        return _CreateOnlyBlob(name, self._client.bucket(bucket), chunk_size=self._chunk_bytes)

    def write_json(self, bucket: str, name: str, body: Any) -> StoredObject:
        """Write a small JSON document without replacing anything; the returned object holds it.

        That is `name` if it is free or already holds exactly these bytes, else the version that does
        or the next free one (`manifest.json`, `manifest.2.json`, `manifest.3.json`, ...): a document
        that changed is never written over the one it replaces (the function may not delete).
        """
        data = (json.dumps(body, indent=1, sort_keys=True) + "\n").encode("utf-8")
        checksum = crc32c_base64(google_crc32c.Checksum(data))
        for _ in range(JSON_WRITE_ATTEMPTS):
            versions = self.json_versions(bucket, name)
            for version in versions:
                if version.size == len(data) and version.crc32c == checksum:
                    return version
            target = _json_version_name(name, _json_version(name, versions[-1].name) + 1 if versions else 1)
            blob = self._blob(bucket, target)
            try:
                blob.upload_from_string(
                    data, content_type="application/json", if_generation_match=0, checksum="crc32c"
                )
            except api_exceptions.PreconditionFailed:
                continue  # another delivery took that version meanwhile: look again
            except Exception as error:
                raise _translate(error, "writing a JSON object") from None
            stored = _stored(blob)
            if stored.size != len(data) or stored.crc32c != checksum:
                raise _differs(target)
            return stored
        raise RetryableError(f"{name}: other writers kept taking its next version")

    def json_versions(self, bucket: str, name: str) -> builtins.list[StoredObject]:
        """`name` and its numbered versions (see write_json) that exist, base first, from one listing."""
        stem = posixpath.splitext(name)[0]
        try:
            listed = [_stored(blob) for blob in self._client.list_blobs(bucket, prefix=stem + ".")]
        except Exception as error:
            raise _translate(error, "listing objects") from None
        versions = [item for item in listed if _json_version(name, item.name)]
        return sorted(versions, key=lambda item: _json_version(name, item.name))

    def read_json(self, bucket: str, name: str) -> Any:
        """The document in `name`, or None when there is none.

        A body that is not JSON, larger than JSON_READ_LIMIT or nested too deeply to parse is None too:
        the worker never wrote such a thing, and write_json puts its own document in another version.
        """
        try:
            blob = self._client.bucket(bucket).get_blob(name)
            if blob is None or (blob.size or 0) > JSON_READ_LIMIT:
                return None
            data = blob.download_as_bytes()  # the generation just stat'ed, of the size just checked
        except api_exceptions.NotFound:
            return None
        except Exception as error:
            raise _translate(error, "reading a JSON object") from None
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            return None

    def read(self, bucket: str, name: str, generation: int) -> Iterator[bytes]:
        """The bytes of one generation of an object as they arrive, in reads of at most READ_CHUNK_BYTES
        from one streamed media download: never held whole. RetryableError when that generation is gone
        (replaced or deleted since it was listed), or when the download breaks off.

        The bytes are read as stored (no decoding of a Content-Encoding): the caller measures the whole
        stream against the object's CRC32C, which covers the stored bytes."""
        url = self._client.bucket(bucket).blob(name, generation=generation)._get_download_url(self._client)
        try:
            response = self._downloads.open("GET", url, None, {"Accept-Encoding": "gzip"}, TRANSFER_TIMEOUT)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise RetryableError(f"Cloud Storage failed reading an object ({type(error).__name__})") from None
        try:
            if response.status == 404:
                raise RetryableError(f"object {name} changed or vanished while it was read")
            if response.status != 200:
                refused = api_exceptions.from_http_status(response.status, "reading an object")  # type: ignore[no-untyped-call]
                raise _translate(refused, "reading an object")
            while chunk := response.read(READ_CHUNK_BYTES, decode_content=False):
                yield chunk
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise RetryableError(f"reading object {name} broke off ({type(error).__name__})") from None
        finally:
            release(response)


def _download_transport(client: storage.Client, connections: int) -> Transport:
    """Media downloads on urllib3 directly, with the client's credentials (google-auth's AuthorizedHttp):
    half the client CPU of one through the library's requests session (0.25 against 0.57 ms per 0.5 MB
    object, bench stack), and one request per object instead of the library's one per range."""
    from google.auth.transport.urllib3 import AuthorizedHttp

    pool = urllib3.PoolManager(maxsize=connections, retries=retries.http(DOWNLOAD_RETRIES, delete=False))
    return Transport(pool, AuthorizedHttp(client._credentials, http=pool), {})


class _StreamedUpload:
    """The protocol of an upload of known length in two requests, without I/O: which requests to send and
    what their answers mean (Cloud Storage's resumable upload: a non-final request's bytes are whole
    256 KiB granules and its 308 says in `Range` how many were persisted; the final request names the
    total and carries the CRC32C of the whole object, checked before the object is created).

    A session is never resumed: an answer that leaves the upload in doubt is a RetryableError, and the
    retry starts a new session from a new read of the source (an abandoned session creates nothing).
    """

    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self.size = size
        self.bulk = size // RESUMABLE_GRANULE_BYTES * RESUMABLE_GRANULE_BYTES

    def bulk_request(self, reader: ChecksummingReader) -> dict[str, Any]:
        """Bytes 0 to bulk-1, streamed from the reader as requests sends them (a Content-Length body)."""
        return {
            "url": self.url,
            "data": _ExactBody(reader, self.bulk),
            "headers": {"Content-Range": f"bytes 0-{self.bulk - 1}/*"},
        }

    def sent_bulk(self, response: requests.Response) -> None:
        if response.status_code != 308:
            raise _api_error(response)
        if response.headers.get("Range") != f"bytes=0-{self.bulk - 1}":
            raise RetryableError("Cloud Storage persisted part of a streamed upload; it starts again")

    def final_request(self, reader: ChecksummingReader) -> dict[str, Any]:
        """The rest (under 256 KiB), once the source ended where it said, with the whole CRC32C."""
        rest = reader.read(self.size - self.bulk)
        if len(rest) != self.size - self.bulk or reader.read(1):
            raise RetryableError(f"the source did not hold the {self.size} bytes it announced")
        content_range = f"bytes {self.bulk}-{self.size - 1}/{self.size}" if rest else f"bytes */{self.size}"
        return {
            "url": self.url,
            "data": rest,
            "headers": {"Content-Range": content_range, "X-Goog-Hash": f"crc32c={reader.crc32c}"},
        }

    def finished(self, response: requests.Response) -> dict[str, Any]:
        """The created object's resource."""
        if response.status_code not in (200, 201):
            raise _api_error(response)
        resource: dict[str, Any] = response.json()
        return resource


class _ExactBody:
    """Exactly `size` bytes of a reader as a request body: requests sends it with that Content-Length,
    piece by piece as the source gives them (never held whole); a source that ends early raises."""

    def __init__(self, reader: ChecksummingReader, size: int) -> None:
        self._reader, self._size = reader, size

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[memoryview]:
        remaining = self._size
        while remaining:
            piece = self._reader.take(remaining)
            if not piece:
                raise RetryableError(f"the source ended before the {self._size} bytes it announced")
            remaining -= len(piece)
            yield piece


def _api_error(response: requests.Response) -> Exception:
    error: Exception = api_exceptions.from_http_response(response)  # type: ignore[no-untyped-call]
    return error


class _CreateOnlyBlob(storage.Blob):  # type: ignore[misc]
    """A blob that is never deleted from here.

    google-cloud-storage deletes the object when the CRC32C of a finished resumable upload differs from
    the bytes it sent (DataCorruption). The function may not delete (and an object it did not verify is
    not its to remove): the upload fails as a conflict instead and leaves the object as it is.
    """

    def delete(self, *args: Any, **kwargs: Any) -> None:
        raise _differs(self.name)


def _differs(name: str) -> PermanentError:
    return PermanentError(
        Code.DESTINATION_CONFLICT, f"object {name} holds other bytes than were sent; it was left as it is"
    )


def _json_version_name(name: str, version: int) -> str:
    """`a/manifest.json` for version 1, `a/manifest.2.json` for 2, ..."""
    if version == 1:
        return name
    stem, suffix = posixpath.splitext(name)
    return f"{stem}.{version}{suffix}"


def _json_version(name: str, candidate: str) -> int:
    """The version number of `candidate` among the versions of `name`; 0 if it is none of them."""
    if candidate == name:
        return 1
    stem, suffix = posixpath.splitext(name)
    match = re.fullmatch(re.escape(stem) + r"\.([1-9][0-9]{0,8})" + re.escape(suffix), candidate)
    return int(match.group(1)) if match and int(match.group(1)) >= 2 else 0


def _stored(blob: storage.Blob) -> StoredObject:
    return StoredObject(
        bucket=blob.bucket.name,
        name=blob.name,
        size=int(blob.size or 0),
        crc32c=blob.crc32c or "",
        generation=int(blob.generation or 0),
        metadata=dict(blob.metadata or {}),
    )


def _translate(error: Exception, doing: str) -> Exception:
    """Cloud Storage errors as worker errors: a refused bucket is permanent, the rest is retried.

    A 400 that names the CRC32C is Cloud Storage refusing bytes that changed on the way: nothing was
    created, and a retry reads the source again.
    """
    if isinstance(error, api_exceptions.BadRequest) and "crc32c" in _server_message(error).lower():
        return RetryableError(f"Cloud Storage refused {doing}: the bytes arrived corrupted")
    if isinstance(error, api_exceptions.Forbidden | api_exceptions.NotFound | api_exceptions.BadRequest):
        return PermanentError(
            Code.DESTINATION_REFUSED, f"Cloud Storage refused {doing} ({type(error).__name__})"
        )
    if isinstance(
        error,
        api_exceptions.GoogleAPICallError
        | api_exceptions.RetryError
        | requests.RequestException
        | DataCorruption
        | InvalidResponse
        | ConnectionError
        | TimeoutError,
    ):
        return RetryableError(f"Cloud Storage failed {doing} ({type(error).__name__})")
    return error


def _server_message(error: api_exceptions.GoogleAPICallError) -> str:
    """The `error.message` of Cloud Storage's JSON error body ("" if there is none); never logged."""
    try:
        return str(error.response.json()["error"]["message"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return ""
