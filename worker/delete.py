"""Action `delete`: the whole series, and a report of what happened, not of what was asked.

It asks for the whole series (DeleteSeries and, on the Healthcare API, its long-running operation, polled
to the end; near the deadline the wait is handed to a follow-up that carries the operation's name, so the
follow-up never DELETEs again). It reports `deleted: true` only once a search finds the series empty.
"""

from __future__ import annotations

import logging
from typing import Any

from worker import operations
from worker.errors import Code, PermanentError, SourceGone
from worker.job import HandedOn, Job, Outcome
from worker.models import Operation
from worker.search import settled

log = logging.getLogger(__name__)

NOT_FOUND = 5  # google.rpc.Code.NOT_FOUND
ARCHIVE_ROUNDS = 3  # copy, check, delete; then again for instances stored meanwhile
ROUND_MARGIN_SECONDS = 30.0  # a new round starts only with this much time left before the deadline


# -- delete ---------------------------------------------------------------------------------------


def delete(job: Job) -> Outcome:
    """DELETE the series (or, in a follow-up, only wait on the operation already started), then check."""
    name = job.request.operation
    result: dict[str, Any] = {}
    absent = False
    if name is None:
        try:
            operation = job.dicomweb.delete_series(job.request.series)
        except SourceGone:
            operation, absent = None, True
        if operation is not None:
            log.info("delete operation started", extra={"operation": operation.name})
            name = operation.name
    if name is not None:
        result["operation"] = name
        finished = _wait(job, name)
        if isinstance(finished, HandedOn):
            return finished
        absent = finished.error is not None  # NOT_FOUND: any other error was raised by _wait
    listing = settled(job, lambda instance: True)
    if listing.instances or not listing.consistent:
        if job.remaining() < operations.POLL_MARGIN_SECONDS * 2 and name is not None:
            return job.hand_on("the series is not empty yet", operation=name)
        raise PermanentError(
            Code.SERIES_NOT_EMPTY,
            "the series is not empty after the delete; it was not reported deleted",
            {**result, "remainingCount": max(len(listing.instances), listing.metrics_count or 0)},
        )
    if absent:
        return {**result, "alreadyAbsent": True}
    return {**result, "alreadyAbsent": False, "deleted": True}


def _wait(job: Job, name: str) -> Operation | HandedOn:
    """The delete operation, done without error or with NOT_FOUND (the series was absent)."""

    def not_found() -> PermanentError:
        return PermanentError(
            Code.DELETE_FAILED,
            "the delete operation is not found (unknown or expired); the series was not reported deleted",
            {"operation": name},
        )

    operation = operations.wait(job, name, not_found=not_found)
    if isinstance(operation, HandedOn) or operation.error is None:
        return operation
    code = operations.error_code(operation)
    if code == NOT_FOUND:
        return operation
    raise PermanentError(
        Code.DELETE_FAILED,
        "the delete operation finished with an error; the series was not reported deleted",
        {"operation": name, "operationErrorCode": code},
    )
