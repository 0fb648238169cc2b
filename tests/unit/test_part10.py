"""part10: the file meta header of real DICOM files, read from a stream without changing it."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pydicom.data
import pytest
from pydicom.filereader import read_file_meta_info

from worker.part10 import MAX_META_BYTES, FileMeta, NotPart10Error, parse_file_meta, peek_file_meta

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
PART10_FILES = sorted(
    path for path in TEST_FILES.rglob("*") if path.is_file() and path.read_bytes()[128:132] == b"DICM"
)
NAMED = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm", "ExplVR_BigEnd.dcm"]
CHUNK_SIZES = [1, 7, 100, 1024 * 1024]


def bundled(name: str) -> Path:
    path = pydicom.data.get_testdata_file(name, download=False)
    assert isinstance(path, str), f"{name} is not bundled with pydicom"
    return Path(path)


def pydicom_meta(path: Path) -> FileMeta:
    meta = read_file_meta_info(path)

    def value(keyword: str) -> str | None:
        found = meta.get(keyword)
        return str(found) if found is not None else None

    return FileMeta(
        value("MediaStorageSOPClassUID"), value("MediaStorageSOPInstanceUID"), value("TransferSyntaxUID")
    )


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class Counting:
    """A chunk iterator that counts how many chunks were taken from it."""

    def __init__(self, data: bytes, size: int) -> None:
        self._chunks = chunked(data, size)
        self.taken = 0

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._chunks)
        self.taken += 1
        return chunk


def element(tag: tuple[int, int], vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HH", *tag) + vr + struct.pack("<H", len(value)) + value


def part10_without_group_length(sop: bytes, dataset_bytes: int) -> bytes:
    """A Part 10 file whose meta group has no (0002,0000) group length, followed by a dataset."""
    meta = (
        element((0x0002, 0x0002), b"UI", b"1.2.840.10008.5.1.4.1.1.7")
        + element((0x0002, 0x0003), b"UI", sop)
        + element((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2.1")
    )
    dataset = element((0x0008, 0x0018), b"UI", sop) + element((0x0010, 0x0010), b"PN", b"X" * 40)
    dataset += element((0x0011, 0x0010), b"LO", b"pad") * (dataset_bytes // 12)
    return b"\x00" * 128 + b"DICM" + meta + dataset


# -- parse_file_meta ------------------------------------------------------------------------------


def test_every_bundled_part10_file_is_found() -> None:
    assert len(PART10_FILES) > 100
    assert bundled("CT_small.dcm") in PART10_FILES


@pytest.mark.parametrize("path", PART10_FILES, ids=lambda p: p.relative_to(TEST_FILES).as_posix())
def test_parse_file_meta_agrees_with_pydicom(path: Path) -> None:
    assert parse_file_meta(path.read_bytes()) == pydicom_meta(path)


def test_ct_small_values() -> None:
    meta = parse_file_meta(bundled("CT_small.dcm").read_bytes())

    assert meta.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert meta.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert meta.sop_instance_uid == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"


def test_parse_file_meta_needs_only_the_header() -> None:
    data = bundled("MR_small.dcm").read_bytes()
    (group_length,) = struct.unpack_from("<I", data, 140)

    assert parse_file_meta(data[: 144 + group_length]) == pydicom_meta(bundled("MR_small.dcm"))


@pytest.mark.parametrize(
    "data",
    [b"", b"DICM", b"\x00" * 128 + b"DICX" + b"\x00" * 100, b"\x00" * 132],
    ids=["empty", "short", "magic", "zeros"],
)
def test_parse_file_meta_refuses_non_part10(data: bytes) -> None:
    with pytest.raises(NotPart10Error, match="no DICM prefix"):
        parse_file_meta(data)


def test_parse_file_meta_refuses_a_cut_header() -> None:
    data = bundled("CT_small.dcm").read_bytes()

    with pytest.raises(NotPart10Error, match="cut short"):
        parse_file_meta(data[:200])


def test_parse_file_meta_without_group_length() -> None:
    sop = b"1.2.826.0.1.3680043.8.498.1"

    meta = parse_file_meta(part10_without_group_length(sop, 100))

    assert meta == FileMeta("1.2.840.10008.5.1.4.1.1.7", sop.decode(), "1.2.840.10008.1.2.1")


# -- peek_file_meta -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize("name", NAMED)
def test_peek_returns_the_meta_and_the_unchanged_stream(name: str, size: int) -> None:
    path = bundled(name)
    data = path.read_bytes()

    meta, stream = peek_file_meta(chunked(data, size))

    assert meta == pydicom_meta(path)
    assert b"".join(stream) == data


@pytest.mark.parametrize("size", [7, 100, 4096])
def test_peek_reads_only_the_first_chunks(size: int) -> None:
    data = bundled("CT_small.dcm").read_bytes()
    chunks = Counting(data, size)

    meta, stream = peek_file_meta(chunks)

    assert meta is not None
    assert chunks.taken * size < min(len(data), 1024 + size)
    assert b"".join(stream) == data


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not dicom",
        b"not dicom at all " * 1000,
        b"\x00" * 128 + b"DICX" + b"\x02\x00" * 500,
        (TEST_FILES / "no_meta.dcm").read_bytes(),
    ],
    ids=["empty", "short", "text", "wrong-magic", "no-meta"],
)
def test_non_part10_bytes_give_none_and_the_unchanged_stream(data: bytes, size: int) -> None:
    meta, stream = peek_file_meta(chunked(data, size))

    assert meta is None
    assert b"".join(stream) == data


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_peek_of_a_cut_header_gives_none_and_the_unchanged_stream(size: int) -> None:
    data = bundled("CT_small.dcm").read_bytes()[:300]

    meta, stream = peek_file_meta(chunked(data, size))

    assert meta is None
    assert b"".join(stream) == data


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize("dataset_bytes", [100, 2 * MAX_META_BYTES])
def test_peek_without_group_length(size: int, dataset_bytes: int) -> None:
    sop = b"1.2.826.0.1.3680043.8.498.2"
    data = part10_without_group_length(sop, dataset_bytes)

    meta, stream = peek_file_meta(chunked(data, size))

    assert meta is not None
    assert meta.sop_instance_uid == sop.decode()
    assert b"".join(stream) == data
