"""Just enough of DICOM Part 10 to name a streamed instance: its file meta information header.

A RetrieveSeries part carries no SOP Instance UID in its headers, so the object name comes from the
file meta group (0002,xxxx), which is always explicit VR little endian and sits in the first few hundred
bytes. Reading it needs no DICOM library and never touches patient attributes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

PREAMBLE = 128
MAGIC = b"DICM"
MAX_META_BYTES = 64 * 1024
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


class NotPart10Error(ValueError):
    """The bytes do not start with a DICOM Part 10 file meta header."""


@dataclass(frozen=True)
class FileMeta:
    sop_class_uid: str | None
    sop_instance_uid: str | None
    transfer_syntax_uid: str | None


def parse_file_meta(data: bytes) -> FileMeta:
    """Parse the file meta group from the start of a Part 10 file (raises NotPart10Error)."""
    if len(data) < PREAMBLE + 4 or data[PREAMBLE : PREAMBLE + 4] != MAGIC:
        raise NotPart10Error("no DICM prefix")
    values: dict[int, str] = {}
    offset = PREAMBLE + 4
    while offset + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, offset)
        if group != 0x0002:
            break
        vr = data[offset + 4 : offset + 6]
        if vr in _LONG_VRS:
            if offset + 12 > len(data):
                break
            (length,) = struct.unpack_from("<I", data, offset + 8)
            start = offset + 12
        else:
            (length,) = struct.unpack_from("<H", data, offset + 6)
            start = offset + 8
        if start + length > len(data):
            raise NotPart10Error("file meta header is cut short")
        if element in (0x0002, 0x0003, 0x0010):
            values[element] = data[start : start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        offset = start + length
    return FileMeta(values.get(0x0002), values.get(0x0003), values.get(0x0010))


def peek_file_meta(chunks: Iterator[bytes]) -> tuple[FileMeta | None, Iterator[bytes]]:
    """Read just enough chunks to parse the file meta header; return it and the unchanged byte stream.

    Returns None for the header when the bytes are not Part 10 (the stream is returned all the same).
    """
    head = b""
    for chunk in chunks:
        head += chunk  # at most a few chunks: the loop ends once the header is in
        if len(head) < PREAMBLE + 16:
            continue
        needed = _meta_end(head)
        if needed is None or len(head) >= needed:
            break
    else:
        needed = _meta_end(head) if len(head) >= PREAMBLE + 16 else None
    meta = None
    if needed is not None:
        try:
            meta = parse_file_meta(head[:needed])
        except NotPart10Error:
            meta = None
    return meta, _chain([head], chunks)


def _meta_end(data: bytes) -> int | None:
    """Where the meta group ends (from its group length (0002,0000) when present); None if not Part 10."""
    if data[PREAMBLE : PREAMBLE + 4] != MAGIC:
        return None
    group, element = struct.unpack_from("<HH", data, PREAMBLE + 4)
    if (group, element) != (0x0002, 0x0000):
        return MAX_META_BYTES
    length: int = struct.unpack_from("<I", data, PREAMBLE + 12)[0]
    return min(PREAMBLE + 16 + length, MAX_META_BYTES)


def _chain(head: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    yield from head
    yield from rest
