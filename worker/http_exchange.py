"""HTTP exchanges with a DICOMweb server: the one place where HTTP outcomes become worker errors.

Transports are pooled (urllib3) and authenticated as configured, never read proxies or .netrc from the
environment, never follow redirects, and retry as `worker.retries.http` says. Every exchange ends by a
deadline however slowly the server sends (a watchdog shuts the socket), a body read whole has a size cap,
and JSON too deep or with numbers too long is refused with a clear code instead of an unexpected error.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

import urllib3

from worker import retries
from worker.errors import Code, PermanentError, RetryableError, SourceGone
from worker.settings import Auth, Settings

_J = TypeVar("_J")

HEALTHCARE_SCOPES = ("https://www.googleapis.com/auth/cloud-healthcare",)
DEFAULT_HEADERS = {"Accept": "*/*", "Accept-Encoding": "gzip, deflate", "User-Agent": "dicom-series-worker"}
CHUNK_BYTES = 1024 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024  # a body read whole (search page, operation, metadata): more is refused


class Transport:
    """One server's pooled HTTP connections, the configured authentication and a retry rule (DICOMweb
    exchanges, and Cloud Storage's media downloads in worker.storage).

    urllib3 directly: requests' work around each exchange (preparing it, merging settings, cookies,
    hooks) costs as much CPU again as a 0.5 MB single-part GET itself on a fast network (0.36 against
    0.21 ms, one at a time), and a worker moving many instances is CPU-bound. urllib3 reads no proxy
    or .netrc from the environment; redirects are never followed (`open`)."""

    def __init__(self, pool: urllib3.PoolManager, opener: Any, headers: Mapping[str, str]) -> None:
        self._pool = pool
        self._opener = opener  # the pool, or google-auth's AuthorizedHttp over it
        self._headers = dict(headers)

    def open(
        self, method: str, url: str, body: Any, headers: Mapping[str, str], timeout: float
    ) -> urllib3.BaseHTTPResponse:
        """Send the request; the response's body streams (read it, then `close` it)."""
        response: urllib3.BaseHTTPResponse = self._opener.urlopen(
            method,
            url,
            body=body,
            headers={**self._headers, **headers},
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            redirect=False,
            preload_content=False,
        )
        return response

    def close(self) -> None:
        self._pool.clear()


def release(response: urllib3.BaseHTTPResponse) -> None:
    """Done with a response: a body read to its end already gave its connection back to the pool; one
    left part-read closes its connection, which is never reused."""
    response.close()
    response.release_conn()


def build_transport(settings: Settings, *, delete: bool = False) -> Transport:
    """A pooled transport with the retry rule of its kind of request, and the configured authentication."""
    pool = urllib3.PoolManager(
        num_pools=4,
        maxsize=settings.concurrency + 4,
        retries=retries.http(settings.retry_total, delete=delete),
    )
    headers = dict(DEFAULT_HEADERS)
    opener: Any = pool
    if settings.dicomweb_auth is Auth.GOOGLE:
        import google.auth
        from google.auth.transport.urllib3 import AuthorizedHttp

        credentials, _ = google.auth.default(scopes=HEALTHCARE_SCOPES)
        opener = AuthorizedHttp(credentials, http=pool)
    elif settings.dicomweb_auth is Auth.BASIC:
        basic = f"{settings.dicomweb_username or ''}:{settings.dicomweb_secret or ''}"
        headers.update(urllib3.make_headers(basic_auth=basic))
    elif settings.dicomweb_auth is Auth.BEARER:
        headers["Authorization"] = f"Bearer {settings.dicomweb_secret}"
    return Transport(pool, opener, headers)


class _Watchdog:
    """Ends HTTP exchanges that outlive their deadline.

    Timeouts bound each read, not the exchange: a server that trickles a byte a second holds a
    request forever, and the platform kills the delivery before its event. One thread keeps the
    deadlines and shuts down the socket of an exchange past its own, which ends the blocked read.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, _Guard]] = []
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def guard(self, response: urllib3.BaseHTTPResponse, deadline: float) -> Iterator[_Guard]:
        guard = _Guard(response)
        with self._lock:
            sooner = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, next(self._ids), guard))
            if self._thread is None:  # started on first use, never at import
                self._thread = threading.Thread(target=self._run, name="http-watchdog", daemon=True)
                self._thread.start()
            if sooner:  # else the thread wakes no later than it must (exchanges mostly share a deadline)
                self._lock.notify()
        try:
            yield guard
        finally:
            guard.done = True

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                wait = self._heap[0][0] - time.monotonic() if self._heap else None
                if wait is None or wait > 0:
                    self._lock.wait(wait)
                    continue
                _, _, guard = heapq.heappop(self._heap)
            guard.expire()


@dataclass(eq=False)
class _Guard:
    """One exchange under the watchdog; `expired` once its socket was shut down for the deadline."""

    response: urllib3.BaseHTTPResponse
    done: bool = False
    expired: bool = field(default=False)

    def expire(self) -> None:
        if self.done:
            return
        self.expired = True
        connection = getattr(self.response, "connection", None)
        sock = getattr(connection, "sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


_watchdog = _Watchdog()


class Exchanges:
    """Exchanges with one server over its two transports (reads, and deletes with their own retry rule)."""

    def __init__(self, transport: Transport, delete_transport: Transport, timeout: float) -> None:
        self._transport = transport
        self._delete_transport = delete_transport
        self._timeout = timeout

    @contextlib.contextmanager
    def request(
        self,
        method: str,
        url: str,
        *,
        delete: bool = False,
        not_supported: bool = False,
        deadline: float | None = None,
        answers: frozenset[int] = frozenset(),
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        data: bytes | str | SizedBody | None = None,
        json: Any = None,
    ) -> Iterator[urllib3.BaseHTTPResponse]:
        """One exchange (on the delete transport with `delete`), ended at `deadline` (time.monotonic; by
        default `timeout` from now) however slowly the server sends. The body streams: read it with
        `read_whole` or `body_chunks`. `not_supported`: 405 and 501 mean DELETE_NOT_SUPPORTED. `answers`:
        statuses the caller reads itself (STOW-RS's 409 carries which instances failed and why).
        `params` become the query string (a list value repeats its name); `json` is sent as JSON; `data`
        as it is, a SizedBody streamed with its Content-Length."""
        transport = self._delete_transport if delete else self._transport
        if deadline is None:
            deadline = time.monotonic() + self._timeout
        sent = dict(headers or {})
        body: bytes | SizedBody | None = data.encode() if isinstance(data, str) else data
        if json is not None:
            body = _json_bytes(json)
            sent["Content-Type"] = "application/json"
        if isinstance(body, SizedBody):
            sent["Content-Length"] = str(len(body))
        if params:
            url = f"{url}?{urlencode(params, doseq=True)}"
        try:
            response = transport.open(method, url, body, sent, self._timeout)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            cause = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) else error
            raise RetryableError(f"{method} to the DICOMweb server failed: {type(cause).__name__}") from None
        try:
            with _watchdog.guard(response, deadline) as guard:
                expired = RetryableError(f"{method} to the DICOMweb server outlived its deadline")
                try:
                    if response.status not in answers:
                        check_status(response, method, not_supported=not_supported)
                    yield response
                except RetryableError:
                    if guard.expired:
                        raise expired from None
                    raise
                if guard.expired:  # a body without a length ends where the socket was shut: not whole
                    raise expired
        finally:
            release(response)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def read_whole(response: urllib3.BaseHTTPResponse) -> bytes:
    """The whole body, at most MAX_BODY_BYTES: more is SOURCE_INVALID_RESPONSE, never a memory blow-up."""
    limit = MAX_BODY_BYTES
    pieces: list[bytes] = []
    size = 0
    for chunk in body_chunks(response):
        size += len(chunk)
        if size > limit:
            raise PermanentError(
                Code.SOURCE_INVALID_RESPONSE, f"a response body exceeds {limit} bytes; it was not read"
            )
        pieces.append(chunk)
    return b"".join(pieces)


def json_body(response: urllib3.BaseHTTPResponse, what: str, kind: type[_J]) -> _J:
    """The response's JSON body, of the expected kind."""
    return parse_json(read_whole(response), what, kind)


def parse_json(body: bytes, what: str, kind: type[_J]) -> _J:
    """JSON of the expected kind. Not JSON is a transient fault (a body cut short); JSON nested too deep
    or numbers too long to convert are SOURCE_INVALID_RESPONSE: no retry makes them readable."""
    try:
        parsed = json.loads(body)
    except RecursionError:
        raise PermanentError(Code.SOURCE_INVALID_RESPONSE, f"{what} is nested too deeply") from None
    except ValueError as error:
        if "digits" in str(error):  # int()'s limit on the length of a number
            raise PermanentError(Code.SOURCE_INVALID_RESPONSE, f"{what} holds a number too long") from None
        raise RetryableError(f"{what} is not JSON") from None
    if not isinstance(parsed, kind):
        raise RetryableError(f"{what} is not a JSON {'array' if kind is list else 'object'}")
    return parsed


def check_status(response: urllib3.BaseHTTPResponse, method: str, *, not_supported: bool = False) -> None:
    status = response.status
    if status < 300:
        return
    if status == 404:
        raise SourceGone()
    if status in retries.RETRY_STATUSES:
        raise RetryableError(f"{method} answered {status} after retries")
    if not_supported and status in (405, 501):
        raise PermanentError(
            Code.DELETE_NOT_SUPPORTED, f"the DICOMweb server does not support DELETE (it answered {status})"
        )
    raise PermanentError(Code.SOURCE_REFUSED, f"the DICOMweb server refused {method} with {status}")


def body_chunks(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The body as it arrives, in reads of at most CHUNK_BYTES, decoded only when the server sent a
    Content-Encoding (urllib3's decoding buffer costs half as much again per 0.5 MB instance); a body cut
    short (fewer bytes than its Content-Length, which urllib3 2 enforces) raises RetryableError. At the
    body's end urllib3 hands the connection back to the pool itself."""
    decode = response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
    try:
        while chunk := response.read(CHUNK_BYTES, decode_content=decode):
            yield chunk
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise RetryableError(f"the response broke off: {type(error).__name__}") from None


class SizedBody:
    """A request body of known length: `head`, exactly `size` bytes of `chunks`, then `tail`.

    Exchanges.request sends it with that Content-Length, chunk by chunk as it is read (never held
    whole). A stream of the wrong length raises before the tail: the request breaks off."""

    def __init__(self, head: bytes, chunks: Iterator[bytes], size: int, tail: bytes) -> None:
        self._head, self._chunks, self._size, self._tail = head, chunks, size, tail

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        sent = 0
        for chunk in self._chunks:
            sent += len(chunk)
            if sent > self._size:
                raise RetryableError(f"the instance holds more than its {self._size} bytes")
            if chunk:
                yield chunk
        if sent != self._size:
            raise RetryableError(f"the instance ended after {sent} of its {self._size} bytes")
        yield self._tail
