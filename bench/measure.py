"""One measurement in a fresh process: `python -m bench.measure SPEC_JSON RESULT_PATH`.

The parent (bench/run.py) starts one of these per run, so each run's peak RSS is its own: the child sets
up its clients, times only the work, and writes ``{"seconds", "instances", "bytes", "peak_rss", ...}``
to RESULT_PATH (stdout and stderr are the run's log). Kinds:

- ``worker``: the worker in-process, ``build_worker(Settings.from_env())`` then ``Worker.handle(Message)``
  of a retrieve request (``options.mode`` from the spec) into a fresh destination prefix.
- ``baseline``: what a user would write with dicomweb-client: ``iter_series`` (the parts parsed into pydicom
  datasets), then for each dataset ``dcmwrite`` to a BytesIO and ``blob.upload_from_string``, sequentially.
- ``ceiling``: bare streaming of the same bytes at the worker's concurrency: for each instance, a GET with
  ``Accept: application/dicom; transfer-syntax=*`` (single part), its body streamed into
  ``blob.upload_from_file(size=Content-Length)``, or above 8 MiB into one PUT of a resumable session (its
  best upload of a large object; ``upload_requests: 2``: the worker's two requests, bulk then the last
  < 256 KiB); no parsing, no checks, no events.
- ``search_worker``: the worker's ``DicomWebClient.search_instances`` over a series.
- ``search_bare``: the same pages (same limit/offset sequence) fetched with requests and ``json.loads``.
- ``multipart``: bench/multipart_speed.py's split-against-read timing of one large part.
"""

from __future__ import annotations

import io
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

QIDO_INCLUDE = ["00080016", "00200013"]  # what the worker's search asks for


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def series_root(spec: dict[str, Any]) -> str:
    return f"{spec['healthcare_url']}/{spec['store']}/dicomWeb"


def series_url(spec: dict[str, Any]) -> str:
    return f"{series_root(spec)}/studies/{spec['study']}/series/{spec['series']}"


def loopback_session(pool: int = 10) -> Any:
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool)
    session.mount("http://", adapter)
    return session


def storage_client(pool: int = 10) -> Any:
    """A client as the worker makes one (STORAGE_EMULATOR_HOST from the environment), pool widened."""
    from google.cloud import storage
    from requests.adapters import HTTPAdapter

    client = storage.Client()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool)
    client._http.mount("http://", adapter)
    client._http.mount("https://", adapter)
    return client


# -- retrieve -------------------------------------------------------------------------------------


def run_worker(spec: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from worker.request import Message
    from worker.settings import Settings
    from worker.wiring import build_worker

    worker = build_worker(Settings.from_env())
    action = spec.get("action", "retrieve")  # archive: copy, check, delete; restore: STOW back, check
    body: dict[str, Any] = {
        "action": action,
        "series": f"{spec['store']}/dicomWeb/studies/{spec['study']}/series/{spec['series']}",
        "destination": f"gs://{spec['bucket']}/{spec['prefix']}",
    }
    if action != "restore":
        body["options"] = {"mode": spec["mode"]}
    message = Message(json.dumps(body).encode(), {}, f"bench-{os.getpid()}")

    def work() -> dict[str, Any]:
        event = worker.handle(message)
        if event is None or event.status != "succeeded":
            raise RuntimeError(f"the worker did not succeed: {event and event.as_json()}")
        result = event.as_json()
        if action == "archive" and result.get("deleted") is not True:
            raise RuntimeError(f"the archive did not delete the series: {result}")
        if action == "restore" and (result.get("verified") is not True or result.get("skippedCount")):
            raise RuntimeError(f"the restore did not store and verify every instance: {result}")
        return {
            "instances": result["instanceCount"],
            "bytes": result["bytes"],
            "uploaded": result.get("uploadedCount", result.get("restoredCount")),
        }

    return work


def run_baseline(spec: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from dicomweb_client.api import DICOMwebClient
    from pydicom import dcmwrite

    client = DICOMwebClient(url=series_root(spec))
    client._session.trust_env = False  # loopback only
    bucket = storage_client().bucket(spec["bucket"])
    folder = f"{spec['prefix']}/{spec['study']}/{spec['series']}"

    def work() -> dict[str, Any]:
        count = size = 0
        for dataset in client.iter_series(
            spec["study"], spec["series"], media_types=(("application/dicom", "*"),)
        ):
            out = io.BytesIO()
            dcmwrite(out, dataset, enforce_file_format=True)
            data = out.getvalue()
            blob = bucket.blob(f"{folder}/{dataset.SOPInstanceUID}.dcm")
            blob.upload_from_string(data, content_type="application/dicom")
            count += 1
            size += len(data)
            del dataset, out, data
        return {"instances": count, "bytes": size}

    return work


STREAMED_ABOVE = 8 * 1024 * 1024  # the ceiling's large objects: a resumable session, streamed
GRANULE = 256 * 1024  # every request of a resumable upload but the last is a multiple of this


class SizedStream:
    """The next `size` bytes of a raw response as a request body: requests streams it with that
    Content-Length, 1 MiB at a time."""

    def __init__(self, raw: Any, size: int) -> None:
        self.raw, self.size = raw, size

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Any:
        remaining = self.size
        while remaining:
            piece = self.raw.read(min(1024 * 1024, remaining))
            if not piece:
                raise RuntimeError("the instance ended early")
            remaining -= len(piece)
            yield piece


def streamed_upload(http: Any, url: str, raw: Any, size: int, requests: int) -> None:
    """A resumable upload of `size` bytes from `raw`: one PUT of the whole body (`requests` 1), or the
    worker's wire protocol without its checks (2: up to the last 256 KiB boundary, then the rest)."""
    bulk = size if requests == 1 else size // GRANULE * GRANULE
    if requests == 2:
        put = http.put(url, data=SizedStream(raw, bulk), headers={"Content-Range": f"bytes 0-{bulk - 1}/*"})
        if put.status_code != 308:
            raise RuntimeError(f"the bulk of a streamed upload answered {put.status_code}")
        rest = raw.read(size - bulk)
        content_range = f"bytes {bulk}-{size - 1}/{size}" if rest else f"bytes */{size}"
        put = http.put(url, data=rest, headers={"Content-Range": content_range})
    else:
        put = http.put(
            url, data=SizedStream(raw, size), headers={"Content-Range": f"bytes 0-{size - 1}/{size}"}
        )
    put.raise_for_status()


def run_ceiling(spec: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    concurrency = int(spec["concurrency"])
    session = loopback_session(concurrency + 4)
    client = storage_client(concurrency + 4)
    bucket = client.bucket(spec["bucket"])
    folder = f"{spec['prefix']}/{spec['study']}/{spec['series']}"
    chunk_size = spec.get("chunk_size")
    requests = int(spec.get("upload_requests", 1))  # of a large object: see streamed_upload

    def instance_uids() -> list[str]:  # the listing is outside the timing: the ceiling moves bytes only
        response = session.get(
            f"{series_url(spec)}/instances", params={"limit": "50000"}, headers={"Accept": "application/json"}
        )
        response.raise_for_status()
        return [item["00080018"]["Value"][0] for item in response.json()]

    uids = instance_uids()

    def copy(uid: str) -> int:
        url = f"{series_url(spec)}/instances/{uid}"
        headers = {"Accept": "application/dicom; transfer-syntax=*"}
        with session.get(url, headers=headers, stream=True) as response:
            response.raise_for_status()
            length = int(response.headers["Content-Length"])
            blob = bucket.blob(f"{folder}/{uid}.dcm", chunk_size=chunk_size)
            if length <= STREAMED_ABOVE:
                blob.upload_from_file(response.raw, size=length, content_type="application/dicom")
                return length
            url = blob.create_resumable_upload_session(content_type="application/dicom", size=length)
            streamed_upload(client._http, url, response.raw, length, requests)
            return length

    def work() -> dict[str, Any]:
        with ThreadPoolExecutor(concurrency) as pool:
            sizes = list(pool.map(copy, uids))
        return {"instances": len(sizes), "bytes": sum(sizes)}

    return work


def run_stow_ceiling(spec: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """Bare STOW-RS of the archived objects into a store at the worker's concurrency: download each
    object, POST it as one part; no parsing, comparison or verification (the ceiling for restore).
    With `read_back`, each instance is then also read back whole (single part, `transfer-syntax=*`) and
    its bytes compared with the object's: the least a verified restore must move, with no other work."""
    read_back = bool(spec.get("read_back"))
    concurrency = int(spec["concurrency"])
    session = loopback_session(concurrency + 4)
    bucket = storage_client(concurrency + 4).bucket(spec["bucket"])
    folder = f"{spec['prefix']}/{spec['study']}/{spec['series']}/"
    names = [blob.name for blob in bucket.list_blobs(prefix=folder) if blob.name.endswith(".dcm")]
    url = f"{series_root(spec)}/studies"
    boundary = "bench-stow-boundary"
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
    single_part = {"Accept": "application/dicom; transfer-syntax=*"}

    def store(name: str) -> int:
        data = bucket.blob(name).download_as_bytes()
        body = b"".join(
            [
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(),
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        response = session.post(url, data=body, headers=headers)
        response.raise_for_status()
        if read_back:
            uid = name.rpartition("/")[2].removesuffix(".dcm")
            instance = f"{series_url(spec)}/instances/{uid}"
            with session.get(instance, headers=single_part, stream=True) as back:
                back.raise_for_status()
                if back.raw.read() != data:  # whole, in one call: the least work requests allows
                    raise RuntimeError(f"instance {uid} read back other bytes")
        return len(data)

    def work() -> dict[str, Any]:
        with ThreadPoolExecutor(concurrency) as pool:
            sizes = list(pool.map(store, names))
        return {"instances": len(sizes), "bytes": sum(sizes)}

    return work


# -- search ---------------------------------------------------------------------------------------


def run_search_worker(spec: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from worker.dicomweb import DicomWebClient
    from worker.http_exchange import build_transport
    from worker.models import DicomStore, SeriesRef
    from worker.settings import Settings

    settings = Settings.from_env()
    client = DicomWebClient(settings, build_transport(settings))
    series = SeriesRef(DicomStore.parse(spec["store"]), spec["study"], spec["series"])

    def work() -> dict[str, Any]:
        instances = client.search_instances(series, int(spec["page_size"]))
        return {"instances": len(instances), "bytes": 0}

    return work


def run_search_bare(spec: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    session = loopback_session()
    url = f"{series_url(spec)}/instances"
    page_size = int(spec["page_size"])

    def work() -> dict[str, Any]:
        offset = count = pages = 0
        while True:  # the worker's sequence of pages: until an empty one
            response = session.get(
                url,
                params={"includefield": QIDO_INCLUDE, "limit": str(page_size), "offset": str(offset)},
                headers={"Accept": "application/dicom+json"},
            )
            response.raise_for_status()
            pages += 1
            page = json.loads(response.content) if response.content.strip() else []
            if not page:
                break
            count += len(page)
            offset += len(page)
        return {"instances": count, "bytes": 0, "pages": pages}

    return work


def run_sweep(spec: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """The worker's sweep of a whole store, end to end: the series listed (QIDO pages) and one search
    request per series published onto REQUEST_TOPIC (the Pub/Sub emulator), every publish waited on."""
    from worker.request import Message
    from worker.settings import Settings
    from worker.wiring import build_worker

    worker = build_worker(Settings.from_env())
    body = {"action": "sweep", "store": spec["store"], "then": {"action": "search"}, "requestId": "bench"}
    message = Message(json.dumps(body).encode(), {}, f"bench-{os.getpid()}")

    def work() -> dict[str, Any]:
        event = worker.handle(message)
        if event is None or event.status != "succeeded":
            raise RuntimeError(f"the sweep did not succeed: {event and event.as_json()}")
        result = event.as_json()
        return {"instances": 0, "bytes": 0, "series": result["seriesCount"], "published": result["published"]}

    return work


# -- the multipart splitter ---------------------------------------------------------------------------


def run_multipart(spec: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """bench/multipart_speed.py's comparison: one part of `size_mib` MiB split, against reading the same
    chunks; both consumers touch every byte (zlib.crc32), with and without a part Content-Length. The
    runs alternate read and split; the ratio is the median of the pairs' ratios."""
    import zlib

    from bench.multipart_speed import MIB, make_stream, paired_times

    size, chunk, runs = int(spec["size_mib"]) * MIB, MIB, int(spec.get("runs", 7))

    def work() -> dict[str, Any]:
        figures: dict[str, Any] = {}
        for content_length in (False, True):
            chunks, block = make_stream(size, chunk, content_length)
            body_crc = read_crc = 0
            for _ in range(size // chunk):
                body_crc = zlib.crc32(block, body_crc)
            for piece in chunks():
                read_crc = zlib.crc32(piece, read_crc)
            read, split, ratio = paired_times(chunks, runs, read_crc, body_crc)
            key = "with_length" if content_length else "without_length"
            figures[key] = {"read": read, "split": split, "ratio": ratio}
        return {"instances": 0, "bytes": size, "figures": figures}

    return work


KINDS: dict[str, Callable[[dict[str, Any]], Callable[[], dict[str, Any]]]] = {
    "worker": run_worker,
    "baseline": run_baseline,
    "ceiling": run_ceiling,
    "stow_ceiling": run_stow_ceiling,
    "search_worker": run_search_worker,
    "search_bare": run_search_bare,
    "multipart": run_multipart,
    "sweep": run_sweep,
}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    result_path = Path(argv[1])
    rss_setup = peak_rss_bytes()
    work = KINDS[spec["kind"]](spec)
    rss_ready = peak_rss_bytes()
    cpu_ready = cpu_seconds()
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    result.update(
        seconds=seconds,
        peak_rss=peak_rss_bytes(),
        rss_before=rss_ready,
        rss_start=rss_setup,
        maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        cpu=cpu_seconds() - cpu_ready,
    )
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
