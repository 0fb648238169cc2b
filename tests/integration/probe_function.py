"""A probe Cloud Run function for the stack's own tests.

It appends every CloudEvent it receives (CloudEvent attributes + data) as one JSON line to the file named by
``PROBE_RECORD_FILE``. Pub/Sub message attributes steer it:

* ``probe_fail=1``: raise after recording (functions-framework answers 500, Pub/Sub redelivers);
* ``probe_sleep=S``: sleep S seconds before answering;
* ``probe_env=1``: also record the names of the function's environment variables.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from typing import Any

import functions_framework


def _record(entry: dict[str, Any]) -> None:
    path = os.environ["PROBE_RECORD_FILE"]
    line = json.dumps(entry, sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(line)
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)


@functions_framework.cloud_event
def record_event(cloud_event: Any) -> None:
    attributes = {key: str(value) for key, value in cloud_event.get_attributes().items()}
    data = cloud_event.data
    message = data.get("message", {}) if isinstance(data, dict) else {}
    message_attributes = message.get("attributes") or {}
    entry: dict[str, Any] = {
        "attributes": attributes,
        "data": data,
        "pid": os.getpid(),
        "received_at": time.time(),
    }
    if message_attributes.get("probe_env") == "1":
        entry["env_keys"] = sorted(os.environ)
    _record(entry)
    if "probe_sleep" in message_attributes:
        time.sleep(float(message_attributes["probe_sleep"]))
    if message_attributes.get("probe_fail") == "1":
        raise RuntimeError("probe asked to fail")


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The entries recorded so far (an absent file means none)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []
