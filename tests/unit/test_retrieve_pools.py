"""The retrieve pools: a slot freed by one finished upload is taken at once (no waiting on the slowest
of a batch), and mode series reads small parts ahead of their uploads at most CONCURRENCY and
SERIES_BUFFER_BYTES at a time, so memory does not grow with the part size times CONCURRENCY."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest

from infra.local.dicom_factory import make_instance
from tests.unit.fakes import SERIES, SERIES_PATH, STUDY, FakePublisher, HeldBytes
from worker.dicomweb import DicomWebClient
from worker.job import Job
from worker.models import GcsLocation, Instance, SeriesRef, StoredObject
from worker.ports import Ports
from worker.request import Action, Mode, RetrieveOptions, SeriesRequest
from worker.retrieve import SERIES_BUFFER_BYTES, SeriesCopy
from worker.settings import Settings
from worker.storage import Storage

PART_BYTES = 5_000_000
PARTS = 24


class Part:
    def __init__(self, data: bytes) -> None:
        self.headers = {"content-type": "application/dicom", "content-length": str(len(data))}
        self._data = data

    def iter_chunks(self) -> Iterator[bytes]:
        for start in range(0, len(self._data), 1 << 20):
            yield self._data[start : start + (1 << 20)]


class Source:
    def __init__(self, uids: list[str], parts: list[bytes]) -> None:
        self.parts = dict(zip(uids, parts, strict=True))

    @contextlib.contextmanager
    def retrieve_series(
        self, series: SeriesRef, transfer_syntax: str, *, deadline: float | None = None
    ) -> Iterator[Iterator[Part]]:
        yield (Part(data) for data in self.parts.values())

    @contextlib.contextmanager
    def retrieve_instance(
        self, series: SeriesRef, sop_uid: str, transfer_syntax: str, *, deadline: float | None = None
    ) -> Iterator[Part]:
        yield Part(self.parts[sop_uid])


class SlowBucket:
    """Uploads that take a while, recording the most bytes held by uploads at once."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.held = HeldBytes()
        self.uploaded: dict[str, int] = {}

    def list(self, location: GcsLocation) -> Iterator[StoredObject]:
        return iter(())

    def upload(
        self,
        bucket: str,
        name: str,
        chunks: Iterator[bytes],
        *,
        metadata: Mapping[str, str],
        size: int | None = None,
    ) -> StoredObject:
        data = b"".join(chunks)
        with self.held.holding(len(data)):
            self.wait(name)
        with self.lock:
            self.uploaded[name] = len(data)
        return StoredObject(bucket, name, len(data), "AAAAAA==", 1, dict(metadata))

    def wait(self, name: str) -> None:
        time.sleep(self.seconds)


class OneStuckUpload(SlowBucket):
    """The first upload returns only once every other one is done (or after `patience` seconds)."""

    def __init__(self, others: int, patience: float = 2.0) -> None:
        super().__init__(0.0)
        self.others = others
        self.patience = patience
        self.stuck: str | None = None
        self.others_done = threading.Event()
        self.others_done_in_time = False

    def wait(self, name: str) -> None:
        with self.lock:
            first = self.stuck is None
            if first:
                self.stuck = name
        if first:
            self.others_done_in_time = self.others_done.wait(self.patience)
        elif len(self.uploaded) + 1 == self.others:
            self.others_done.set()


def series_of(count: int, pixel_bytes: int) -> tuple[list[str], list[bytes]]:
    uids = [f"{SERIES}.{number}" for number in range(1, count + 1)]
    return uids, [make_instance(STUDY, SERIES, uid, pixel_bytes=pixel_bytes) for uid in uids]


def copy_with(mode: Mode, source: Source, bucket: SlowBucket, concurrency: int) -> SeriesCopy:
    request = SeriesRequest(
        Action.RETRIEVE,
        SeriesRef.parse(SERIES_PATH),
        "req-1",
        options=RetrieveOptions(mode=mode),
    )
    ports = Ports(cast(DicomWebClient, source), cast(Storage, bucket), FakePublisher())
    job = Job(request, Settings(concurrency=concurrency), ports, deadline=time.monotonic() + 60)
    return SeriesCopy(job, GcsLocation.parse("gs://my-bucket/archive"))


@pytest.mark.parametrize("mode", [Mode.INSTANCES, Mode.SERIES])
def test_one_slow_upload_does_not_hold_up_the_others(mode: Mode) -> None:
    uids, parts = series_of(20, 1024)
    bucket = OneStuckUpload(others=19)

    done: Any = copy_with(mode, Source(uids, parts), bucket, concurrency=4).copy_all(
        [Instance(STUDY, SERIES, uid) for uid in uids]
    )

    assert sorted(done) == sorted(uids)
    assert bucket.others_done_in_time  # the 3 free slots took the other 19 while one upload hung


def test_mode_series_holds_at_most_the_buffer_of_parts_waiting_on_uploads() -> None:
    uids, parts = series_of(PARTS, PART_BYTES)
    bucket = SlowBucket()
    copy = copy_with(Mode.SERIES, Source(uids, parts), bucket, concurrency=16)

    done: Any = copy.copy_all([Instance(STUDY, SERIES, uid) for uid in uids])

    assert sorted(done) == sorted(uids)
    assert sorted(bucket.uploaded.values()) == sorted(len(data) for data in parts)
    assert bucket.held.most <= SERIES_BUFFER_BYTES
    assert bucket.held.most >= 2 * PART_BYTES  # and still several uploads at once
