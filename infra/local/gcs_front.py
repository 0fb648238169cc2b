"""A permission front for fake-gcs-server: Cloud Storage as the function's service account sees it.

The Terraform module grants the function only roles/storage.objectCreator + roles/storage.objectViewer
on its bucket: it may create objects and read them, never replace, delete or change one. fake-gcs-server
enforces no permissions, does not check a multipart upload's CRC32C nor the `X-Goog-Hash` of a resumable
upload's final request (v1.54.0 creates the object all the same), and lets a resumable upload with
`ifGenerationMatch=0` overwrite (local-components.md). This reverse proxy on 127.0.0.1 sits in front of
it and answers as Cloud Storage would for that principal:

* 403 for an object DELETE (and a bucket's), an object metadata PATCH/PUT, and any write onto an existing
  object (multipart, media and resumable uploads, compose, copy, rewrite) without `ifGenerationMatch=0`;
* 412 for a write with `ifGenerationMatch=0` onto an existing object, checked again when the final
  request of a resumable upload arrives;
* 400 when a multipart upload's object resource names a `crc32c`, or an upload's final request carries
  `X-Goog-Hash: crc32c=...`, that differs from the CRC32C of the bytes the front passed: no object is
  created.

Reads, listings, bucket creation and the cancelling of a resumable session pass through. Tests that must
plant, replace or remove objects talk to fake-gcs-server directly (`Stack.gcs_admin_url`).

Bodies: a resumable upload's chunks stream through in pieces (its final request is held, one chunk, so
that it can be refused whole); multipart and media uploads, single requests of at most one chunk, are
held; responses stream. Requests need a Content-Length (411 otherwise).

Faults: `POST /_front/faults {"corrupt_uploads": N}` flips one byte of each of the next N upload bodies
in transit (after the client computed its CRC32C, before the front checks it); `GET` shows what is left.

Run: ``python -m infra.local.gcs_front --port P --upstream http://127.0.0.1:Q`` (prints ``READY <url>``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import google_crc32c

from infra.local.gcs_refusals import (
    PRECONDITION_FAILED,
    Refusal,
    claimed_crc32c,
    crc32c_base64,
    flip,
    forbidden,
    refuse_crc32c,
)

LOOPBACK = "127.0.0.1"
PIECE_BYTES = 1024 * 1024  # what the front holds of a streamed body at a time
HELD_BODY_LIMIT = 256 * 1024 * 1024  # a held body larger than this is refused (413)
UPSTREAM_TIMEOUT = 300.0
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "upgrade"}
    | {"transfer-encoding", "content-length"}
)
OBJECT_PATH = re.compile(r"/storage/v1/b/([^/]+)/o/([^/]+)")
BUCKET_PATH = re.compile(r"/storage/v1/b/([^/]+)")
UPLOAD_PATH = re.compile(r"/upload/storage/v1/b/([^/]+)/o")
# compose: .../o/NAME/compose; copy and rewrite: .../o/SRC/copyTo|rewriteTo/b/BUCKET/o/NAME
COMPOSE_PATH = re.compile(r"/storage/v1/b/([^/]+)/o/([^/]+)/compose")
COPY_PATH = re.compile(r"/storage/v1/b/[^/]+/o/[^/]+/(?:copyTo|rewriteTo)/b/([^/]+)/o/([^/]+)")
CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)")


@dataclass
class Session:
    """A resumable upload the front saw begin: what it creates and the CRC32C of the bytes passed."""

    bucket: str
    name: str
    if_generation_match: str | None
    passed: int = 0
    checksum: Any = field(default_factory=google_crc32c.Checksum)


class GcsFront(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.hostname != LOOPBACK:
            raise ValueError("the upstream must be on 127.0.0.1")
        self.upstream = (parts.hostname, parts.port or 80)
        self.sessions: dict[str, Session] = {}
        self.corrupt_uploads = 0
        self.state = threading.Lock()
        self._creates = [threading.Lock() for _ in range(64)]  # one object's checks and create at a time
        super().__init__((LOOPBACK, port), FrontHandler)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"

    def creating(self, bucket: str, name: str) -> threading.Lock:
        return self._creates[hash((bucket, name)) % len(self._creates)]

    def take_fault(self) -> bool:
        with self.state:
            if self.corrupt_uploads > 0:
                self.corrupt_uploads -= 1
                return True
            return False

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(*self.upstream, timeout=UPSTREAM_TIMEOUT)

    def exists(self, bucket: str, name: str) -> bool:
        connection = self.connect()
        try:
            connection.request("GET", f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}")
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        if response.status not in (200, 404):
            raise Refusal(503, f"upstream answered {response.status} to a metadata read")
        return response.status == 200

    def check_create(self, bucket: str, name: str, if_generation_match: str | None) -> None:
        """What objectCreator may write: a new object only."""
        if self.exists(bucket, name):
            if if_generation_match == "0":
                raise Refusal(412, PRECONDITION_FAILED)
            raise forbidden("storage.objects.delete", bucket, name)

    def handle_error(self, request: Any, client_address: Any) -> None:
        print(f"gcs-front: error serving {client_address}: {sys.exc_info()[1]!r}", file=sys.stderr)


class FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: GcsFront
    _body_read = False  # per request (reset in serve: one handler serves a keep-alive connection)
    _streamed_length = 0
    _answered = False

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    # -- dispatch ------------------------------------------------------------------------------------

    def serve(self) -> None:
        self._body_read = False
        self._streamed_length = 0
        self._answered = False
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        try:
            if url.path.startswith("/_front/"):
                self.admin(url.path)
            elif upload := UPLOAD_PATH.fullmatch(url.path):
                self.upload(unquote(upload[1]), query)
            else:
                self.check_other(url.path, query)
                self.forward(self.streamed_body())
        except Refusal as refusal:
            self.discard_body()
            self.answer(refusal.status, refusal.body())
        except (ConnectionError, TimeoutError, http.client.HTTPException, OSError) as error:
            self.close_connection = True
            if not self._answered:  # else the client sees the answer break off
                with contextlib.suppress(OSError):
                    self.answer(502, Refusal(502, f"front: {type(error).__name__}").body())

    def check_other(self, path: str, query: Mapping[str, str]) -> None:
        method = self.command
        for pattern in (COMPOSE_PATH, COPY_PATH):
            if method == "POST" and (match := pattern.fullmatch(path)):
                bucket, name = unquote(match[1]), unquote(match[2])
                self.server.check_create(bucket, name, query.get("ifGenerationMatch"))
                return
        if match := OBJECT_PATH.fullmatch(path):
            bucket, name = unquote(match[1]), unquote(match[2])
            if method == "DELETE":
                raise forbidden("storage.objects.delete", bucket, name)
            if method in ("PATCH", "PUT"):
                raise forbidden("storage.objects.update", bucket, name)
        if method == "DELETE" and (match := BUCKET_PATH.fullmatch(path)):
            raise Refusal(403, f"Permission 'storage.buckets.delete' denied on {unquote(match[1])}")
        if method in ("PATCH", "PUT") and BUCKET_PATH.fullmatch(path):
            raise Refusal(403, "Permission 'storage.buckets.update' denied")

    def admin(self, path: str) -> None:
        if path != "/_front/faults":
            raise Refusal(404, "no such front endpoint")
        if self.command == "POST":
            body = json.loads(self.held_body() or b"{}")
            with self.server.state:
                self.server.corrupt_uploads = int(body.get("corrupt_uploads", 0))
        elif self.command == "DELETE":
            self.discard_body()
            with self.server.state:
                self.server.corrupt_uploads = 0
        with self.server.state:
            state = {"corrupt_uploads": self.server.corrupt_uploads}
        self.answer(200, json.dumps(state).encode(), "application/json")

    # -- uploads -------------------------------------------------------------------------------------

    def upload(self, bucket: str, query: Mapping[str, str]) -> None:
        kind = query.get("uploadType")
        if self.command == "PUT" and "upload_id" in query:
            self.resumable_chunk(query["upload_id"])
        elif self.command == "POST" and kind == "multipart":
            self.multipart(bucket, query)
        elif self.command == "POST" and kind == "media":
            data = self.held_body()
            if self.server.take_fault():
                data = flip(data)
            name = query.get("name", "")
            with self.server.creating(bucket, name):
                self.server.check_create(bucket, name, query.get("ifGenerationMatch"))
                refuse_crc32c(claimed_crc32c(self.headers.get("X-Goog-Hash", "")), crc32c_base64(data))
                self.forward(iter([data]), len(data))
        elif self.command == "POST" and kind == "resumable":
            self.initiate(bucket, query)
        else:
            self.forward(self.streamed_body())

    def multipart(self, bucket: str, query: Mapping[str, str]) -> None:
        body = self.held_body()
        boundary = re.search(r'boundary="?([^";]+)"?', self.headers.get("Content-Type", ""))
        delimiter = b"--" + (boundary[1].encode() if boundary else b"")
        first = body.find(delimiter)
        second = body.find(delimiter, first + len(delimiter)) if boundary and first >= 0 else -1
        data_start = body.find(b"\r\n\r\n", second) + 4 if second >= 0 else 3
        data_end = body.find(b"\r\n" + delimiter, data_start)
        if data_start == 3 or data_end < 0:
            raise Refusal(400, "Invalid multipart request")
        try:
            metadata = json.loads(body[first + len(delimiter) : second].split(b"\r\n\r\n", 1)[1])
        except (ValueError, IndexError):
            raise Refusal(400, "Invalid multipart request: the object resource is not JSON") from None
        name = str(metadata.get("name") or query.get("name", ""))
        if data_end > data_start and self.server.take_fault():
            body = flip(body, data_start)
        claimed = metadata.get("crc32c")
        with self.server.creating(bucket, name):
            self.server.check_create(bucket, name, query.get("ifGenerationMatch"))
            refuse_crc32c(None if claimed is None else str(claimed), crc32c_base64(body[data_start:data_end]))
            self.forward(iter([body]), len(body))

    def initiate(self, bucket: str, query: Mapping[str, str]) -> None:
        body = self.held_body()
        try:
            metadata = json.loads(body) if body else {}
        except ValueError:
            raise Refusal(400, "Invalid resumable upload: metadata is not JSON") from None
        name = str(metadata.get("name") or query.get("name", ""))
        self.server.check_create(bucket, name, query.get("ifGenerationMatch"))
        status, headers = self.forward(iter([body]), len(body))
        location = headers.get("location", "")
        upload_id = parse_qs(urlsplit(location).query).get("upload_id", [""])[-1]
        if status == 200 and upload_id:
            with self.server.state:
                self.server.sessions[upload_id] = Session(bucket, name, query.get("ifGenerationMatch"))

    def resumable_chunk(self, upload_id: str) -> None:
        with self.server.state:
            session = self.server.sessions.get(upload_id)
        if session is None:  # begun behind the front (an admin client): not the function's
            self.forward(self.streamed_body())
            return
        match = CONTENT_RANGE.fullmatch(self.headers.get("Content-Range", ""))
        if match is None:
            self.forward(self.streamed_body())
            return
        start = int(match[1]) if match[1] is not None else None
        end = int(match[2]) if match[2] is not None else None
        final = match[3] != "*" and (end is None or end + 1 == int(match[3]))
        checksum = session.checksum.copy()
        passed = session.passed

        def counted(pieces: Iterator[bytes]) -> Iterator[bytes]:
            """Checksum the bytes past those already passed (a retried chunk repeats some)."""
            nonlocal passed
            position = start if start is not None else passed
            first = self.server.take_fault() if start is not None and end is not None else False
            for piece in pieces:
                if first:
                    piece, first = flip(piece), False
                new = piece[max(0, passed - position) :]
                checksum.update(new)
                passed += len(new)
                position += len(piece)
                yield piece

        if not final:
            status, _ = self.forward(counted(self.streamed_body()))
        else:
            data = b"".join(counted(iter([self.held_body()])))
            with self.server.creating(session.bucket, session.name):
                self.server.check_create(session.bucket, session.name, session.if_generation_match)
                refuse_crc32c(claimed_crc32c(self.headers.get("X-Goog-Hash", "")), crc32c_base64(checksum))
                status, _ = self.forward(iter([data]), len(data))
        with self.server.state:
            if status == 308 or (status == 200 and not final):
                session.checksum, session.passed = checksum, passed
            elif status == 200:
                self.server.sessions.pop(upload_id, None)

    # -- bodies and forwarding -----------------------------------------------------------------------

    def length(self) -> int:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise Refusal(411, "the front needs a Content-Length")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise Refusal(400, "bad Content-Length") from None
        if length < 0:
            raise Refusal(400, "bad Content-Length")
        return length

    def held_body(self) -> bytes:
        length = self.length()
        if length > HELD_BODY_LIMIT:
            raise Refusal(413, "request body too large for the front")
        data = self.rfile.read(length)
        if len(data) != length:
            raise ConnectionError("the client's body broke off")
        self._body_read = True
        return data

    def streamed_body(self) -> Iterator[bytes]:
        length = self.length()
        self._body_read = True

        def pieces() -> Iterator[bytes]:
            remaining = length
            while remaining > 0:
                piece = self.rfile.read(min(PIECE_BYTES, remaining))
                if not piece:
                    raise ConnectionError("the client's body broke off")
                remaining -= len(piece)
                yield piece

        self._streamed_length = length
        return pieces()

    def discard_body(self) -> None:
        """Read what the client sent, so the connection stays usable for its next request."""
        if self._body_read:
            return
        self._body_read = True
        try:
            remaining = self.length()
        except Refusal:
            self.close_connection = True
            return
        while remaining > 0:
            piece = self.rfile.read(min(PIECE_BYTES, remaining))
            if not piece:
                self.close_connection = True
                return
            remaining -= len(piece)

    def forward(self, body: Iterator[bytes], length: int | None = None) -> tuple[int, dict[str, str]]:
        """Send the request upstream with `body`, stream the answer back; its status and headers."""
        if length is None:
            length = self._streamed_length
        connection = self.server.connect()
        try:
            connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    connection.putheader(key, value)
            connection.putheader("Content-Length", str(length))
            connection.endheaders()
            for piece in body:
                connection.send(piece)
            response = connection.getresponse()
            headers = {key.lower(): value for key, value in response.getheaders()}
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            size = response.getheader("Content-Length")
            if size is not None:
                self.send_header("Content-Length", size)
            else:
                self.close_connection = True
                self.send_header("Connection", "close")
            self.end_headers()
            self._answered = True
            if self.command != "HEAD":
                while piece := response.read(PIECE_BYTES):
                    self.wfile.write(piece)
            return response.status, headers
        finally:
            connection.close()

    def answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self._answered = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="fake-gcs-server's URL, on 127.0.0.1")
    args = parser.parse_args(argv)
    front = GcsFront(args.port, args.upstream)
    print(f"READY {front.url}", flush=True)
    try:
        front.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        front.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
