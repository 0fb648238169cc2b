"""Mode series reads small parts ahead of their uploads: at most CONCURRENCY of them and at most
SERIES_BUFFER_BYTES, so memory does not grow with the part size times CONCURRENCY."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, cast

from infra.local.dicom_factory import make_instance
from tests.unit.fakes import SERIES, SERIES_PATH, STUDY, FakePublisher
from worker.app import Job
from worker.dicomweb import DicomWebClient
from worker.models import GcsLocation, Instance, SeriesRef
from worker.request import Action, Mode, RetrieveOptions, SeriesRequest
from worker.retrieve import SERIES_BUFFER_BYTES, SeriesCopy
from worker.settings import Settings
from worker.storage import Storage, StoredObject

PART_BYTES = 5_000_000
PARTS = 24


class Part:
    def __init__(self, data: bytes) -> None:
        self.headers = {"content-type": "application/dicom", "content-length": str(len(data))}
        self._data = data

    def iter_chunks(self) -> Iterator[bytes]:
        for start in range(0, len(self._data), 1 << 20):
            yield self._data[start : start + (1 << 20)]


class SeriesSource:
    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    @contextlib.contextmanager
    def retrieve_series(self, series: SeriesRef, transfer_syntax: str) -> Iterator[Iterator[Part]]:
        yield (Part(data) for data in self.parts)


class SlowBucket:
    """Uploads that take a while, recording the most bytes held by uploads at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holding = self.most = 0
        self.uploaded: dict[str, int] = {}

    def list(self, location: GcsLocation) -> Iterator[StoredObject]:
        return iter(())

    def upload(
        self, bucket: str, name: str, chunks: Iterator[bytes], *, metadata: Mapping[str, str]
    ) -> StoredObject:
        data = b"".join(chunks)
        with self.lock:
            self.holding += len(data)
            self.most = max(self.most, self.holding)
        time.sleep(0.05)
        with self.lock:
            self.holding -= len(data)
            self.uploaded[name] = len(data)
        return StoredObject(bucket, name, len(data), "AAAAAA==", 1, dict(metadata))


def test_mode_series_holds_at_most_the_buffer_of_parts_waiting_on_uploads() -> None:
    uids = [f"{SERIES}.{number}" for number in range(1, PARTS + 1)]
    parts = [make_instance(STUDY, SERIES, uid, pixel_bytes=PART_BYTES) for uid in uids]
    request = SeriesRequest(
        Action.RETRIEVE,
        SeriesRef.parse(SERIES_PATH),
        "req-1",
        options=RetrieveOptions(mode=Mode.SERIES),
    )
    bucket = SlowBucket()
    job = Job(
        request,
        Settings(concurrency=16),
        cast(DicomWebClient, SeriesSource(parts)),
        cast(Storage, bucket),
        FakePublisher(),
        deadline=time.monotonic() + 60,
    )
    copy = SeriesCopy(job, GcsLocation.parse("gs://my-bucket/archive"))

    done: Any = copy.copy_all([Instance(STUDY, SERIES, uid) for uid in uids])

    assert sorted(done) == sorted(uids)
    assert sorted(bucket.uploaded.values()) == sorted(len(data) for data in parts)
    assert bucket.most <= SERIES_BUFFER_BYTES
    assert bucket.most >= 2 * PART_BYTES  # and still several uploads at once
