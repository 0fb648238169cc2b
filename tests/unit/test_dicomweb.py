"""The DICOMweb boundary against a tiny threaded HTTP server on 127.0.0.1, asserting on the requests sent."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import socket
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import google.auth
import google.auth.credentials
import pytest
import urllib3.util.retry

from tests.unit.fakes import DATASET, LOCATION, PROJECT, SERIES, SOP, STORE, STUDY
from worker.dicom_json import stow_outcome
from worker.dicomweb import DicomWebClient, accept_header
from worker.errors import Code, PermanentError, RetryableError, SourceGone
from worker.http_exchange import Transport, build_transport
from worker.models import DicomStore, Instance, Operation, SeriesRef, Stow
from worker.settings import Auth, Settings

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
DICOMWEB_SERIES = SeriesRef(None, STUDY, SERIES)
HEALTHCARE_SERIES = SeriesRef(DicomStore.parse(STORE), STUDY, SERIES)
OPERATION = f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/operations/42"
SERIES_URL_PATH = f"/dicom-web/studies/{STUDY}/series/{SERIES}"
ACCEPT_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


# -- the fake server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    delay: float = 0.0
    content_length: int | None = None  # announce more than is sent, then close: a transfer cut short
    trickle: float = 0.0  # send the body a byte at a time, this many seconds apart


Responder = Callable[[Seen], Reply]


class FakeServer:
    """Records every request; answers with `respond` (404 for everything by default)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.respond: Responder = lambda seen: Reply(404)
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in separate writes

            def _handle(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(
                    self.command,
                    url.path,
                    parse_qs(url.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with owner._lock:
                    owner.seen.append(seen)
                reply = owner.respond(seen)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.status != 204:
                    length = reply.content_length if reply.content_length is not None else len(reply.body)
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                if reply.trickle:
                    try:
                        for byte in reply.body:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(reply.trickle)
                    except OSError:  # the client ended the exchange at its deadline, as it should
                        self.close_connection = True
                else:
                    self.wfile.write(reply.body)
                if reply.content_length is not None:
                    self.close_connection = True

            do_GET = do_DELETE = do_POST = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def replies(self, *replies: Reply) -> None:
        """Answer with these replies in turn, repeating the last one."""
        queue = list(replies)

        def respond(seen: Seen) -> Reply:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        self.respond = respond


@pytest.fixture(autouse=True)
def backoff_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """urllib3's sleeps between retries, recorded instead of slept (the retry rule itself is unchanged)."""
    sleeps: list[float] = []
    fake_time = types.SimpleNamespace(time=time.time, sleep=sleeps.append)
    monkeypatch.setattr(urllib3.util.retry, "time", fake_time)
    return sleeps


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def other_server() -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.respond = lambda seen: Reply(200, b"[]")
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def connect(server: FakeServer) -> Iterator[Callable[..., DicomWebClient]]:
    """`connect(**settings)`: a client of the fake server with the real sessions (closed at teardown)."""
    transports: list[Transport] = []

    def make(**changes: Any) -> DicomWebClient:
        values: dict[str, Any] = {
            "dicomweb_url": f"{server.url}/dicom-web",
            "dicomweb_auth": Auth.NONE,
            "retry_total": 2,
            "http_timeout_seconds": 5.0,
            **changes,
        }
        settings = Settings(**values)
        transport, delete_transport = build_transport(settings), build_transport(settings, delete=True)
        transports.extend((transport, delete_transport))
        return DicomWebClient(settings, transport, delete_transport)

    yield make
    for transport in transports:
        transport.close()


@pytest.fixture
def client(connect: Callable[..., DicomWebClient]) -> DicomWebClient:
    return connect()


# -- QIDO helpers ---------------------------------------------------------------------------------


def uid_element(value: object) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]}


def qido(
    sop: object, *, number: object = None, study: object = STUDY, series: object = SERIES
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "0020000D": uid_element(study),
        "0020000E": uid_element(series),
        "00080018": uid_element(sop),
        "00080016": uid_element(CT_IMAGE),
    }
    if number is not None:
        item["00200013"] = {"vr": "IS", "Value": [number]}
    return item


def sops(count: int) -> list[str]:
    return [f"{SOP}.{n}" for n in range(1, count + 1)]


def json_reply(body: object) -> Reply:
    return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/dicom+json"})


def paged(items: list[dict[str, Any]], *, ignore_offset: bool = False) -> Responder:
    """A QIDO server over `items` that honours limit (and offset, unless told to ignore it)."""

    def respond(seen: Seen) -> Reply:
        limit = int(seen.query["limit"][0])
        offset = 0 if ignore_offset else int(seen.query["offset"][0])
        page = items[offset : offset + limit]
        return json_reply(page) if page else Reply(204)

    return respond


def multipart(*bodies: bytes, boundary: str = "dicom-b0undary") -> Reply:
    out = b""
    for body in bodies:
        out += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + body + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return Reply(200, out, {"Content-Type": content_type})


# -- search ---------------------------------------------------------------------------------------


def test_paging_sends_an_explicit_limit_and_increasing_offsets(
    server: FakeServer, client: DicomWebClient
) -> None:
    server.respond = paged([qido(sop, number=n) for n, sop in enumerate(sops(5), 1)])

    instances = client.search_instances(DICOMWEB_SERIES, page_size=2)

    assert [i.sop_uid for i in instances] == sops(5)
    assert [s.query["offset"] for s in server.seen] == [["0"], ["2"], ["4"], ["5"]]
    for seen in server.seen:
        assert seen.method == "GET"
        assert seen.path == f"{SERIES_URL_PATH}/instances"
        assert seen.query["limit"] == ["2"]
        assert seen.query["includefield"] == ["00080016", "00200013"]
        assert seen.headers["accept"] == "application/dicom+json"


def test_search_result_values(server: FakeServer, client: DicomWebClient) -> None:
    server.respond = paged([qido(f"{SOP}.1", number=7), qido(f"{SOP}.2", number="12"), qido(f"{SOP}.3")])

    instances = client.search_instances(DICOMWEB_SERIES, page_size=100)

    assert instances == [
        Instance(STUDY, SERIES, f"{SOP}.1", CT_IMAGE, 7),
        Instance(STUDY, SERIES, f"{SOP}.2", CT_IMAGE, 12),
        Instance(STUDY, SERIES, f"{SOP}.3", CT_IMAGE, None),
    ]


@pytest.mark.parametrize(
    "reply",
    [Reply(204), Reply(200, b"[]"), Reply(200, b""), Reply(200, b" \r\n")],
    ids=["204", "200-empty-array", "200-empty-body", "200-blank-body"],
)
def test_no_match_means_no_instances(server: FakeServer, client: DicomWebClient, reply: Reply) -> None:
    server.replies(reply)

    assert client.search_instances(DICOMWEB_SERIES, page_size=100) == []
    assert len(server.seen) == 1


@pytest.mark.parametrize(("count", "page_size"), [(12, 5), (10, 5), (5, 5), (1, 1), (7, 1)])
def test_a_series_larger_than_one_page_comes_back_whole(
    server: FakeServer, client: DicomWebClient, count: int, page_size: int
) -> None:
    server.respond = paged([qido(sop) for sop in sops(count)])

    instances = client.search_instances(DICOMWEB_SERIES, page_size=page_size)

    assert [i.sop_uid for i in instances] == sops(count)


def test_overlapping_pages_give_no_duplicates(server: FakeServer, client: DicomWebClient) -> None:
    items = [qido(sop) for sop in sops(6)]

    def respond(seen: Seen) -> Reply:
        offset = int(seen.query["offset"][0])
        page = items[max(0, offset - 1) : offset + 3]  # each page repeats the last of the one before
        return json_reply(page) if offset < len(items) else Reply(204)

    server.respond = respond

    instances = client.search_instances(DICOMWEB_SERIES, page_size=3)

    assert sorted(i.sop_uid for i in instances) == sorted(sops(6))


def test_server_ignoring_offset_with_a_full_page_is_search_incomplete(
    server: FakeServer, client: DicomWebClient
) -> None:
    server.respond = paged([qido(sop) for sop in sops(5)], ignore_offset=True)

    with pytest.raises(PermanentError) as error:
        client.search_instances(DICOMWEB_SERIES, page_size=2)

    assert error.value.code is Code.SEARCH_INCOMPLETE
    assert "ignores offset" in error.value.message
    assert len(server.seen) == 2


def test_server_ignoring_offset_with_a_short_page_is_incomplete(
    server: FakeServer, client: DicomWebClient
) -> None:
    """A short first page is not proof of the whole: a server that caps results (at 3 here, whatever the
    limit) and ignores offset sends the same page again, which must stop the search, not end it."""
    server.respond = paged([qido(sop) for sop in sops(3)], ignore_offset=True)

    with pytest.raises(PermanentError) as caught:
        client.search_instances(DICOMWEB_SERIES, page_size=10)

    assert caught.value.code is Code.SEARCH_INCOMPLETE
    assert len(server.seen) == 2


def test_a_capped_server_that_ignores_offset_is_incomplete(
    server: FakeServer, client: DicomWebClient
) -> None:
    """Issue 12, 3: at most 100 of 300 instances whatever the limit and offset: never a complete listing."""
    items = [qido(sop) for sop in sops(300)]

    def capped(seen: Any) -> Reply:
        return json_reply(items[:100])

    server.respond = capped

    with pytest.raises(PermanentError) as caught:
        client.search_instances(DICOMWEB_SERIES, page_size=5000)

    assert caught.value.code is Code.SEARCH_INCOMPLETE


def test_a_page_after_a_short_page_is_incomplete(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(json_reply([qido(f"{SOP}.1")]), json_reply([qido(f"{SOP}.2")]), Reply(204))

    with pytest.raises(PermanentError) as caught:
        client.search_instances(DICOMWEB_SERIES, page_size=10)

    assert caught.value.code is Code.SEARCH_INCOMPLETE


def test_results_of_another_series_are_skipped(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(
        json_reply(
            [
                qido(f"{SOP}.1"),
                qido(f"{SOP}.2", series=f"{SERIES}.9"),
                qido(f"{SOP}.3", study=f"{STUDY}.9"),
                qido(f"{SOP}.4", series=SERIES[:-1]),
                {"00080018": uid_element(f"{SOP}.5")},  # no study or series: taken to be of the searched one
            ]
        ),
        Reply(204),
    )

    instances = client.search_instances(DICOMWEB_SERIES, page_size=100)

    assert [i.sop_uid for i in instances] == [f"{SOP}.1", f"{SOP}.5"]


@pytest.mark.parametrize(
    "item",
    [
        qido("../../x"),
        qido(f"{SOP}/../../x"),
        qido(f"{SOP}?x=1"),
        qido(f"{SOP}%2F.."),
        qido(""),
        qido(None),
        qido(42),
        qido("1." + "2" * 70),
        {"00080018": {"vr": "UI"}},
        {"00080018": {"vr": "UI", "Value": []}},
        {"00080018": "1.2.3"},
        ["00080018", "1.2.3"],
        "1.2.3",
        None,
    ],
)
def test_an_instance_without_a_usable_sop_uid_stops_the_request(
    server: FakeServer, client: DicomWebClient, item: object
) -> None:
    """Skipping it would leave it out of the copy, and an archive would delete it uncopied."""
    server.replies(json_reply([qido(f"{SOP}.1"), item]), Reply(204))

    with pytest.raises(PermanentError) as raised:
        client.search_instances(DICOMWEB_SERIES, page_size=100)

    assert raised.value.code is Code.UNSUPPORTED_INSTANCE
    assert "without a valid SOP Instance UID" in raised.value.message


def test_an_unusable_instance_number_is_left_out(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(json_reply([qido(f"{SOP}.1", number="seven")]), Reply(204))

    instances = client.search_instances(DICOMWEB_SERIES, page_size=100)

    assert instances == [Instance(STUDY, SERIES, f"{SOP}.1", CT_IMAGE, None)]


def test_an_instance_number_out_of_range_is_ignored(server: FakeServer, client: DicomWebClient) -> None:
    """JSON allows 1e999 (Python reads it as infinity); the instance is still listed, without a number."""
    page = json.dumps([qido(f"{SOP}.1", number=0)]).replace('"Value": [0]', '"Value": [1e999]')
    server.replies(Reply(200, page.encode()), Reply(204))

    instances = client.search_instances(DICOMWEB_SERIES, page_size=100)

    assert instances == [Instance(STUDY, SERIES, f"{SOP}.1", CT_IMAGE, None)]


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"<html>busy</html>", "the search response is not JSON"), (b'{"a": 1}', "not a JSON array")],
)
def test_a_search_response_that_is_not_a_json_array_is_retryable(
    server: FakeServer, client: DicomWebClient, body: bytes, message: str
) -> None:
    server.replies(Reply(200, body))

    with pytest.raises(RetryableError, match=message):
        client.search_instances(DICOMWEB_SERIES, page_size=100)


def test_search_against_the_healthcare_api_root(
    server: FakeServer, connect: Callable[..., DicomWebClient]
) -> None:
    client = connect(dicomweb_url=None, healthcare_api_url=f"{server.url}/v1")
    server.replies(json_reply([qido(f"{SOP}.1")]), Reply(204))

    assert len(client.search_instances(HEALTHCARE_SERIES, page_size=10)) == 1
    assert server.seen[0].path == f"/v1/{STORE}/dicomWeb/studies/{STUDY}/series/{SERIES}/instances"


def test_a_healthcare_series_is_refused_by_a_dicomweb_url_worker(
    server: FakeServer, client: DicomWebClient
) -> None:
    with pytest.raises(PermanentError) as error:
        client.search_instances(HEALTHCARE_SERIES, page_size=10)

    assert error.value.code is Code.STORE_NOT_ALLOWED
    assert "give the series as studies/{study}/series/{series}" in error.value.message
    assert server.seen == []


def test_a_dicomweb_series_is_refused_by_a_healthcare_worker(
    server: FakeServer, connect: Callable[..., DicomWebClient]
) -> None:
    client = connect(dicomweb_url=None, healthcare_api_url=f"{server.url}/v1")

    with pytest.raises(PermanentError) as error:
        client.search_instances(DICOMWEB_SERIES, page_size=10)

    assert error.value.code is Code.INVALID_REQUEST
    assert "must name its DICOM store" in error.value.message
    assert server.seen == []


# -- retries and refusals -------------------------------------------------------------------------


def test_503_with_retry_after_then_200_succeeds(
    server: FakeServer, client: DicomWebClient, backoff_sleeps: list[float]
) -> None:
    server.replies(Reply(503, headers={"Retry-After": "3"}), json_reply([qido(f"{SOP}.1")]), Reply(204))

    instances = client.search_instances(DICOMWEB_SERIES, page_size=100)

    assert [i.sop_uid for i in instances] == [f"{SOP}.1"]
    assert [s.query["offset"] for s in server.seen] == [["0"], ["0"], ["1"]]
    assert backoff_sleeps == [3.0]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_status_forever_is_retryable(
    server: FakeServer, client: DicomWebClient, status: int
) -> None:
    server.replies(Reply(status, headers={"Retry-After": "0"}))

    with pytest.raises(RetryableError) as error:
        client.search_instances(DICOMWEB_SERIES, page_size=100)

    assert str(error.value) == f"GET answered {status} after retries"
    assert len(server.seen) == 3  # the request and retry_total=2 retries


def test_retries_back_off(
    server: FakeServer, connect: Callable[..., DicomWebClient], backoff_sleeps: list[float]
) -> None:
    server.replies(Reply(503))

    with pytest.raises(RetryableError):
        connect(retry_total=4).search_instances(DICOMWEB_SERIES, page_size=100)

    assert len(server.seen) == 5
    assert len(backoff_sleeps) >= 3  # the first retry may go at once; the later ones wait
    assert all(later > earlier for earlier, later in itertools.pairwise(backoff_sleeps))
    assert max(backoff_sleeps) <= 20


@pytest.mark.parametrize("status", [400, 401, 403, 406, 409, 410, 302])
def test_refusals_are_permanent_and_not_retried(
    server: FakeServer, client: DicomWebClient, status: int
) -> None:
    server.replies(Reply(status))

    with pytest.raises(PermanentError) as error:
        client.search_instances(DICOMWEB_SERIES, page_size=100)

    assert error.value.code is Code.SOURCE_REFUSED
    assert error.value.message == f"the DICOMweb server refused GET with {status}"
    assert len(server.seen) == 1


def test_404_is_source_gone(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(Reply(404))

    with pytest.raises(SourceGone):
        client.search_instances(DICOMWEB_SERIES, page_size=100)
    assert len(server.seen) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(
    server: FakeServer, other_server: FakeServer, client: DicomWebClient, status: int
) -> None:
    server.replies(Reply(status, headers={"Location": f"{other_server.url}/dicom-web/studies"}))

    with pytest.raises(PermanentError) as error:
        client.search_instances(DICOMWEB_SERIES, page_size=100)

    assert error.value.code is Code.SOURCE_REFUSED
    assert other_server.seen == []
    assert len(server.seen) == 1


def test_a_delete_redirect_is_not_followed(
    server: FakeServer, other_server: FakeServer, client: DicomWebClient
) -> None:
    server.replies(Reply(307, headers={"Location": f"{other_server.url}/dicom-web/studies/1/series/2"}))

    with pytest.raises(PermanentError):
        client.delete_series(DICOMWEB_SERIES)

    assert other_server.seen == []


def test_connection_refused_is_retryable(connect: Callable[..., DicomWebClient]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = connect(dicomweb_url=f"http://127.0.0.1:{port}/dicom-web", retry_total=0)

    with pytest.raises(RetryableError, match="GET to the DICOMweb server failed: NewConnectionError"):
        client.search_instances(DICOMWEB_SERIES, page_size=100)


def test_a_timeout_is_retryable(server: FakeServer, connect: Callable[..., DicomWebClient]) -> None:
    client = connect(http_timeout_seconds=0.2, retry_total=0)
    server.replies(Reply(200, b"[]", delay=1.0))

    with pytest.raises(RetryableError, match="GET to the DICOMweb server failed"):
        client.search_instances(DICOMWEB_SERIES, page_size=100)


def test_a_dropped_search_is_retried(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(Reply(drop=True), Reply(204))

    assert client.search_instances(DICOMWEB_SERIES, page_size=100) == []
    assert len(server.seen) == 2


def test_proxy_variables_of_the_environment_are_ignored(
    server: FakeServer, connect: Callable[..., DicomWebClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    client = connect(retry_total=0)
    server.replies(Reply(204))

    assert client.search_instances(DICOMWEB_SERIES, page_size=100) == []
    assert len(server.seen) == 1


# -- authentication -------------------------------------------------------------------------------


def test_no_authentication_header_with_auth_none(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(Reply(204))

    client.search_instances(DICOMWEB_SERIES, page_size=100)

    assert "authorization" not in server.seen[0].headers


def test_basic_authentication(server: FakeServer, connect: Callable[..., DicomWebClient]) -> None:
    client = connect(dicomweb_auth=Auth.BASIC, dicomweb_username="orthanc", dicomweb_secret="pa:ss")
    server.replies(Reply(204))

    client.search_instances(DICOMWEB_SERIES, page_size=100)

    expected = "Basic " + base64.b64encode(b"orthanc:pa:ss").decode()
    assert server.seen[0].headers["authorization"] == expected


def test_bearer_authentication_on_every_kind_of_request(
    server: FakeServer, connect: Callable[..., DicomWebClient]
) -> None:
    client = connect(dicomweb_auth=Auth.BEARER, dicomweb_secret="tok-123")
    server.replies(Reply(204))

    client.search_instances(DICOMWEB_SERIES, page_size=100)
    client.delete_series(DICOMWEB_SERIES)

    assert [s.headers["authorization"] for s in server.seen] == ["Bearer tok-123", "Bearer tok-123"]


class RefreshingCredentials(google.auth.credentials.Credentials):
    """Application Default Credentials that hold token-1, then token-2 once refreshed."""

    def __init__(self) -> None:
        super().__init__()
        self.token = "token-1"
        self.refreshes = 0

    def refresh(self, request: object) -> None:
        self.refreshes += 1
        self.token = f"token-{self.refreshes + 1}"


def test_google_authentication_sends_the_access_token_and_refreshes_it_when_refused(
    server: FakeServer, connect: Callable[..., DicomWebClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = RefreshingCredentials()
    monkeypatch.setattr(google.auth, "default", lambda scopes=None: (credentials, "a-project"))
    client = connect(dicomweb_auth=Auth.GOOGLE, dicomweb_url=None, healthcare_api_url=f"{server.url}/v1")
    server.replies(Reply(401), Reply(204))

    assert client.search_instances(HEALTHCARE_SERIES, page_size=100) == []

    assert [s.headers["authorization"] for s in server.seen] == ["Bearer token-1", "Bearer token-2"]
    assert credentials.refreshes == 1


# -- retrieve -------------------------------------------------------------------------------------


def test_accept_header_quotes_only_the_type() -> None:
    assert accept_header("*") == ACCEPT_STORED
    assert accept_header("1.2.840.10008.1.2.1") == (
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
    )


def test_retrieve_series_streams_every_part_byte_exact(server: FakeServer, client: DicomWebClient) -> None:
    bodies = [b"\x00" * 128 + b"DICM" + bytes(range(256)) * 40, b"second\r\n--not-a-boundary\r\n", b""]
    server.replies(multipart(*bodies))

    with client.retrieve_series(DICOMWEB_SERIES, "*") as parts:
        received = [b"".join(part.iter_chunks()) for part in parts]

    assert received == bodies
    (seen,) = server.seen
    assert seen.method == "GET"
    assert seen.path == SERIES_URL_PATH
    assert seen.query == {}
    assert seen.headers["accept"] == ACCEPT_STORED


def test_retrieve_instance(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(multipart(b"the instance"))

    with client.retrieve_instance(DICOMWEB_SERIES, SOP, "*") as part:
        assert b"".join(part.iter_chunks()) == b"the instance"

    (seen,) = server.seen
    assert seen.path == f"{SERIES_URL_PATH}/instances/{SOP}"
    assert seen.headers["accept"] == ACCEPT_STORED


def test_retrieve_with_a_transfer_syntax(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(multipart(b"x"))

    with client.retrieve_instance(DICOMWEB_SERIES, SOP, "1.2.840.10008.1.2.1") as part:
        b"".join(part.iter_chunks())

    assert server.seen[0].headers["accept"] == accept_header("1.2.840.10008.1.2.1")


def test_retrieve_of_an_absent_instance_is_source_gone(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(Reply(404))

    with pytest.raises(SourceGone), client.retrieve_instance(DICOMWEB_SERIES, SOP, "*"):
        pass


def test_retrieve_503_then_200_is_retried(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(Reply(503, headers={"Retry-After": "0"}), multipart(b"body"))

    with client.retrieve_instance(DICOMWEB_SERIES, SOP, "*") as part:
        assert b"".join(part.iter_chunks()) == b"body"
    assert len(server.seen) == 2


def test_retrieve_of_a_response_that_is_not_multipart(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(Reply(200, b"DICM", {"Content-Type": "application/dicom"}))

    with (
        pytest.raises(RetryableError, match="the retrieve response is not multipart/related"),
        client.retrieve_series(DICOMWEB_SERIES, "*"),
    ):
        pass


def test_a_retrieve_cut_between_parts_is_retryable(server: FakeServer, client: DicomWebClient) -> None:
    whole = multipart(b"first", b"second")
    server.replies(Reply(200, whole.body[: whole.body.index(b"second") - 8], whole.headers))

    with (
        pytest.raises(RetryableError, match="the retrieve response broke off: MultipartTruncatedError"),
        client.retrieve_series(DICOMWEB_SERIES, "*") as parts,
    ):
        for part in parts:
            b"".join(part.iter_chunks())


def test_a_retrieve_cut_inside_a_part_is_retryable(server: FakeServer, client: DicomWebClient) -> None:
    """Where a large transfer usually breaks: reading the part, not asking for the next one."""
    whole = multipart(b"first", b"second" * 1000)
    server.replies(Reply(200, whole.body[: whole.body.index(b"second") + 3000], whole.headers))

    with (
        pytest.raises(RetryableError, match="broke off"),
        client.retrieve_series(DICOMWEB_SERIES, "*") as parts,
    ):
        for part in parts:
            b"".join(part.iter_chunks())


def test_a_connection_dropped_inside_an_instance_is_retryable(
    server: FakeServer, client: DicomWebClient
) -> None:
    """The first megabyte arrives (the part starts), then the connection drops while the part is read."""
    whole = multipart(b"x" * (3 * 1024 * 1024))
    server.replies(Reply(200, whole.body[: 2 * 1024 * 1024], whole.headers, content_length=len(whole.body)))

    with (
        pytest.raises(RetryableError, match="broke off"),
        client.retrieve_instance(DICOMWEB_SERIES, SOP, "*") as part,
    ):
        b"".join(part.iter_chunks())


def test_an_instance_response_with_no_part_is_retryable(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(multipart())

    with (
        pytest.raises(RetryableError, match="the instance response held no part"),
        client.retrieve_instance(DICOMWEB_SERIES, SOP, "*"),
    ):
        pass


def test_an_instance_response_with_two_parts_is_retryable(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(multipart(b"one", b"two"))

    with (
        pytest.raises(RetryableError, match="the instance response held more than one part"),
        client.retrieve_instance(DICOMWEB_SERIES, SOP, "*") as part,
    ):
        b"".join(part.iter_chunks())


def single_part(body: bytes) -> Reply:
    return Reply(200, body, {"Content-Type": "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50"})


def test_the_healthcare_api_sends_an_instance_as_stored_in_a_single_part(
    server: FakeServer, healthcare: DicomWebClient
) -> None:
    server.replies(single_part(b"the instance"))

    with healthcare.retrieve_instance(HEALTHCARE_SERIES, SOP, "*") as part:
        assert b"".join(part.iter_chunks()) == b"the instance"
        assert part.headers["content-type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50"
        assert part.headers["content-length"] == "12"

    (seen,) = server.seen
    assert seen.path == f"/v1/{STORE}/dicomWeb/studies/{STUDY}/series/{SERIES}/instances/{SOP}"
    assert seen.headers["accept"] == "application/dicom; transfer-syntax=*"


def test_a_compressed_body_is_decoded(server: FakeServer, client: DicomWebClient) -> None:
    """A server may gzip what it sends (requests asks for gzip): the bytes read are the decoded ones."""
    body = json.dumps([qido(sop) for sop in sops(3)]).encode()
    server.replies(
        Reply(
            200, gzip.compress(body), {"Content-Type": "application/dicom+json", "Content-Encoding": "gzip"}
        ),
        json_reply([]),
    )

    found = client.search_instances(DICOMWEB_SERIES, page_size=10)

    assert [instance.sop_uid for instance in found] == sops(3)


def test_a_transcoded_instance_from_the_healthcare_api_is_still_multipart(
    server: FakeServer, healthcare: DicomWebClient
) -> None:
    """Only the bytes as stored have the single-part form (the reference: RetrieveInstance, `*`)."""
    server.replies(multipart(b"x"))

    with healthcare.retrieve_instance(HEALTHCARE_SERIES, SOP, "1.2.840.10008.1.2.1") as part:
        assert b"".join(part.iter_chunks()) == b"x"

    assert server.seen[0].headers["accept"] == accept_header("1.2.840.10008.1.2.1")


def test_a_single_part_instance_cut_short_is_retryable(
    server: FakeServer, healthcare: DicomWebClient
) -> None:
    reply = single_part(b"x" * (3 * 1024 * 1024))
    server.replies(Reply(200, reply.body[: 2 * 1024 * 1024], reply.headers, content_length=len(reply.body)))

    with (
        pytest.raises(RetryableError, match="broke off"),
        healthcare.retrieve_instance(HEALTHCARE_SERIES, SOP, "*") as part,
    ):
        b"".join(part.iter_chunks())


def test_a_single_part_answer_of_another_type_is_retryable(
    server: FakeServer, healthcare: DicomWebClient
) -> None:
    server.replies(multipart(b"x"))

    with (
        pytest.raises(RetryableError, match="not application/dicom"),
        healthcare.retrieve_instance(HEALTHCARE_SERIES, SOP, "*"),
    ):
        pass


def test_metadata_is_returned_as_sent_once_it_parses(server: FakeServer, client: DicomWebClient) -> None:
    body = json.dumps([qido(sop) for sop in sops(50)]).encode()
    server.replies(json_reply(json.loads(body)))

    assert client.metadata(DICOMWEB_SERIES) == body
    assert server.seen[0].path == f"{SERIES_URL_PATH}/metadata"
    assert server.seen[0].headers["accept"] == "application/dicom+json"


# -- delete ---------------------------------------------------------------------------------------


@pytest.fixture
def healthcare(server: FakeServer, connect: Callable[..., DicomWebClient]) -> DicomWebClient:
    return connect(dicomweb_url=None, healthcare_api_url=f"{server.url}/v1")


def test_delete_returns_the_operation(server: FakeServer, healthcare: DicomWebClient) -> None:
    server.replies(json_reply({"name": OPERATION, "metadata": {"apiMethodName": "DeleteSeries"}}))

    assert healthcare.delete_series(HEALTHCARE_SERIES) == Operation(OPERATION, False, None)
    (seen,) = server.seen
    assert seen.method == "DELETE"
    assert seen.path == f"/v1/{STORE}/dicomWeb/studies/{STUDY}/series/{SERIES}"


def test_a_generic_servers_delete_answer_is_never_polled(server: FakeServer, client: DicomWebClient) -> None:
    """Issue 12, 5: a DICOMWEB_URL server's answer naming an "operation" is not taken for one: polling it
    would send the DICOMweb credentials to the Healthcare API's host."""
    server.replies(json_reply({"name": OPERATION}))

    assert client.delete_series(DICOMWEB_SERIES) is None
    with pytest.raises(PermanentError) as caught:
        client.get_operation(OPERATION, DicomStore.parse(STORE))
    assert caught.value.code is Code.INVALID_REQUEST
    assert len(server.seen) == 1


@pytest.mark.parametrize(
    "name",
    [
        f"projects/{PROJECT}/locations/{LOCATION}/datasets/other/operations/42",
        f"{OPERATION}/../../../secrets",
        "https://attacker.example/operations/1",
    ],
)
def test_an_operation_of_another_dataset_is_not_polled(
    server: FakeServer, healthcare: DicomWebClient, name: str
) -> None:
    server.replies(json_reply({"name": name}))

    with pytest.raises(PermanentError) as caught:
        healthcare.delete_series(HEALTHCARE_SERIES)
    assert caught.value.code is Code.SOURCE_INVALID_RESPONSE
    with pytest.raises(PermanentError):
        healthcare.get_operation(name, DicomStore.parse(STORE))
    assert len(server.seen) == 1


def test_delete_instance(server: FakeServer, healthcare: DicomWebClient) -> None:
    server.replies(json_reply({}), Reply(404))

    assert healthcare.delete_instance(HEALTHCARE_SERIES, SOP) is True
    assert healthcare.delete_instance(HEALTHCARE_SERIES, SOP) is False
    assert [(s.method, s.path) for s in server.seen] == [
        ("DELETE", f"/v1/{STORE}/dicomWeb/studies/{STUDY}/series/{SERIES}/instances/{SOP}")
    ] * 2


@pytest.mark.parametrize("reply", [Reply(200), Reply(204), Reply(200, b"{}"), Reply(202, b"[]")])
def test_a_synchronous_delete_returns_none(server: FakeServer, client: DicomWebClient, reply: Reply) -> None:
    server.replies(reply)

    assert client.delete_series(DICOMWEB_SERIES) is None


def test_delete_of_an_absent_series_is_source_gone(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(Reply(404))

    with pytest.raises(SourceGone):
        client.delete_series(DICOMWEB_SERIES)


@pytest.mark.parametrize("status", [405, 501])
def test_delete_not_supported(server: FakeServer, client: DicomWebClient, status: int) -> None:
    server.replies(Reply(status))

    with pytest.raises(PermanentError) as error:
        client.delete_series(DICOMWEB_SERIES)

    assert error.value.code is Code.DELETE_NOT_SUPPORTED
    assert error.value.message == f"the DICOMweb server does not support DELETE (it answered {status})"
    assert len(server.seen) == 1


@pytest.mark.parametrize("status", [400, 403, 409])
def test_delete_refused(server: FakeServer, client: DicomWebClient, status: int) -> None:
    server.replies(Reply(status))

    with pytest.raises(PermanentError) as error:
        client.delete_series(DICOMWEB_SERIES)

    assert error.value.code is Code.SOURCE_REFUSED
    assert error.value.message == f"the DICOMweb server refused DELETE with {status}"


@pytest.mark.parametrize("status", [429, 503])
def test_delete_refused_outright_is_retried(
    server: FakeServer, healthcare: DicomWebClient, status: int
) -> None:
    server.replies(Reply(status, headers={"Retry-After": "0"}), json_reply({"name": OPERATION}))

    assert healthcare.delete_series(HEALTHCARE_SERIES) == Operation(OPERATION, False, None)
    assert [s.method for s in server.seen] == ["DELETE", "DELETE"]


@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_delete_that_may_have_started_is_not_retried(
    server: FakeServer, client: DicomWebClient, status: int
) -> None:
    server.replies(Reply(status), json_reply({"name": OPERATION}))

    with pytest.raises(RetryableError, match=f"DELETE answered {status}"):
        client.delete_series(DICOMWEB_SERIES)

    assert [s.method for s in server.seen] == ["DELETE"]


def test_dropped_delete_is_not_retried(server: FakeServer, client: DicomWebClient) -> None:
    server.replies(Reply(drop=True), json_reply({"name": OPERATION}))

    with pytest.raises(RetryableError, match="DELETE to the DICOMweb server failed"):
        client.delete_series(DICOMWEB_SERIES)

    assert [s.method for s in server.seen] == ["DELETE"]


def test_delete_answer_that_is_not_json_is_retryable(server: FakeServer, healthcare: DicomWebClient) -> None:
    server.replies(Reply(200, b"<html>ok</html>"))

    with pytest.raises(RetryableError, match="the delete response is not JSON"):
        healthcare.delete_series(HEALTHCARE_SERIES)


# -- operations -----------------------------------------------------------------------------------


def test_get_operation(server: FakeServer, connect: Callable[..., DicomWebClient]) -> None:
    client = connect(dicomweb_url=None, healthcare_api_url=f"{server.url}/v1")
    error = {"code": 5, "message": "not found"}
    server.replies(json_reply({"name": OPERATION, "done": True, "error": error}))

    assert client.get_operation(OPERATION, DicomStore.parse(STORE)) == Operation(OPERATION, True, error)
    assert server.seen[0].path == f"/v1/{OPERATION}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"oops", "the operation response is not JSON"),
        (b'{"done": true}', "the operation response has no name"),
    ],
)
def test_malformed_operation_is_retryable(
    server: FakeServer, connect: Callable[..., DicomWebClient], body: bytes, message: str
) -> None:
    client = connect(dicomweb_url=None, healthcare_api_url=f"{server.url}/v1")
    server.replies(Reply(200, body))

    with pytest.raises(RetryableError, match=message):
        client.get_operation(OPERATION, DicomStore.parse(STORE))


# -- bounds on what a server can make the worker do -----------------------------------------------


def test_a_trickling_server_cannot_hold_an_exchange_past_its_deadline(
    server: FakeServer, connect: Callable[..., DicomWebClient]
) -> None:
    """Issue 12, 8: every read comes within the read timeout, but the exchange as a whole ends at
    HTTP_TIMEOUT_SECONDS, so the last delivery still has time for its event."""
    client = connect(http_timeout_seconds=1.0)
    server.replies(Reply(200, json.dumps([qido(sop) for sop in sops(3)]).encode(), trickle=0.2))
    started = time.monotonic()

    with pytest.raises(RetryableError, match="outlived its deadline"):
        client.search_instances(DICOMWEB_SERIES, page_size=10)

    assert time.monotonic() - started < 5.0  # the body alone would take about 150 s


def test_a_retrieve_ends_at_its_deadline(server: FakeServer, client: DicomWebClient) -> None:
    whole = multipart(b"x" * 200)
    server.replies(Reply(200, whole.body, headers=whole.headers, trickle=0.05))
    started = time.monotonic()

    with (
        pytest.raises(RetryableError, match="outlived its deadline"),
        client.retrieve_instance(DICOMWEB_SERIES, SOP, "*", deadline=time.monotonic() + 1.0) as part,
    ):
        b"".join(part.iter_chunks())

    assert time.monotonic() - started < 5.0


def test_an_exchange_with_a_sooner_deadline_ends_at_it_while_a_later_one_runs(
    server: FakeServer, client: DicomWebClient
) -> None:
    """The watchdog wakes for a deadline sooner than every one it holds, not only for the first."""
    slow = multipart(b"x" * 60)
    server.replies(*[Reply(200, slow.body, headers=slow.headers, trickle=0.05)] * 2)
    outcome: list[BaseException] = []

    def far() -> None:
        try:
            with client.retrieve_instance(DICOMWEB_SERIES, SOP, "*", deadline=time.monotonic() + 60) as part:
                b"".join(part.iter_chunks())
        except BaseException as error:
            outcome.append(error)

    first = threading.Thread(target=far)
    first.start()
    time.sleep(0.3)
    started = time.monotonic()

    with (
        pytest.raises(RetryableError, match="outlived its deadline"),
        client.retrieve_instance(DICOMWEB_SERIES, SOP, "*", deadline=time.monotonic() + 1.0) as part,
    ):
        b"".join(part.iter_chunks())

    assert time.monotonic() - started < 2.5  # the body alone takes about 6 s
    first.join()
    assert outcome == []  # the far deadline did not end the first exchange


def test_a_body_read_whole_has_a_size_cap(
    server: FakeServer, client: DicomWebClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.http_exchange.MAX_BODY_BYTES", 1000)
    server.replies(json_reply([qido(sop) for sop in sops(40)]))

    with pytest.raises(PermanentError) as caught:
        client.search_instances(DICOMWEB_SERIES, page_size=100)

    assert caught.value.code is Code.SOURCE_INVALID_RESPONSE


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'[{"00200013": {"vr": "IS", "Value": [' + b"9" * 5000 + b"]}}]"],
    ids=["deep", "long-number"],
)
def test_deep_json_and_oversize_numbers_are_permanent(
    server: FakeServer, client: DicomWebClient, body: bytes
) -> None:
    """Issue 12, 9: not "unexpected" errors retried to exhaustion, but a clear code at once."""
    server.replies(Reply(200, body, headers={"Content-Type": "application/dicom+json"}))

    with pytest.raises(PermanentError) as caught:
        client.search_instances(DICOMWEB_SERIES, page_size=100)

    assert caught.value.code is Code.SOURCE_INVALID_RESPONSE


# -- store (STOW-RS) ------------------------------------------------------------------------------

INSTANCE = b"DICM" + bytes(range(256)) * 40


def stow_answer(status: int, *, stored: tuple[str, ...] = (), failed: dict[str, int] | None = None) -> Reply:
    body: dict[str, Any] = {}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": [{"00081155": uid_element(uid)} for uid in stored]}
    if failed:
        body["00081198"] = {
            "vr": "SQ",
            "Value": [
                {"00081155": uid_element(uid), "00081197": {"vr": "US", "Value": [reason]}}
                for uid, reason in failed.items()
            ],
        }
    return Reply(status, json.dumps(body).encode(), {"Content-Type": "application/dicom+json"})


def chunks_of(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_store_instance_posts_one_part_with_its_length(server: FakeServer, client: DicomWebClient) -> None:
    server.respond = lambda seen: stow_answer(200, stored=(SOP,))

    outcome = client.store_instance(DICOMWEB_SERIES, SOP, chunks_of(INSTANCE), len(INSTANCE))

    assert outcome is Stow.STORED
    (seen,) = server.seen
    assert (seen.method, seen.path) == ("POST", "/dicom-web/studies")
    content_type = seen.headers["content-type"]
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
    boundary = content_type.rsplit("boundary=", 1)[1]
    assert seen.body == (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + INSTANCE
        + f"\r\n--{boundary}--\r\n".encode()
    )
    assert seen.headers["content-length"] == str(len(seen.body))
    assert "transfer-encoding" not in seen.headers
    assert seen.headers["accept"] == "application/dicom+json"


def test_store_instance_on_the_healthcare_api_posts_to_the_stores_root(
    server: FakeServer, healthcare: DicomWebClient
) -> None:
    server.respond = lambda seen: stow_answer(200, stored=(SOP,))

    healthcare.store_instance(HEALTHCARE_SERIES, SOP, chunks_of(INSTANCE), len(INSTANCE))

    assert server.seen[0].path == f"/v1/{STORE}/dicomWeb/studies"


def test_an_instance_the_server_holds_already_is_present(
    server: FakeServer, healthcare: DicomWebClient
) -> None:
    server.respond = lambda seen: stow_answer(409, failed={SOP: 0x0111})

    assert (
        healthcare.store_instance(HEALTHCARE_SERIES, SOP, chunks_of(INSTANCE), len(INSTANCE)) is Stow.PRESENT
    )


def test_a_409_while_the_series_is_deleted_is_transient_on_the_healthcare_api(
    server: FakeServer, healthcare: DicomWebClient
) -> None:
    server.respond = lambda seen: stow_answer(409, failed={SOP: 0x0110})

    with pytest.raises(RetryableError, match="being deleted"):
        healthcare.store_instance(HEALTHCARE_SERIES, SOP, chunks_of(INSTANCE), len(INSTANCE))


@pytest.mark.parametrize(
    ("status", "reason"), [(409, 0xA900), (409, None), (400, None), (403, None), (200, 0xC000)]
)
def test_a_refused_instance_is_source_refused(
    server: FakeServer, client: DicomWebClient, status: int, reason: int | None
) -> None:
    failed = {SOP: reason} if reason is not None else None
    server.respond = lambda seen: stow_answer(status, failed=failed)

    with pytest.raises(PermanentError) as error:
        client.store_instance(DICOMWEB_SERIES, SOP, chunks_of(INSTANCE), len(INSTANCE))

    assert error.value.code is Code.SOURCE_REFUSED


def test_a_503_to_stow_is_retryable(server: FakeServer, client: DicomWebClient) -> None:
    server.respond = lambda seen: Reply(503)

    with pytest.raises(RetryableError):
        client.store_instance(DICOMWEB_SERIES, SOP, chunks_of(INSTANCE), len(INSTANCE))
    assert len(server.seen) == 1  # a POST is never re-sent by the session: its stream is spent


def test_a_404_to_stow_is_source_gone(server: FakeServer, client: DicomWebClient) -> None:
    with pytest.raises(SourceGone):
        client.store_instance(DICOMWEB_SERIES, SOP, chunks_of(INSTANCE), len(INSTANCE))


@pytest.mark.parametrize("announced", [len(INSTANCE) + 1, len(INSTANCE) - 1])
def test_a_stream_of_the_wrong_length_breaks_the_request_off(
    server: FakeServer, client: DicomWebClient, announced: int
) -> None:
    server.respond = lambda seen: stow_answer(200, stored=(SOP,))

    with pytest.raises(RetryableError, match="bytes"):
        client.store_instance(DICOMWEB_SERIES, SOP, chunks_of(INSTANCE), announced)
    assert all(seen.body.endswith(b"--\r\n") is False for seen in server.seen)


def test_an_answer_naming_only_other_instances_is_invalid() -> None:
    with pytest.raises(PermanentError) as error:
        stow_outcome(
            200,
            json.dumps({"00081199": {"vr": "SQ", "Value": [{"00081155": uid_element("1.2")}]}}).encode(),
            SOP,
            healthcare=False,
        )

    assert error.value.code is Code.SOURCE_INVALID_RESPONSE


@pytest.mark.parametrize("answer", [b"", b"not json", b"[]"])
def test_a_200_without_a_list_counts_as_stored_for_the_read_back_to_check(answer: bytes) -> None:
    assert stow_outcome(200, answer, SOP, healthcare=True) is Stow.STORED


def test_a_healthcare_409_without_a_reason_is_transient() -> None:
    with pytest.raises(RetryableError):
        stow_outcome(409, b"{}", SOP, healthcare=True)


def test_a_failure_without_a_uid_is_taken_as_this_instances() -> None:
    answer = {"00081198": {"vr": "SQ", "Value": [{"00081197": {"vr": "US", "Value": [0x0111]}}]}}

    assert stow_outcome(409, json.dumps(answer).encode(), SOP, healthcare=False) is Stow.PRESENT


# -- storage classes inside a store (tier) ---------------------------------------------------------


def test_set_blob_storage_class_sends_the_class_and_the_filter(
    server: FakeServer, healthcare: DicomWebClient
) -> None:
    server.replies(json_reply({"name": OPERATION}))

    operation = healthcare.set_blob_storage_class(
        DicomStore.parse(STORE), "ARCHIVE", "gs://b/p/tier-ARCHIVE.txt"
    )

    assert operation == Operation(OPERATION, False, None)
    (seen,) = server.seen
    assert (seen.method, seen.path) == ("POST", f"/v1/{STORE}:setBlobStorageSettings")
    assert json.loads(seen.body) == {
        "blobStorageSettings": {"blobStorageClass": "ARCHIVE"},
        "filterConfig": {"resourcePathsGcsUri": "gs://b/p/tier-ARCHIVE.txt"},
    }


def test_set_blob_storage_class_refuses_an_operation_of_another_dataset(
    server: FakeServer, healthcare: DicomWebClient
) -> None:
    server.replies(
        json_reply({"name": f"projects/{PROJECT}/locations/{LOCATION}/datasets/other/operations/1"})
    )

    with pytest.raises(PermanentError) as caught:
        healthcare.set_blob_storage_class(DicomStore.parse(STORE), "ARCHIVE", "gs://b/f.txt")
    assert caught.value.code is Code.SOURCE_INVALID_RESPONSE


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"blobStorageInfo": {"storageClass": "COLDLINE", "sizeBytes": "12"}}, "COLDLINE"),
        ({"blobStorageInfo": {}}, None),
        ({"blobStorageInfo": "ARCHIVE"}, None),
        ({}, None),
    ],
)
def test_instance_storage_class_reads_get_storage_info(
    server: FakeServer, healthcare: DicomWebClient, body: dict[str, Any], expected: str | None
) -> None:
    server.replies(json_reply(body))

    assert healthcare.instance_storage_class(HEALTHCARE_SERIES, SOP) == expected
    assert server.seen[0].path == (
        f"/v1/{STORE}/dicomWeb/studies/{STUDY}/series/{SERIES}/instances/{SOP}:getStorageInfo"
    )


def test_instance_storage_class_of_a_missing_instance_is_source_gone(
    server: FakeServer, healthcare: DicomWebClient
) -> None:
    server.replies(Reply(404))

    with pytest.raises(SourceGone):
        healthcare.instance_storage_class(HEALTHCARE_SERIES, SOP)


def test_instance_storage_class_refuses_a_bad_uid(server: FakeServer, healthcare: DicomWebClient) -> None:
    with pytest.raises(PermanentError) as caught:
        healthcare.instance_storage_class(HEALTHCARE_SERIES, "1.2/../x")
    assert caught.value.code is Code.INVALID_REQUEST
    assert server.seen == []


def test_storage_classes_are_not_a_dicomweb_servers(server: FakeServer, client: DicomWebClient) -> None:
    for call in (
        lambda: client.set_blob_storage_class(DicomStore.parse(STORE), "ARCHIVE", "gs://b/f.txt"),
        lambda: client.instance_storage_class(DICOMWEB_SERIES, SOP),
    ):
        with pytest.raises(PermanentError) as caught:
            call()
        assert caught.value.code is Code.TIER_NOT_SUPPORTED
    assert server.seen == []


# -- one page of a store's series search (worker/enumeration.py pages and partitions) ----------------


def test_a_series_search_page_sends_the_filters_limit_and_offset(
    server: FakeServer, client: DicomWebClient
) -> None:
    items = [qido(f"{SOP}.{n}", series=f"{SERIES}.{n}") for n in range(1, 4)]
    server.respond = paged(items)

    found = client.search_series_page(None, {"Modality": "CT", "StudyDate": '""'}, 2, 1)

    assert found == [SeriesRef(None, STUDY, f"{SERIES}.2"), SeriesRef(None, STUDY, f"{SERIES}.3")]
    (seen,) = server.seen
    assert seen.path == "/dicom-web/series"
    assert seen.query == {"Modality": ["CT"], "StudyDate": ['""'], "limit": ["2"], "offset": ["1"]}


@pytest.mark.parametrize("item", [{"0020000D": uid_element(STUDY)}, {"0020000E": uid_element("x")}, ["list"]])
def test_a_series_result_naming_no_valid_series_is_search_incomplete(
    server: FakeServer, client: DicomWebClient, item: object
) -> None:
    server.respond = lambda seen: json_reply([item])

    with pytest.raises(PermanentError) as caught:
        client.search_series_page(None, {}, 10, 0)

    assert caught.value.code is Code.SEARCH_INCOMPLETE


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'[{"00080018": {"vr": "UI", "Value": ["1.2', RetryableError),
        (b'{"not": "an array"}', RetryableError),
    ],
    ids=["cut-short", "not-an-array"],
)
def test_metadata_that_does_not_parse_is_never_returned(
    server: FakeServer, client: DicomWebClient, body: bytes, error: type[Exception]
) -> None:
    """Issue 12, 10: metadata.json is stored only once it parses: a body cut short raises, so nothing is
    stored and a redelivery fetches it again."""
    server.replies(Reply(200, body, headers={"Content-Type": "application/dicom+json"}))

    with pytest.raises(error):
        client.metadata(DICOMWEB_SERIES)


def test_metadata_that_is_json_but_not_dicom_json_is_refused(
    server: FakeServer, client: DicomWebClient
) -> None:
    server.replies(json_reply(["not an object"]))

    with pytest.raises(PermanentError) as caught:
        client.metadata(DICOMWEB_SERIES)

    assert caught.value.code is Code.SOURCE_INVALID_RESPONSE
