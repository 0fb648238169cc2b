"""Storage.upload waits for room in its byte budget before the library copies anything, so the
memory of uploads is bounded by UPLOAD_BUFFER_MIB however many run and however large the objects."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.unit.fake_gcs import FakeGcs
from tests.unit.fakes import HeldBytes
from worker.storage import (
    RESUMABLE_UPLOAD_BYTES,
    SMALL_OBJECT_BYTES,
    ByteBudget,
)

MIB = 1024 * 1024


class Library:
    """google-cloud-storage on an in-memory server that records how many bytes its uploads hold at once."""

    def __init__(self) -> None:
        self.held = HeldBytes()
        self.kinds: list[str] = []
        self.gcs = FakeGcs()
        self.gcs.on_upload = self.take

    def take(self, kind: str, data: bytes) -> None:
        """A multipart upload holds our bytes and its request body; a resumable one its head and chunks."""
        self.kinds.append(kind)
        with self.held.holding(2 * len(data) if kind == "multipart" else RESUMABLE_UPLOAD_BYTES):
            time.sleep(0.05)


def upload_all(budget_mib: int, sizes: list[int]) -> Library:
    library = Library()
    store = library.gcs.worker_storage(budget_mib * MIB)

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

    assert set(library.kinds) == {"resumable"}  # in chunks of 2 MiB, an eighth of the budget
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


def hold_in_a_thread(budget: ByteBudget, size: int, release: threading.Event) -> threading.Event:
    """Ask for `size` in another thread and keep it until `release`; the event is set once it holds."""
    entered = threading.Event()

    def hold() -> None:
        with budget.hold(size):
            entered.set()
            release.wait(5)

    threading.Thread(target=hold, daemon=True).start()
    return entered


@pytest.mark.parametrize("size", [0, 10, 11])
def test_byte_budget_lets_a_lone_holder_through(size: int) -> None:
    budget = ByteBudget(10)
    release = threading.Event()

    entered = hold_in_a_thread(budget, size, release)

    assert entered.wait(5)  # at once, even over the limit: one holder alone may exceed it
    second = hold_in_a_thread(budget, 1, release)
    assert second.wait(0.2) is (size + 1 <= 10)  # and it counts against the others while it holds
    release.set()
    assert second.wait(5)
    assert hold_in_a_thread(budget, 10, threading.Event()).wait(5)  # all of it is given back
