"""The requests and answers the emulator's handlers take and give, and Google's JSON error shape."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from .controls import FaultRule
from .errors import ApiError

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    406: "FAILED_PRECONDITION",
    408: "DEADLINE_EXCEEDED",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass
class Response:
    status: int
    body: bytes | Iterable[bytes] = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    length: int | None = None  # of an iterable body; None: sent with chunked transfer encoding


@dataclass
class Request:
    method: str
    path: str  # percent-decoded
    query: str
    headers: Message
    body: bytes
    base_url: str  # http://127.0.0.1:PORT
    fault: FaultRule | None = None

    @property
    def accept(self) -> str | None:
        return self.headers.get("Accept")


def json_response(status: int, obj: Any, content_type: str = "application/json") -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode(), f"{content_type}; charset=utf-8")


def error_response(err: ApiError) -> Response:
    body = {
        "error": {
            "code": err.status,
            "message": err.message,
            "status": STATUS_NAMES.get(err.status, "UNKNOWN"),
        }
    }
    resp = json_response(err.status, body)
    resp.headers.extend(err.headers)
    return resp
