"""From a CloudEvent to a handled delivery; the process-wide clients are made once, on first use."""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Mapping
from typing import Any

from worker import logs
from worker.delivery import Worker
from worker.request import Message

_worker: Worker | None = None
_lock = threading.Lock()


def message_from_cloud_event(data: object, event_id: str, delivery_attempt: object = None) -> Message:
    """The Pub/Sub message inside a `messagePublished` CloudEvent. Bad base64 becomes undecodable data,
    which the request parser rejects with a failed event."""
    envelope = data if isinstance(data, Mapping) else {}
    message = envelope.get("message")
    message = message if isinstance(message, Mapping) else {}
    raw = message.get("data") or ""
    try:
        payload = base64.b64decode(raw, validate=True) if isinstance(raw, str) else b""
    except (binascii.Error, ValueError):
        payload = b"\xff<not base64>"
    attributes = message.get("attributes")
    attributes = {str(k): str(v) for k, v in attributes.items()} if isinstance(attributes, Mapping) else {}
    attempt = delivery_attempt or envelope.get("deliveryAttempt", message.get("deliveryAttempt"))
    message_id = message.get("messageId") or event_id
    return Message(
        data=payload,
        attributes=attributes,
        message_id=str(message_id),
        delivery_attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
    )


def get_worker() -> Worker:
    """The process's worker, built from the environment on first use (never at import)."""
    global _worker
    with _lock:
        if _worker is None:
            from worker.wiring import build_worker

            logs.configure()
            _worker = build_worker()
        return _worker


def handle_cloud_event(data: object, event_id: str, extensions: Mapping[str, Any] | None = None) -> None:
    """Handle one delivery; returns to acknowledge, raises RetryableError to have Pub/Sub redeliver."""
    worker = get_worker()
    trace = (extensions or {}).get("traceparent")
    token = logs.trace_var.set(_trace_name(trace) if isinstance(trace, str) else None)
    try:
        attempt = (extensions or {}).get("deliveryAttempt")
        worker.handle(message_from_cloud_event(data, event_id, attempt))
    finally:
        logs.trace_var.reset(token)


def _trace_name(traceparent: str) -> str | None:
    """`projects/P/traces/T` from a W3C traceparent, as Cloud Logging links it."""
    import os

    parts = traceparent.split("-")
    project = os.environ.get("GOOGLE_CLOUD_PROJECT")
    if len(parts) < 2 or not project:
        return None
    return f"projects/{project}/traces/{parts[1]}"
