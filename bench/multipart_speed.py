"""Time worker.multipart on one large part, against just iterating over the same chunks.

The body is one part of ``--size-mib`` MiB fed in ``--chunk-mib`` MiB chunks from memory (one random block
repeated; the chunks are cut across the part's start and end like a network stream, not aligned on it).
Each timing is the median of ``--runs`` runs, for a part with and without Content-Length, with two
consumers of the bytes: none (only counting them) and zlib.crc32 (touching every byte once, as an upload
computing a checksum does). Run: ``.venv/bin/python bench/multipart_speed.py``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.multipart import iter_parts

BOUNDARY = "bench-boundary-0123456789"
MIB = 1024 * 1024


def make_stream(size: int, chunk: int, content_length: bool) -> tuple[Callable[[], Iterator[bytes]], bytes]:
    """A factory of chunk iterators over ``--B CRLF headers CRLF CRLF body CRLF --B-- CRLF``, where the
    body is ``size // chunk`` copies of the returned block."""
    count = size // chunk
    block = random.Random(0).randbytes(chunk)
    headers = "Content-Type: application/dicom; transfer-syntax=*\r\n"
    if content_length:
        headers += f"Content-Length: {count * chunk}\r\n"
    head = f"--{BOUNDARY}\r\n{headers}\r\n".encode()
    trailer = f"\r\n--{BOUNDARY}--\r\n".encode()
    cut = chunk - len(head)
    first = head + block[:cut]  # every chunk is `chunk` bytes, shifted by the header length
    middle = block[cut:] + block[:cut]
    last = block[cut:] + trailer
    assert f"\r\n--{BOUNDARY}".encode() not in middle + middle

    def chunks() -> Iterator[bytes]:
        yield first
        for _ in range(count - 1):
            yield middle
        yield last

    return chunks, block


def consume(source: Callable[[], Iterator[bytes]], split: bool, crc: bool) -> int:
    """Total length of the source's chunks (of its part's body if ``split``), or their crc32 if ``crc``."""
    chunks = split_chunks(source()) if split else source()
    if not crc:
        return sum(len(c) for c in chunks)
    value = 0
    for c in chunks:
        value = zlib.crc32(c, value)
    return value


def split_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    for part in iter_parts(chunks, BOUNDARY):
        yield from part.iter_chunks()


def median_time(
    source: Callable[[], Iterator[bytes]], split: bool, crc: bool, runs: int, expect: int
) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = consume(source, split, crc)
        times.append(time.perf_counter() - start)
        assert result == expect, (result, expect)
    return statistics.median(times)


def paired_times(
    source: Callable[[], Iterator[bytes]], runs: int, expect_read: int, expect_split: int
) -> tuple[float, float, float]:
    """Read and split `runs` times each, alternating which goes first, with a crc32 consumer: the
    median read and split times and the median of the per-pair ratios (what a noisy machine's load
    moves least)."""
    reads: list[float] = []
    splits: list[float] = []
    for run in range(runs):
        for split in (run % 2 == 1, run % 2 == 0):
            start = time.perf_counter()
            result = consume(source, split, True)
            (splits if split else reads).append(time.perf_counter() - start)
            assert result == (expect_split if split else expect_read), (result, split)
    ratios = [s / r for s, r in zip(splits, reads, strict=True)]
    return statistics.median(reads), statistics.median(splits), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size, chunk = args.size_mib * MIB, args.chunk_mib * MIB
    count = size // chunk

    python = sys.version.split()[0]
    print(
        f"one part of {size // MIB} MiB in {chunk // MIB} MiB chunks, median of {args.runs} runs, {python=}"
    )
    for content_length in (False, True):
        chunks, block = make_stream(size, chunk, content_length)
        for crc in (False, True):
            body_crc = 0
            for _ in range(count):
                body_crc = zlib.crc32(block, body_crc)
            t_base = median_time(chunks, False, crc, args.runs, consume(chunks, False, crc))
            t_split = median_time(chunks, True, crc, args.runs, body_crc if crc else size)
            label = "with Content-Length   " if content_length else "without Content-Length"
            print(
                f"{label}  consumer={'crc32' if crc else 'count':5}  iterate {t_base:8.4f} s   "
                f"split {t_split:8.4f} s ({size / t_split / 1e9:6.2f} GB/s)   ratio {t_split / t_base:8.2f}"
            )


if __name__ == "__main__":
    main()
