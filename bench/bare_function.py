"""The bare function the cold start is compared with: the worker's client libraries imported, one QIDO GET.

A functions-framework CloudEvent function that imports what the worker's deployment imports
(google.cloud.storage, google.cloud.pubsub_v1, google.auth, requests) and, per request, does one bare
SearchForInstances GET of the series named in the message, with no validation, no clients, no events.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import functions_framework
import google.auth
import requests
from google.cloud import pubsub_v1, storage

LIBRARIES = (google.auth, pubsub_v1, storage)  # imported for their cost, as the worker's deployment does


@functions_framework.cloud_event
def handle(cloud_event: Any) -> None:
    request = json.loads(base64.b64decode(cloud_event.data["message"]["data"]))
    url = f"{os.environ['HEALTHCARE_API_URL']}/{request['series']}/instances"
    response = requests.get(url, headers={"Accept": "application/dicom+json"}, timeout=60)
    response.raise_for_status()
    json.loads(response.content)
