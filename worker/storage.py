"""The Cloud Storage boundary: create-only streaming uploads with end-to-end CRC32C, and object stats.

Writes are create-only (`if_generation_match=0`), so the library's own retry is safe and nothing is
ever overwritten. An object of up to SMALL_OBJECT_BYTES goes in one multipart request whose CRC32C the
server checks; a larger one streams as a resumable upload in RESUMABLE_CHUNK_BYTES chunks, the CRC32C
computed as it streams and compared with the server's on completion (the library deletes a corrupt
object).

Memory: an upload holds its first SMALL_OBJECT_BYTES, then up to three times the object (multipart: our
bytes, the library's request body and, while it concatenates it, one more copy) or the head plus two
chunks (resumable), whatever the object's size. Uploads wait for that much room in a byte budget
(UPLOAD_BUFFER_MIB) before the library copies anything, so CONCURRENCY bounds the number of transfers
and the budget their memory.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import google_crc32c
import requests
from google.api_core import exceptions as api_exceptions
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from worker.errors import Code, PermanentError, RetryableError
from worker.models import GcsLocation

SMALL_OBJECT_BYTES = 8 * 1024 * 1024
RESUMABLE_CHUNK_BYTES = 16 * 1024 * 1024  # a multiple of 256 KiB, as resumable uploads require
RESUMABLE_UPLOAD_BYTES = SMALL_OBJECT_BYTES + 2 * RESUMABLE_CHUNK_BYTES  # what one resumable upload holds
DICOM_CONTENT_TYPE = "application/dicom"


class ObjectExists(Exception):
    """A create-only write met an existing object (another delivery may have written it)."""


@dataclass(frozen=True)
class StoredObject:
    """What Cloud Storage says of one object; crc32c is base64 of the big-endian value, as GCS gives it."""

    bucket: str
    name: str
    size: int
    crc32c: str
    generation: int
    metadata: Mapping[str, str]

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


def crc32c_base64(checksum: google_crc32c.Checksum) -> str:
    return base64.b64encode(checksum.digest()).decode("ascii")


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


class Storage:
    def __init__(self, client: storage.Client, buffer_bytes: int) -> None:
        self._client = client
        self._buffers = ByteBudget(buffer_bytes)

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

    def upload(
        self,
        bucket: str,
        name: str,
        chunks: Iterator[bytes],
        *,
        metadata: Mapping[str, str],
        content_type: str = DICOM_CONTENT_TYPE,
    ) -> StoredObject:
        """Create `name` from the chunks, create-only; raises ObjectExists if it is already there."""
        reader = ChecksummingReader(chunks)
        head = reader.read(SMALL_OBJECT_BYTES + 1)
        small = len(head) <= SMALL_OBJECT_BYTES
        with self._buffers.hold(3 * len(head) if small else RESUMABLE_UPLOAD_BYTES):
            stored = self._upload(bucket, name, reader, head, metadata, content_type)
        if stored.size != reader.size or stored.crc32c != reader.crc32c:
            self.delete(bucket, name, generation=stored.generation)
            raise RetryableError(f"object {name} does not match the bytes sent; deleted it to retry")
        return stored

    def _upload(
        self,
        bucket: str,
        name: str,
        reader: ChecksummingReader,
        head: bytes,
        metadata: Mapping[str, str],
        content_type: str,
    ) -> StoredObject:
        blob = self._client.bucket(bucket).blob(name, chunk_size=RESUMABLE_CHUNK_BYTES)
        blob.metadata = dict(metadata)
        try:
            if len(head) <= SMALL_OBJECT_BYTES:
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

    def write_json(self, bucket: str, name: str, body: Any) -> StoredObject:
        """Write a small JSON document; an existing one with the same content is kept as it is."""
        data = (json.dumps(body, indent=1, sort_keys=True) + "\n").encode("utf-8")
        checksum = google_crc32c.Checksum(data)
        existing = self.stat(bucket, name)
        if existing is not None and existing.crc32c == crc32c_base64(checksum) and existing.size == len(data):
            return existing
        blob = self._client.bucket(bucket).blob(name)
        generation = existing.generation if existing is not None else 0
        try:
            blob.upload_from_string(
                data, content_type="application/json", if_generation_match=generation, checksum="crc32c"
            )
        except api_exceptions.PreconditionFailed:
            # Another delivery wrote it meanwhile: fine if it wrote the same document.
            now = self.stat(bucket, name)
            if now is not None and now.crc32c == crc32c_base64(checksum) and now.size == len(data):
                return now
            raise RetryableError(f"{name} changed while it was written") from None
        except Exception as error:
            raise _translate(error, "writing a JSON object") from None
        return _stored(blob)

    def read_json(self, bucket: str, name: str) -> Any:
        try:
            return json.loads(self._client.bucket(bucket).blob(name).download_as_bytes())
        except api_exceptions.NotFound:
            return None
        except ValueError:
            return None
        except Exception as error:
            raise _translate(error, "reading a JSON object") from None

    def delete(self, bucket: str, name: str, *, generation: int) -> None:
        try:
            self._client.bucket(bucket).blob(name).delete(if_generation_match=generation)
        except (api_exceptions.NotFound, api_exceptions.PreconditionFailed):
            return
        except Exception as error:
            raise _translate(error, "deleting an object") from None


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
    """Cloud Storage errors as worker errors: a refused bucket is permanent, the rest is retried."""
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
