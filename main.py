"""Cloud Run function entry point: adapt the CloudEvent, hand it to the worker, ack or retry.

Returning acknowledges the Pub/Sub message; an exception (a transient failure) answers 500 and Pub/Sub
redelivers. Importing this module creates no client and makes no network call.
"""

from __future__ import annotations

import flask
import functions_framework
from cloudevents.http.event import CloudEvent

from worker.cloud_event import handle_cloud_event


@functions_framework.cloud_event
def handle_series_request(cloud_event: CloudEvent) -> None:
    extensions = {"traceparent": cloud_event.get("traceparent"), "deliveryAttempt": _delivery_attempt()}
    handle_cloud_event(cloud_event.data, str(cloud_event["id"]), extensions)


def _delivery_attempt() -> object:
    """A push body's `deliveryAttempt` (set when the subscription has a dead-letter policy), which
    functions-framework's conversion to a CloudEvent drops: read it from the request itself."""
    if not flask.has_request_context():
        return None
    body = flask.request.get_json(silent=True)
    return body.get("deliveryAttempt") if isinstance(body, dict) else None
