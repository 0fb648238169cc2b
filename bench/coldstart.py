"""A cold start in a fresh process: `python -m bench.coldstart SPEC_JSON RESULT_PATH`.

Loads a function as functions-framework does on Cloud Run (``create_app(target, source)``: the source
module imported, the app built), then handles one Pub/Sub CloudEvent through the app's WSGI test client.
Writes ``{"load", "first_request", "total", "peak_rss"}``: seconds to load, to handle the first request,
and both, counted from just before functions-framework is imported (the interpreter's own start-up, the
same for both functions, is in the parent's wall time).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import base64  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    result_path = Path(argv[1])
    started = time.perf_counter()
    import functions_framework

    app = functions_framework.create_app(spec["target"], spec["source"], "cloudevent")
    loaded = time.perf_counter()
    message = {
        "data": base64.b64encode(json.dumps(spec["request"]).encode()).decode(),
        "messageId": "cold-start-1",
        "attributes": {},
    }
    response = app.test_client().post(
        "/",
        headers={
            "ce-id": "cold-start-1",
            "ce-specversion": "1.0",
            "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
            "ce-source": "//pubsub.googleapis.com/projects/local-project/topics/bench",
            "Content-Type": "application/json",
        },
        data=json.dumps({"message": message, "subscription": "projects/local-project/subscriptions/bench"}),
    )
    done = time.perf_counter()
    if response.status_code != 200:
        raise RuntimeError(f"the function answered {response.status_code}: {response.get_data(as_text=True)}")
    from bench.measure import peak_rss_bytes

    result_path.write_text(
        json.dumps(
            {
                "load": loaded - started,
                "first_request": done - loaded,
                "total": done - started,
                "since_main": done - STARTED,
                "peak_rss": peak_rss_bytes(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
