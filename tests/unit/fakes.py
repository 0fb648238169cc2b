"""Small fakes and builders shared by the unit tests (no network, no Google clients)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from worker.dicomweb import DicomWebClient
from worker.errors import RetryableError
from worker.pubsub import Publisher
from worker.request import Message
from worker.storage import Storage

PROJECT = "my-project"
LOCATION = "us-central1"
DATASET = "my-dataset"
STORE_ID = "my-store"
STORE = f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/dicomStores/{STORE_ID}"
STUDY = "1.2.840.113619.2.55.3.604688119"
SERIES = "1.2.840.113619.2.55.3.604688119.2"
SOP = "1.2.840.113619.2.55.3.604688119.2.7"
SERIES_PATH = f"{STORE}/dicomWeb/studies/{STUDY}/series/{SERIES}"
DICOMWEB_SERIES_PATH = f"studies/{STUDY}/series/{SERIES}"
COMPLETION_TOPIC = "projects/my-project/topics/series-done"
REQUEST_TOPIC = "projects/my-project/topics/series-requests"
MESSAGE_ID = "4711000000001"


def message(
    body: object,
    attributes: Mapping[str, str] | None = None,
    *,
    message_id: str = MESSAGE_ID,
    delivery_attempt: int | None = None,
) -> Message:
    """A delivery whose data is `body`: bytes as they are, str encoded, anything else as JSON."""
    if isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode("utf-8")
    else:
        data = json.dumps(body).encode("utf-8")
    return Message(data, dict(attributes or {}), message_id, delivery_attempt)


@dataclass(frozen=True)
class Published:
    topic: str
    data: bytes
    attributes: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.data)


class FakePublisher(Publisher):
    """Records what is published; `fail` makes every publish fail as the real one does (retryable)."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__(client=object())
        self.published: list[Published] = []
        self.fail = fail

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        if self.fail:
            raise RetryableError(f"publishing to {topic} failed: NotFound")
        self.published.append(Published(topic, data, dict(attributes)))
        return str(len(self.published))

    def to(self, topic: str) -> list[Published]:
        return [p for p in self.published if p.topic == topic]


def no_dicomweb() -> DicomWebClient:
    """A stand-in for tests whose actions never touch the DICOMweb client."""
    return cast(DicomWebClient, object())


def no_storage() -> Storage:
    """A stand-in for tests whose actions never touch Cloud Storage."""
    return cast(Storage, object())


class HeldBytes:
    """The most bytes held at once by threads that say what they hold (tests of memory bounds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = 0
        self.most = 0

    @contextlib.contextmanager
    def holding(self, size: int) -> Iterator[None]:
        with self._lock:
            self._now += size
            self.most = max(self.most, self._now)
        try:
            yield
        finally:
            with self._lock:
                self._now -= size
