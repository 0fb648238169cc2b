"""`make demo`: the worker on the local stack, end to end, then everything stopped.

Starts Google's Pub/Sub emulator, fake-gcs-server and the Healthcare API emulator (or, with
`--orthanc`, a real Orthanc as a generic DICOMweb server), deploys the function behind a push
subscription as in production, seeds a synthetic series made with pydicom, publishes requests onto
the request topic and prints the completion events read back from the completion topic.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from typing import Any

from infra.local.dicom_factory import make_series, stow
from infra.local.stack import Deployment, Stack, install_signal_handlers

STORE = "projects/local-project/locations/local/datasets/demo/dicomStores/demo-store"
BUCKET = "demo-archive"


def _show(title: str, event: Any) -> None:
    data = dict(event.data)
    if isinstance(data.get("instances"), list) and len(data["instances"]) > 3:
        data["instances"] = [*data["instances"][:3], f"... {len(data['instances']) - 3} more"]
    print(f"\n== {title}\n   attributes: {json.dumps(event.attributes, sort_keys=True)}")
    print("   " + json.dumps(data, indent=2).replace("\n", "\n   "))


def _run(deployment: Deployment, title: str, request: dict[str, Any] | bytes) -> None:
    print(f"\n-> publishing to {deployment.request_topic}: {request!r}"[:300])
    deployment.publish(request)
    (event,) = deployment.pull_events(1, timeout=120)
    _show(title, event)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orthanc", action="store_true", help="use a real Orthanc instead of the emulator")
    parser.add_argument("--instances", type=int, default=5, help="instances in the synthetic series")
    args = parser.parse_args(argv)
    install_signal_handlers()
    with (
        tempfile.TemporaryDirectory(prefix="dicom-worker-demo-") as run_dir,
        Stack(run_dir, healthcare=not args.orthanc, orthanc=args.orthanc) as stack,
    ):
        print(f"local stack up in {stack.startup_seconds:.1f} s (all on 127.0.0.1)")
        series, data = make_series(args.instances, pixel_bytes=64 * 1024)
        env = {"DEFAULT_DESTINATION": f"gs://{BUCKET}/archive", "DELETE_ENABLED": "true"}
        if args.orthanc:
            root = stack.orthanc_url + "/dicom-web"
            env.update(DICOMWEB_URL=root, DICOMWEB_DELETE="orthanc")
            path = f"studies/{series.study_uid}/series/{series.series_uid}"
        else:
            stack.create_dicom_store(STORE)
            root = f"{stack.healthcare_url}/{STORE}/dicomWeb"
            path = f"{STORE}/dicomWeb/studies/{series.study_uid}/series/{series.series_uid}"
        stow(root, data)
        stack.create_bucket(BUCKET)
        print(f"seeded {len(data)} synthetic instances into {'Orthanc' if args.orthanc else STORE}")
        deployment = stack.deploy(env)
        print(f"function listening on {deployment.url}, pushed from {deployment.push_subscription}")
        _run(deployment, "search", {"action": "search", "series": path})
        _run(deployment, "retrieve", {"action": "retrieve", "series": path})
        _run(deployment, "archive (copy, verify, delete)", {"action": "archive", "series": path})
        _run(deployment, "search after the archive", {"action": "search", "series": path})
        _run(deployment, "a malformed message (failed event, acknowledged)", b"{not json")
        client = stack.storage_client()
        print(f"\n== objects in gs://{BUCKET}")
        for blob in client.list_blobs(BUCKET):
            print(f"   {blob.size:>9}  crc32c={blob.crc32c}  {blob.name}")
        print("\nstopping the local stack")
    return 0


if __name__ == "__main__":
    sys.exit(main())
