"""One bounded thread pool for every concurrent loop of the worker (copies, series-mode uploads, deletes).

At most `concurrency` tasks run at once and, with weights, at most `budget` of their weight (bytes held);
results are handed to `on_done` in the caller's thread as each task finishes (FIRST_COMPLETED: one slow
task never holds up the others). A task's exception is raised in the caller's thread; tasks not yet
started are cancelled. Each task runs in a copy of the caller's context, so the request id reaches its
log lines.
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

R = TypeVar("R")


class BoundedPool(Generic[R]):
    def __init__(
        self, concurrency: int, on_done: Callable[[R], None], *, budget: int | None = None, name: str = "pool"
    ) -> None:
        self._concurrency = concurrency
        self._budget = budget
        self._on_done = on_done
        self._running: dict[Future[R], int] = {}  # task -> its weight
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix=name)

    def __enter__(self) -> BoundedPool[R]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        for future in self._running:
            future.cancel()
        self._executor.shutdown(wait=True)

    def wait_for_room(self, weight: int = 0) -> None:
        """Hand on finished tasks until one more of `weight` may start (one task alone always may)."""
        while self._running and (
            len(self._running) >= self._concurrency
            or (self._budget is not None and sum(self._running.values()) + weight > self._budget)
        ):
            self._collect()

    def submit(self, task: Callable[..., R], *args: object, weight: int = 0) -> None:
        self.wait_for_room(weight)
        context = contextvars.copy_context()
        self._running[self._executor.submit(context.run, task, *args)] = weight

    def wait_all(self) -> None:
        while self._running:
            self._collect()

    def _collect(self) -> None:
        finished, _ = wait(self._running, return_when=FIRST_COMPLETED)
        for future in finished:
            del self._running[future]
            self._on_done(future.result())
