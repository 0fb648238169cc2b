"""ChecksummingReader: what it hands on, and the CRC32C and size it reports, match the stream exactly."""

from __future__ import annotations

import base64
import io
import random
from collections.abc import Iterator

import google_crc32c
import pytest

from worker.storage import ChecksummingReader, crc32c_base64

DATA = random.Random(20240601).randbytes(300_000)


def expected_crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode("ascii")


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def read_all(reader: ChecksummingReader, size: int) -> bytes:
    position = reader.tell()
    pieces = []
    while piece := reader.read(size):
        pieces.append(piece)
        position += len(piece)
        assert reader.tell() == position
    return b"".join(pieces)


def test_crc32c_base64_of_the_standard_check_value() -> None:
    """CRC-32C of "123456789" is 0xE3069283 (RFC 3720); GCS gives it base64 of the big-endian bytes."""
    assert crc32c_base64(google_crc32c.Checksum(b"123456789")) == base64.b64encode(
        bytes.fromhex("e3069283")
    ).decode("ascii")


@pytest.mark.parametrize("chunk_size", [1_000, 65_536, 300_000, 1_000_000])
@pytest.mark.parametrize("read_size", [4096, 8 * 1024 * 1024])
def test_crc32c_and_size_match_the_whole_data(chunk_size: int, read_size: int) -> None:
    reader = ChecksummingReader(chunked(DATA, chunk_size))

    assert read_all(reader, read_size) == DATA
    assert reader.size == len(DATA)
    assert reader.crc32c == expected_crc32c(DATA)


@pytest.mark.parametrize("chunk_size", [1, 3, 64])
@pytest.mark.parametrize("read_size", [1, 7, 1000])
def test_small_chunks_and_small_reads(chunk_size: int, read_size: int) -> None:
    data = DATA[:3000]
    reader = ChecksummingReader(chunked(data, chunk_size))

    assert read_all(reader, read_size) == data
    assert reader.size == len(data)
    assert reader.crc32c == expected_crc32c(data)


def test_read_everything_at_once() -> None:
    reader = ChecksummingReader(chunked(DATA, 10_000))

    assert reader.read() == DATA
    assert reader.tell() == len(DATA)
    assert reader.crc32c == expected_crc32c(DATA)


def test_empty_chunks_are_skipped() -> None:
    reader = ChecksummingReader(iter([b"", b"abc", b"", b"", b"def", b""]))

    assert read_all(reader, 2) == b"abcdef"
    assert reader.crc32c == expected_crc32c(b"abcdef")


def test_empty_stream() -> None:
    reader = ChecksummingReader(iter([]))

    assert reader.read(10) == b""
    assert reader.tell() == 0
    assert reader.size == 0
    assert reader.crc32c == expected_crc32c(b"")


def test_read_up_to_crosses_chunk_boundaries() -> None:
    reader = ChecksummingReader(chunked(DATA, 1_000))

    assert reader.read(2_500) == DATA[:2_500]
    assert reader.tell() == 2_500
    assert reader.read(100_000) == DATA[2_500:102_500]
    assert reader.tell() == 102_500


def test_read_up_to_returns_fewer_only_at_the_end() -> None:
    reader = ChecksummingReader(chunked(DATA, 7_000))

    head = reader.read(len(DATA) + 1)

    assert head == DATA
    assert reader.read(10) == b""
    assert reader.size == len(DATA)
    assert reader.crc32c == expected_crc32c(DATA)


def test_read_up_to_then_reading_on_checksums_the_whole_stream() -> None:
    """As Storage.upload does: a head first, the rest streamed after it."""
    reader = ChecksummingReader(chunked(DATA, 65_536))

    head = reader.read(100_001)
    rest = read_all(reader, 8192)

    assert head + rest == DATA
    assert reader.size == len(DATA)
    assert reader.crc32c == expected_crc32c(DATA)


def test_it_is_a_readable_non_seekable_file() -> None:
    reader = ChecksummingReader(chunked(DATA, 1_000))

    assert reader.readable()
    assert not reader.seekable()
    assert not reader.writable()
    with pytest.raises(OSError):
        reader.seek(0)
    assert io.BufferedReader(reader, buffer_size=4096).read() == DATA


def test_rewind_serves_the_head_again_and_checksums_once() -> None:
    reader = ChecksummingReader(iter([DATA[:3000], DATA[3000:7000], DATA[7000:]]))
    head = reader.read(4000)

    reader.rewind(head)

    assert reader.tell() == 0
    assert reader.read(len(DATA) + 1) == DATA
    assert reader.size == len(DATA)
    assert reader.crc32c == base64.b64encode(google_crc32c.Checksum(DATA).digest()).decode()


def test_rewind_takes_exactly_what_was_read() -> None:
    reader = ChecksummingReader(iter([DATA]))
    head = reader.read(10)
    with pytest.raises(ValueError, match="exactly the bytes read so far"):
        reader.rewind(head[:5])


def test_a_whole_chunk_is_handed_on_without_a_copy() -> None:
    chunk = DATA[:100_000]
    reader = ChecksummingReader(iter([chunk, DATA[100_000:200_000]]))

    assert reader.read(100_000) is chunk
    assert reader.read(50_000) == DATA[100_000:150_000]
    assert reader.read(100_000) == DATA[150_000:200_000]
