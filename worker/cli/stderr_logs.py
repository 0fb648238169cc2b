"""The worker's JSON log lines on stderr while a command runs."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def worker_logs_to_stderr(verbose: bool) -> Iterator[None]:
    """The worker's JSON log lines go to stderr (warnings, or everything with --verbose) while a
    command runs; the logger is put back as it was afterwards."""
    from worker.logs import JsonFormatter

    class StderrHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                sys.stderr.write(self.format(record) + "\n")
            except Exception:
                self.handleError(record)

    logger = logging.getLogger("worker")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter())
    logger.handlers = [handler]
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]
