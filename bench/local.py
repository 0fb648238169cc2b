"""The local stack for the benchmark: fake-gcs-server and the Healthcare API emulator (no Pub/Sub needed).

Also the bench's side of the stack: seeding synthetic series, starting a measurement in a fresh process,
checking and removing what a run wrote, and the CPU time each component spent during a run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from infra.local.stack import (
    PROJECT,
    REPO_ROOT,
    ManagedProcess,
    PubSubEmulator,
    PubSubRest,
    Stack,
    base_env,
    loopback_session,
)

STORE = "projects/local-project/locations/local/datasets/bench/dicomStores/bench"
BUCKET = "bench"
STUDY = "1.2.826.0.1.3680043.8.498.77"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class LatencyProxy(ManagedProcess):
    """bench/latency.py in front of some loopback services: each of them again, `delay_ms` further away."""

    def __init__(self, run_dir: Path, delay_ms: float, upstreams: list[str]) -> None:
        super().__init__(f"latency-{delay_ms:g}ms", run_dir)
        self.delay_ms = delay_ms
        self.upstreams = upstreams
        self.ports: dict[str, int] = {}

    def start(self, timeout: float = 30) -> LatencyProxy:
        ports = [str(urlsplit(url).port) for url in self.upstreams]
        command = [sys.executable, "-m", "bench.latency", "--delay-ms", f"{self.delay_ms:g}", *ports]
        self._spawn(command, base_env({"PYTHONPATH": str(REPO_ROOT)}), REPO_ROOT)
        self.wait_until(self._read_ports, timeout, "listening")
        return self

    def _read_ports(self) -> bool:
        lines = [line for line in self.log_text().splitlines() if line.startswith("{")]
        if lines:
            self.ports = json.loads(lines[-1])
        return bool(self.ports)

    def url(self, upstream: str) -> str:
        """The URL that reaches `upstream` through the delay."""
        parts = urlsplit(upstream)
        return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{self.ports[str(parts.port)]}"))


@dataclass(frozen=True)
class Series:
    study: str
    series: str
    count: int
    size: int

    @property
    def path(self) -> str:
        return f"{STORE}/dicomWeb/studies/{self.study}/series/{self.series}"


@dataclass
class Bench:
    """A running stack plus what the runs need: URLs, the child environment, per-run bookkeeping."""

    stack: Stack
    out_dir: Path
    session: requests.Session = field(default_factory=loopback_session)
    completion_topic: str | None = None  # with the Pub/Sub emulator: where a worker may publish its event
    extra_env: dict[str, str] = field(default_factory=dict)  # --env: for every measurement process
    proxies: dict[float, LatencyProxy] = field(default_factory=dict)
    _counter: int = 0

    @classmethod
    def start(cls, run_dir: Path, out_dir: Path, *, pubsub: bool = False) -> Bench:
        """The stack; the Pub/Sub emulator only when asked for (and available: it needs Java)."""
        stack = Stack(
            run_dir, pubsub=pubsub and PubSubEmulator.available(), gcs=True, healthcare=True, gcs_front=False
        )
        stack.start()
        bench = cls(stack, out_dir)
        stack.create_dicom_store(STORE)
        stack.create_bucket(BUCKET)
        if stack.pubsub is not None:
            bench.completion_topic = PubSubRest(stack.pubsub_url).create_topic("bench-completions")
        return bench

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        self.stack.stop()

    def remote(self, delay_ms: float) -> dict[str, Any]:
        """What a measurement's spec needs to reach fake-gcs-server and the emulator through a delay of
        `delay_ms` each way (a round trip `2 * delay_ms` longer). fake-gcs-server (no front, no
        `-external-url`) names the host a client asked in its resumable session URLs, so every request of
        a resumable upload goes through the delay too."""
        proxy = self.proxies.get(delay_ms)
        if proxy is None:
            upstreams = [self.stack.healthcare_url, self.stack.gcs_url]
            proxy = self.proxies[delay_ms] = LatencyProxy(self.stack.run_dir, delay_ms, upstreams).start()
        healthcare, gcs = proxy.url(self.stack.healthcare_url), proxy.url(self.stack.gcs_url)
        return {
            "healthcare_url": healthcare,
            "gcs_url": gcs,
            "env": {"HEALTHCARE_API_URL": healthcare, "STORAGE_EMULATOR_HOST": gcs},
        }

    # -- environment and components -----------------------------------------------------------------

    def child_env(self, **extra: str) -> dict[str, str]:
        """What a measurement process gets: the worker's settings for the local stack, nothing else."""
        env = base_env(
            {
                "GOOGLE_CLOUD_PROJECT": PROJECT,
                "STORAGE_EMULATOR_HOST": self.stack.gcs_url,
                "HEALTHCARE_API_URL": self.stack.healthcare_url,
                "DICOMWEB_AUTH": "none",
                "DEFAULT_DESTINATION": f"gs://{BUCKET}/bench",
                "PYTHONPATH": str(REPO_ROOT),
            }
        )
        if self.stack.pubsub is not None:
            env["PUBSUB_EMULATOR_HOST"] = self.stack.pubsub_host
        env.update(self.extra_env)
        env.update(extra)
        return env

    def component_pids(self) -> dict[str, int]:
        pids: dict[str, int] = {}
        for name, component in (("gcs", self.stack.gcs), ("emulator", self.stack.healthcare)):
            if component is not None and component.popen is not None:
                pids[name] = component.popen.pid
        for delay_ms, proxy in self.proxies.items():
            if proxy.popen is not None:
                pids[f"proxy {delay_ms:g} ms"] = proxy.popen.pid
        return pids

    def component_cpu(self) -> dict[str, float]:
        return {name: process_cpu_seconds(pid) for name, pid in self.component_pids().items()}

    # -- data ---------------------------------------------------------------------------------------

    def seed(self, count: int, size: int) -> Series:
        series = f"{STUDY}.{uuid.uuid4().int % 10**12}"
        response = self.session.post(
            f"{self.stack.healthcare_admin_url}/emulator/seed",
            json={"store": STORE, "study": STUDY, "series": series, "count": count, "size": size},
            timeout=120,
        )
        response.raise_for_status()
        return Series(STUDY, series, count, size)

    def new_store(self) -> str:
        """A fresh, empty DICOM store (restore writes into it)."""
        return self.stack.create_dicom_store(f"{STORE.rsplit('/', 1)[0]}/r-{uuid.uuid4().hex[:10]}")

    def store_count(self, store: str, series: Series) -> int:
        response = self.session.get(
            f"{self.stack.healthcare_url}/{store}/dicomWeb/studies/{series.study}/series/{series.series}/instances",
            params={"limit": "50000"},
            headers={"Accept": "application/dicom+json"},
            timeout=120,
        )
        response.raise_for_status()
        return 0 if response.status_code == 204 else len(response.json())

    def new_prefix(self, label: str) -> str:
        self._counter += 1
        return f"run-{self._counter:03d}-{label}-{uuid.uuid4().hex[:6]}"

    def listing(self, prefix: str) -> tuple[int, int]:
        """(number, total size) of the .dcm objects under a prefix, from the JSON API."""
        count = size = 0
        token: str | None = None
        while True:
            params = {
                "prefix": prefix + "/",
                "fields": "items(name,size),nextPageToken",
                "maxResults": "1000",
            }
            if token:
                params["pageToken"] = token
            response = self.session.get(
                f"{self.stack.gcs_url}/storage/v1/b/{BUCKET}/o", params=params, timeout=60
            )
            response.raise_for_status()
            body = response.json()
            for item in body.get("items", []):
                if item["name"].endswith(".dcm"):
                    count += 1
                    size += int(item["size"])
            token = body.get("nextPageToken")
            if not token:
                return count, size

    def remove(self, prefix: str) -> None:
        """Drop a run's objects from fake-gcs-server's filesystem backend (it keeps no index in memory),
        so that a full run does not leave tens of GB behind."""
        gcs = self.stack.gcs
        assert gcs is not None
        shutil.rmtree(gcs.data_dir / BUCKET / prefix, ignore_errors=True)

    # -- one measurement ----------------------------------------------------------------------------

    def measure(
        self, spec: dict[str, Any], *, module: str = "bench.measure", timeout: float = 900
    ) -> dict[str, Any]:
        """Run one measurement in a fresh process; its result plus the components' CPU and the wall time."""
        spec = {
            "healthcare_url": self.stack.healthcare_url,
            "gcs_url": self.stack.gcs_url,
            "store": STORE,
            "bucket": BUCKET,
            **spec,
        }
        kind = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec["kind"])
        tag = f"{self._counter:03d}-{kind}-{uuid.uuid4().hex[:6]}"
        result_path = self.out_dir / "runs" / f"{tag}.json"
        log_path = self.out_dir / "runs" / f"{tag}.log"
        result_path.parent.mkdir(parents=True, exist_ok=True)
        env = self.child_env(**spec.pop("env", {}))
        before = self.component_cpu()
        started = time.perf_counter()
        with log_path.open("w") as log:
            completed = subprocess.run(
                [sys.executable, "-m", module, json.dumps(spec), str(result_path)],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        wall = time.perf_counter() - started
        if completed.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"measurement {spec['kind']} failed (exit {completed.returncode}):\n{tail}")
        result: dict[str, Any] = json.loads(result_path.read_text())
        after = self.component_cpu()
        result["component_cpu"] = {name: after[name] - before.get(name, 0.0) for name in after}
        result["wall"] = wall
        result["log"] = str(log_path)
        return result
