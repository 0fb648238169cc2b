"""The one bounded pool (worker/pool.py): a finished task's slot is taken at once, weights stay within
the budget, a task's exception reaches the caller, and the caller's context reaches the tasks."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from worker.pool import BoundedPool


class Running:
    """How many tasks run at once, at most."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def task(self, seconds: float, result: int) -> int:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(seconds)
        with self._lock:
            self.now -= 1
        return result


def test_a_finished_task_frees_its_slot_while_a_slow_one_still_runs() -> None:
    release = threading.Event()
    done: list[str] = []

    def slow() -> str:
        return "slow" if release.wait(5) else "timed out"

    with BoundedPool(2, done.append) as pool:
        pool.submit(slow)
        for number in range(6):  # each needs the one free slot: FIRST_COMPLETED hands it on
            pool.submit(lambda n=number: f"quick-{n}")
        pool.wait_for_room()
        quick_before_slow = len(done)
        release.set()
        pool.wait_all()

    assert quick_before_slow == 6
    assert done[-1] == "slow"
    assert sorted(done[:-1]) == [f"quick-{n}" for n in range(6)]


def test_at_most_concurrency_tasks_run_at_once() -> None:
    running = Running()
    results: list[int] = []

    with BoundedPool(3, results.append) as pool:
        for number in range(12):
            pool.submit(running.task, 0.02, number)
        pool.wait_all()

    assert sorted(results) == list(range(12))
    assert running.most == 3


@pytest.mark.parametrize(("weight", "most"), [(6, 1), (5, 2), (3, 3)])
def test_weights_stay_within_the_budget(weight: int, most: int) -> None:
    running = Running()
    results: list[int] = []

    with BoundedPool(8, results.append, budget=10) as pool:
        for number in range(9):
            pool.submit(running.task, 0.02, number, weight=weight)
        pool.wait_all()

    assert len(results) == 9
    assert running.most == most


def test_a_task_heavier_than_the_budget_runs_alone() -> None:
    running = Running()
    results: list[int] = []

    with BoundedPool(8, results.append, budget=10) as pool:
        for number in range(3):
            pool.submit(running.task, 0.02, number, weight=25)
        pool.wait_all()

    assert sorted(results) == [0, 1, 2]
    assert running.most == 1


def test_a_task_exception_is_raised_in_the_caller_and_the_pool_ends_its_tasks() -> None:
    finished = threading.Event()
    results: list[str] = []

    def fails() -> str:
        raise ValueError("task failed")

    def slower() -> str:
        time.sleep(0.1)
        finished.set()
        return "slower"

    with pytest.raises(ValueError, match="task failed"), BoundedPool(2, results.append) as pool:
        pool.submit(slower)
        pool.submit(fails)
        pool.wait_all()

    assert finished.is_set()  # the pool's exit waited for the running task: nothing runs on after it


def test_tasks_run_in_the_callers_context() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
    request_id.set("req-7")
    seen: list[str] = []

    with BoundedPool(2, seen.append) as pool:
        for _ in range(3):
            pool.submit(request_id.get)
        pool.wait_all()

    assert seen == ["req-7"] * 3
