"""The Pub/Sub boundary: publish and wait, so that a failed publish makes the delivery retry.

Two clients, each made on first use: one that sends each message at once (events, follow-ups: one at a
time, waited on), and one that batches (a sweep's requests: many handed over at once, then all waited on).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from worker.errors import RetryableError

PUBLISH_TIMEOUT_SECONDS = 60.0
BATCH_MAX_MESSAGES = 1000  # Pub/Sub's own cap on a publish request
BATCH_MAX_BYTES = 4 * 1024 * 1024
BATCH_MAX_LATENCY_SECONDS = 0.01


class Publisher:
    """One PublisherClient per process, made on first use (never at import)."""

    def __init__(self, client: Any = None, batching_client: Any = None) -> None:
        self._client = client
        self._batching = batching_client
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

    def _get_batching(self) -> Any:
        with self._lock:
            if self._batching is None:
                from google.cloud import pubsub_v1

                batches = pubsub_v1.types.BatchSettings(
                    max_messages=BATCH_MAX_MESSAGES,
                    max_bytes=BATCH_MAX_BYTES,
                    max_latency=BATCH_MAX_LATENCY_SECONDS,
                )
                self._batching = pubsub_v1.PublisherClient(batch_settings=batches)
            return self._batching

    def publish_batch(self, topic: str, messages: Sequence[tuple[bytes, Mapping[str, str]]]) -> int:
        """Hand every message to the batching client at once, then wait on all of them; returns how many
        were published. Any failure is retryable, after every future has settled (publish only messages
        whose work is idempotent: a redelivery publishes them all again)."""
        if any(not data for data, _ in messages):
            raise ValueError("messages need non-empty data (functions-framework rejects attribute-only ones)")
        client = self._get_batching()
        failed: str | None = None
        futures = []
        for data, attributes in messages:
            try:
                futures.append(client.publish(topic, data, **dict(attributes)))
            except Exception as error:  # refused synchronously (bad arguments, a stopped client)
                failed = failed or type(error).__name__
                break
        for future in futures:
            try:
                future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
            except Exception as error:  # google.api_core errors, TimeoutError, CancelledError
                failed = failed or type(error).__name__
        if failed is not None:
            raise RetryableError(f"publishing a batch to {topic} failed: {failed}")
        return len(futures)
