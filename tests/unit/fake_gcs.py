"""An in-memory Cloud Storage behind google-cloud-storage's HTTP transport, for tests of worker/storage.py.

The real library runs unchanged; only its `requests` session answers from memory (nothing leaves the
process). It speaks the part of the JSON API the worker uses: object get and listing, media download
(whole, ranged, of a generation), multipart and resumable uploads with `ifGenerationMatch`, and DELETE
(recorded, so a test can show that none is ever sent). Like Cloud Storage it checks the CRC32C a multipart
upload's object resource names and the `X-Goog-Hash` of a resumable upload's final request, refusing a
mismatch with 400.

Faults: `truncate_downloads` ends the next N downloads halfway through their Content-Length;
`content_encoding` serves objects as stored with that Content-Encoding; `corrupt_in_transit` flips one
byte of the next N upload bodies before the checks (the server refuses them); `trust_client = True` turns
the checks off, and with `corrupt_stored` the server stores a flipped byte (a server that does not
check, so the library sees a different CRC32C afterwards).
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import google_crc32c
import requests
import urllib3
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from worker.http_exchange import Transport
from worker.storage import Storage

ENDPOINT = "http://127.0.0.1:9"  # never contacted: the session answers; the discard port if it ever were


def crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode("ascii")


@dataclass
class StoredBlob:
    data: bytes
    generation: int
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Seen:
    """One request the library sent."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    streamed: bool = False  # the body was an iterable requests sent piece by piece, not bytes it held


@dataclass
class _Session:
    bucket: str
    name: str
    query: Mapping[str, str]
    metadata: dict[str, Any]
    received: bytearray = field(default_factory=bytearray)


class FakeGcs(requests.adapters.BaseAdapter):
    """The adapter; `client()` gives a storage.Client on it."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[tuple[str, str], StoredBlob] = {}
        self.seen: list[Seen] = []
        self.corrupt_in_transit = 0
        self.corrupt_stored = False
        self.trust_client = False
        self.truncate_downloads = 0  # the next N downloads send half their body, then end
        self.content_encoding = ""  # the Content-Encoding the objects were stored with
        self.on_upload: Callable[[str, bytes], None] | None = None  # (kind, body) before it is stored
        self._sessions: dict[str, _Session] = {}
        self._generations = itertools.count(1000)
        self._lock = threading.Lock()

    def worker_storage(self, buffer_bytes: int) -> Storage:
        """The worker's Storage on this server: the library's requests and its own media downloads."""
        return Storage(self.client(), buffer_bytes, downloads=Transport(urllib3.PoolManager(), self, {}))

    def client(self) -> storage.Client:
        session = requests.Session()
        session.trust_env = False
        session.mount("http://", self)
        return storage.Client(
            project="unit-tests",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": ENDPOINT},
            _http=session,
        )

    def put(self, bucket: str, name: str, data: bytes) -> StoredBlob:
        """Plant an object as another writer would."""
        with self._lock:
            blob = self.objects[(bucket, name)] = StoredBlob(data, next(self._generations))
        return blob

    def requests_of(self, method: str) -> list[Seen]:
        return [item for item in self.seen if item.method == method]

    def close(self) -> None:
        pass

    # -- the server ---------------------------------------------------------------------------------

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        raw_body: Any = request.body or b""
        streamed = not isinstance(raw_body, str | bytes | bytearray | memoryview)
        if streamed:  # read as requests would send it: a source that breaks raises here, nothing seen
            body = b"".join(bytes(piece) for piece in raw_body)
        else:
            body = raw_body.encode() if isinstance(raw_body, str) else bytes(raw_body)
        raw = self._exchange(str(request.method), str(request.url), request.headers, body, streamed)
        return requests.adapters.HTTPAdapter().build_response(request, raw)

    def urlopen(
        self, method: str, url: str, body: bytes | None = None, headers: Any = None, **kwargs: Any
    ) -> urllib3.HTTPResponse:
        """The same server for urllib3's interface (Storage's media downloads)."""
        return self._exchange(method, url, headers or {}, body or b"", streamed=False)

    def _exchange(
        self, method: str, address: str, headers: Any, body: bytes, streamed: bool
    ) -> urllib3.HTTPResponse:
        url = urlsplit(address)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        sent = requests.structures.CaseInsensitiveDict(  # the library sets some values as bytes
            {key: value.decode() if isinstance(value, bytes) else value for key, value in headers.items()}
        )
        self.seen.append(Seen(method, url.path, query, sent, body, streamed))
        status, answer_headers, payload = self._answer(method, url.path, query, sent, body)
        if url.path.startswith("/download/") and status in (200, 206):
            answer_headers = {**answer_headers, "Content-Length": str(len(payload))}
            if self.content_encoding:
                answer_headers["Content-Encoding"] = self.content_encoding
            if self.truncate_downloads:
                self.truncate_downloads -= 1
                payload = payload[: len(payload) // 2]
        return urllib3.HTTPResponse(
            body=io.BytesIO(payload), headers=answer_headers, status=status, preload_content=False
        )

    def _answer(
        self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            if match := re.fullmatch(r"/storage/v1/b/([^/]+)", path):
                return _json(200, {"kind": "storage#bucket", "name": unquote(match[1])})
            if match := re.fullmatch(r"/storage/v1/b/([^/]+)/o", path):
                return self._list(unquote(match[1]), query.get("prefix", ""))
            if match := re.fullmatch(r"/storage/v1/b/([^/]+)/o/(.+)", path):
                key = (unquote(match[1]), unquote(match[2]))
                if method == "GET":
                    found = self.objects.get(key)
                    return _json(200, _resource(key, found)) if found else _error(404, "Not Found")
                if method == "DELETE":
                    return (204, {}, b"") if self.objects.pop(key, None) else _error(404, "Not Found")
            if match := re.fullmatch(r"/download/storage/v1/b/([^/]+)/o/(.+)", path):
                found = self.objects.get((unquote(match[1]), unquote(match[2])))
                if found is None or query.get("generation", str(found.generation)) != str(found.generation):
                    return _error(404, "Not Found")
                ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", headers.get("Range", ""))
                if ranged is None:
                    return 200, {"x-goog-hash": f"crc32c={crc32c(found.data)}"}, found.data
                start = int(ranged[1])
                end = min(int(ranged[2]) if ranged[2] else len(found.data) - 1, len(found.data) - 1)
                if start >= len(found.data):
                    return _error(416, "Requested range not satisfiable")
                content_range = f"bytes {start}-{end}/{len(found.data)}"
                return 206, {"Content-Range": content_range}, found.data[start : end + 1]
            if match := re.fullmatch(r"/upload/storage/v1/b/([^/]+)/o", path):
                bucket = unquote(match[1])
                if method == "POST" and query.get("uploadType") == "multipart":
                    return self._multipart(bucket, query, headers, body)
                if method == "POST" and query.get("uploadType") == "resumable":
                    return self._initiate(bucket, query, body)
                if method == "PUT" and query.get("upload_id") in self._sessions:
                    return self._chunk(self._sessions[query["upload_id"]], query["upload_id"], headers, body)
            return _error(400, f"unknown request {method} {path}")

    def _list(self, bucket: str, prefix: str) -> tuple[int, dict[str, str], bytes]:
        items = [
            _resource(key, blob)
            for key, blob in sorted(self.objects.items())
            if key[0] == bucket and key[1].startswith(prefix)
        ]
        return _json(200, {"kind": "storage#objects", "items": items})

    def _transit(self, kind: str, data: bytes) -> bytes:
        if self.on_upload is not None:
            self._lock.release()
            try:
                self.on_upload(kind, data)
            finally:
                self._lock.acquire()
        if self.corrupt_in_transit > 0 and data:
            self.corrupt_in_transit -= 1
            return bytes([data[0] ^ 0x01]) + data[1:]
        return data

    def _create(
        self, bucket: str, name: str, query: Mapping[str, str], metadata: Mapping[str, Any], data: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        key = (bucket, name)
        expected = query.get("ifGenerationMatch")
        current = self.objects.get(key)
        if expected is not None and int(expected) != (current.generation if current else 0):
            return _error(412, "At least one of the pre-conditions you specified did not hold.")
        if self.corrupt_stored and data:
            data = data[:-1] + bytes([data[-1] ^ 0x01])
        blob = StoredBlob(
            data,
            next(self._generations),
            dict(metadata.get("metadata") or {}),
            str(metadata.get("contentType") or "application/octet-stream"),
        )
        self.objects[key] = blob
        return _json(200, _resource(key, blob))

    def _multipart(
        self, bucket: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        boundary = re.search(r'boundary="?([^";]+)"?', headers.get("Content-Type", ""))
        if boundary is None:
            return _error(400, "no boundary")
        parts = body.split(b"--" + boundary[1].encode())
        metadata = json.loads(parts[1].split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n"))
        data = self._transit("multipart", parts[2].split(b"\r\n\r\n", 1)[1][: -len(b"\r\n")])
        claimed = metadata.get("crc32c")
        if claimed is not None and claimed != crc32c(data) and not self.trust_client:
            return _error(
                400, f'Provided CRC32C "{claimed}" doesn\'t match calculated CRC32C "{crc32c(data)}".'
            )
        return self._create(bucket, str(metadata.get("name") or query["name"]), query, metadata, data)

    def _initiate(
        self, bucket: str, query: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        metadata = json.loads(body or b"{}")
        upload_id = str(next(self._generations))
        self._sessions[upload_id] = _Session(
            bucket, str(metadata.get("name") or query["name"]), query, metadata
        )
        location = (
            f"{ENDPOINT}/upload/storage/v1/b/{quote(bucket)}/o?uploadType=resumable&upload_id={upload_id}"
        )
        return 200, {"Location": location}, b""

    def _chunk(
        self, session: _Session, upload_id: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        match = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", headers.get("Content-Range", ""))
        if match is None:
            return _error(400, "bad Content-Range")
        if match[1] is not None and int(match[1]) == len(session.received):
            session.received += self._transit("resumable", body)
        total = match[3]
        if total == "*" or int(total) != len(session.received):
            end = len(session.received) - 1
            return (308, {"Range": f"bytes=0-{end}"} if end >= 0 else {}, b"")
        data = bytes(session.received)
        hashes = dict(
            item.strip().split("=", 1) for item in headers.get("X-Goog-Hash", "").split(",") if "=" in item
        )
        claimed = hashes.get("crc32c")
        del self._sessions[upload_id]
        if claimed is not None and claimed != crc32c(data) and not self.trust_client:
            return _error(
                400, f'Provided CRC32C "{claimed}" doesn\'t match calculated CRC32C "{crc32c(data)}".'
            )
        return self._create(session.bucket, session.name, session.query, session.metadata, data)


def _resource(key: tuple[str, str], blob: StoredBlob) -> dict[str, Any]:
    return {
        "kind": "storage#object",
        "bucket": key[0],
        "name": key[1],
        "size": str(len(blob.data)),
        "crc32c": crc32c(blob.data),
        "generation": str(blob.generation),
        "metageneration": "1",
        "contentType": blob.content_type,
        "metadata": blob.metadata,
    }


def _json(status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return _json(status, {"error": {"code": status, "message": message, "errors": [{"message": message}]}})
