"""HTTP plumbing of the emulator: the threading server, fault injection, the admin API, start/stop."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from .api import DicomWebApi
from .controls import Config
from .dicom import parse_part10
from .errors import ApiError
from .gcs_import import GcsReader
from .messages import Request, Response, error_response, json_response
from .state import EmulatorState


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: HealthcareEmulator) -> None:
        self.emulator = emulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Dropped(Exception):
    """The response was cut on purpose (dropAfterBytes) or the client went away."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 300  # an idle keep-alive connection is closed after this many seconds
    disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms delayed-ACK stalls

    # ---- connection bookkeeping (so that stop() can end keep-alive connections)

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.emulator.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    # ---- one request

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            pieces: list[bytes] = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(pieces)
                pieces.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        emulator = self.server.emulator
        split = urlsplit(self.path)
        path, query = unquote(split.path), split.query
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(error_response(ApiError(400, "malformed request body")))
            return
        if path == "/emulator" or path.startswith("/emulator/"):
            try:
                resp = emulator.admin(self.command, path, query, body)
            except ApiError as err:
                resp = error_response(err)
            except Exception as exc:  # a bug of the emulator: say so rather than drop the connection
                traceback.print_exc(file=sys.stderr)
                resp = error_response(ApiError(500, f"emulator error: {exc!r}"))
            self._send(resp)
            return
        if not path.startswith("/v1/"):
            self._send(error_response(ApiError(404, f"nothing at {path}; the API root is /v1")))
            return
        state = emulator.state
        fault = state.match_fault(self.command, path)
        if fault is not None and fault.store_instance is not None:
            store_name, data = fault.store_instance  # a modality storing into the store at this moment
            with contextlib.suppress(ApiError):  # stored already (the rule fired before)
                state.store_instance(state.store(store_name), parse_part10(data), data)
        if fault is not None and fault.latency > 0:
            time.sleep(fault.latency)
        if fault is not None and fault.status is not None:
            headers = []
            if fault.retry_after is not None:
                headers.append(("Retry-After", str(math.ceil(fault.retry_after))))
            resp = error_response(
                ApiError(fault.status, "fault injected by the Healthcare API emulator", headers)
            )
        else:
            request = Request(self.command, path, query, self.headers, body, emulator.url, fault)
            try:
                resp = emulator.api.handle(request)
            except Exception as exc:  # a bug of the emulator: answer it as the service would, with a 500
                traceback.print_exc(file=sys.stderr)
                resp = error_response(ApiError(500, f"emulator error: {exc!r}"))
        state.log(
            {
                "method": self.command,
                "path": path,
                "query": query,
                "accept": self.headers.get("Accept"),
                "status": resp.status,
                "faulted": fault is not None,
            }
        )
        self._send(resp, fault.drop_after if fault is not None else None)

    def _send(self, resp: Response, drop_after: int | None = None) -> None:
        chunks: Iterable[bytes]
        length: int | None
        if isinstance(resp.body, bytes):
            chunks, length = [resp.body], len(resp.body)
        else:
            chunks, length = resp.body, resp.length
        try:
            self.send_response(resp.status)
            for name, value in resp.headers:
                self.send_header(name, value)
            if resp.status == 204 or resp.status < 200:
                self.end_headers()
                return
            if resp.content_type:
                self.send_header("Content-Type", resp.content_type)
            chunked = length is None
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(length))
            self.end_headers()
            sent = 0
            for chunk in chunks:
                if not chunk:
                    continue
                if drop_after is not None and sent + len(chunk) > drop_after:
                    self._write(chunk[: drop_after - sent], chunked)
                    raise _Dropped
                self._write(chunk, chunked)
                sent += len(chunk)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (_Dropped, OSError):
            self._abort()
        except Exception:  # the body failed while streaming (a file vanished, a transcoding failed)
            traceback.print_exc(file=sys.stderr)
            self._abort()
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _write(self, data: bytes, chunked: bool) -> None:
        if not data:
            return
        if chunked:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        else:
            self.wfile.write(data)

    def _abort(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _check_loopback(host: str) -> None:
    try:
        address = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot resolve {host!r}") from exc
    if not address.is_loopback:
        raise ValueError(f"the emulator binds to loopback addresses only, not {host!r}")


class HealthcareEmulator:
    """The emulator, in-process: `HealthcareEmulator(data_dir).start()`, then `.url`, then `.stop()`.

    `storage_url` is a Cloud Storage JSON API on a loopback address (fake-gcs-server, reached with no
    credentials) that `dicomStores.import` reads from; without it, import answers 501."""

    def __init__(
        self,
        data_dir: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        operation_delay: float = 0.5,
        absent_delete: str = "404",
        boundary_quoting: str = "random",
        storage_url: str | None = None,
        verbose: bool = False,
    ) -> None:
        _check_loopback(host)
        storage = GcsReader(storage_url) if storage_url else None  # refuses a non-loopback URL
        self._initial_config = {
            "operationDelay": operation_delay,
            "absentDelete": absent_delete,
            "boundaryQuoting": boundary_quoting,
        }
        config = Config()
        config.update(self._initial_config)
        self.verbose = verbose
        self.state = EmulatorState(Path(data_dir), config, storage)
        self.api = DicomWebApi(self.state)
        self.server = _Server((host, port), self)
        self.host = host
        self.port = int(self.server.server_address[1])
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_root(self) -> str:
        return f"{self.url}/v1"

    def dicomweb_root(self, store: str) -> str:
        """`store` is projects/P/locations/L/datasets/D/dicomStores/S."""
        return f"{self.api_root}/{store}/dicomWeb"

    def start(self) -> HealthcareEmulator:
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="healthcare-emulator",
            daemon=True,
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self.state.close()
        if self.thread is not None:
            self.server.shutdown()
            self.thread.join(timeout=10)
            self.thread = None
        with self.server.connections_lock:
            connections = list(self.server.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.server.server_close()

    def __enter__(self) -> HealthcareEmulator:
        return self if self.thread is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- admin API (/emulator/...)

    def admin(self, method: str, path: str, query: str, body: bytes) -> Response:
        route = path.removeprefix("/emulator").rstrip("/") or "/"
        try:
            spec: Any = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            raise ApiError(400, f"the admin API takes JSON: {exc}") from exc
        state = self.state
        key = (method, route)
        if key == ("POST", "/stores"):
            created = state.create_store(spec.get("name") if isinstance(spec, dict) else None)
            return json_response(200, {"name": spec["name"], "created": created})
        if key == ("GET", "/stores"):
            with state.lock:
                stores = [
                    {"name": s.name, "studies": len(s.studies), "instances": len(s.sops)}
                    for s in state.stores.values()
                ]
            return json_response(200, stores)
        if key == ("POST", "/seed"):
            return json_response(200, state.seed(spec))
        if key == ("GET", "/faults"):
            with state.lock:
                return json_response(200, {"rules": [rule.as_json() for rule in state.faults]})
        if key == ("POST", "/faults"):
            state.set_faults(spec)
            with state.lock:
                return json_response(200, {"rules": [rule.as_json() for rule in state.faults]})
        if key == ("DELETE", "/faults"):
            state.set_faults({"rules": []})
            return json_response(200, {"rules": []})
        if key == ("GET", "/config"):
            return json_response(200, state.config.as_json())
        if key == ("POST", "/config"):
            with state.lock:
                state.config.update(spec)
                return json_response(200, state.config.as_json())
        if key == ("GET", "/requests"):
            with state.lock:
                return json_response(200, list(state.requests))
        if key == ("DELETE", "/requests"):
            with state.lock:
                state.requests.clear()
            return json_response(200, [])
        if key == ("POST", "/reset"):
            state.reset()
            with state.lock:
                state.config.update(self._initial_config)
            return json_response(200, {})
        if key == ("GET", "/stats"):
            with state.lock:
                stats = {"instanceBytesServed": state.bytes_served, "instancesServed": state.instances_served}
            return json_response(200, stats)
        if key == ("GET", "/health"):
            return json_response(200, {"status": "ok"})
        raise ApiError(404, f"no admin endpoint {method} {path}")


def start_emulator(host: str, port: int, data_dir: str | Path, **options: Any) -> HealthcareEmulator:
    """Start an emulator in a background thread of this process; stop it with `.stop()`."""
    return HealthcareEmulator(data_dir, host, port, **options).start()
