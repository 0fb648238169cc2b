"""`import main` must be cheap and inert: Cloud Run imports it at every cold start.

(urllib3 binds a throw-away socket to ::1 at import to probe IPv6 support: local, so not counted.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys, threading
seen = []
NETWORK = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto", "socket.sendmsg"}
sys.addaudithook(lambda event, args: seen.append(event) if event in NETWORK else None)
import main
import worker.cloud_event
print(json.dumps({"socket_events": seen, "threads": threading.active_count(),
                  "worker_built": worker.cloud_event._worker is not None,
                  "entry_point": callable(main.handle_series_request)}))
"""


def test_importing_main_makes_no_network_call_and_creates_no_client() -> None:
    env = {"PATH": "/usr/bin:/bin", "GOOGLE_CLOUD_PROJECT": "p", "HOME": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"socket_events": [], "threads": 1, "worker_built": False, "entry_point": True}
