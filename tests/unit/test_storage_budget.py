"""Storage.upload waits for room in its byte budget before the library copies anything, so the
memory of uploads is bounded by UPLOAD_BUFFER_MIB however many run and however large the objects."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import google_crc32c
import pytest
from google.cloud import storage

from tests.unit.fakes import HeldBytes
from worker.storage import (
    RESUMABLE_UPLOAD_BYTES,
    SMALL_OBJECT_BYTES,
    ByteBudget,
    Storage,
    crc32c_base64,
)

MIB = 1024 * 1024


class Library:
    """Stands in for google-cloud-storage: records how many bytes its uploads hold at once."""

    def __init__(self) -> None:
        self.held = HeldBytes()
        self.kinds: list[str] = []

    def take(self, size: int, kind: str) -> None:
        self.kinds.append(kind)
        with self.held.holding(size):
            time.sleep(0.05)

    def bucket(self, name: str) -> Any:
        return FakeBucket(self, name)


class FakeBucket:
    def __init__(self, library: Library, name: str) -> None:
        self.library = library
        self.name = name

    def blob(self, name: str, chunk_size: int | None = None) -> Any:
        return FakeBlob(self, name)


class FakeBlob:
    def __init__(self, bucket: FakeBucket, name: str) -> None:
        self.bucket = bucket
        self.name = name
        self.metadata: dict[str, str] = {}
        self.size = 0
        self.crc32c = ""
        self.generation = 1

    def _store(self, data: bytes, kind: str, footprint: int) -> None:
        self.bucket.library.take(footprint, kind)
        self.size = len(data)
        self.crc32c = crc32c_base64(google_crc32c.Checksum(data))

    def upload_from_string(self, data: bytes, **_: Any) -> None:
        self._store(data, "multipart", 2 * len(data))

    def upload_from_file(self, stream: Any, **_: Any) -> None:
        self._store(stream.read(), "resumable", RESUMABLE_UPLOAD_BYTES)


def upload_all(budget_mib: int, sizes: list[int]) -> Library:
    library = Library()
    store = Storage(cast(storage.Client, library), budget_mib * MIB)

    def upload(number: int) -> None:
        data = bytes([number % 251]) * sizes[number]
        stored = store.upload("bucket", f"{number}.dcm", iter([data]), metadata={})
        assert stored.size == len(data)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(upload, range(len(sizes))))
    return library


def test_uploads_of_5_mb_objects_hold_at_most_the_budget() -> None:
    library = upload_all(32, [5_000_000] * 24)

    assert library.kinds == ["multipart"] * 24
    assert library.held.most <= 32 * MIB
    assert library.held.most >= 2 * 10_000_000  # several at once all the same


def test_small_objects_are_not_held_back() -> None:
    library = upload_all(32, [500_000] * 64)

    assert library.held.most >= 16 * 1_000_000  # all sixteen at once: 16 x 2 x 0.5 MB fit


def test_a_resumable_upload_larger_than_the_budget_still_runs_alone() -> None:
    library = upload_all(16, [SMALL_OBJECT_BYTES + 1] * 3)

    assert library.kinds == ["resumable"] * 3
    assert library.held.most == RESUMABLE_UPLOAD_BYTES  # one at a time


def test_byte_budget_waits_until_room_is_freed() -> None:
    budget = ByteBudget(10)
    entered = threading.Event()

    def second() -> None:
        with budget.hold(6):
            entered.set()

    with budget.hold(6):
        waiting = threading.Thread(target=second)
        waiting.start()
        assert not entered.wait(0.2)
    assert entered.wait(5)
    waiting.join()


@pytest.mark.parametrize("size", [0, 10, 11])
def test_byte_budget_lets_a_lone_holder_through(size: int) -> None:
    budget = ByteBudget(10)

    with budget.hold(size):
        pass
