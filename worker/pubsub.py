"""The Pub/Sub boundary: publish and wait, so that a failed publish makes the delivery retry."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from worker.errors import RetryableError

PUBLISH_TIMEOUT_SECONDS = 60.0


class Publisher:
    """One PublisherClient per process, made on first use (never at import)."""

    def __init__(self, client: Any = None) -> None:
        self._client = client
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._client is None:
                from google.cloud import pubsub_v1

                # One message per publish, waited on at once: a batch would only wait its 10 ms for more.
                one_at_a_time = pubsub_v1.types.BatchSettings(max_messages=1)
                self._client = pubsub_v1.PublisherClient(batch_settings=one_at_a_time)
            return self._client

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        """Publish one message and wait for its id; any failure is retryable (the work is idempotent)."""
        if not data:
            raise ValueError("messages need non-empty data (functions-framework rejects attribute-only ones)")
        try:
            future = self._get().publish(topic, data, **dict(attributes))
            return str(future.result(timeout=PUBLISH_TIMEOUT_SECONDS))
        except Exception as error:
            raise RetryableError(f"publishing to {topic} failed: {type(error).__name__}") from None
