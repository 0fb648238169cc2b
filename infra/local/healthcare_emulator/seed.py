"""Synthetic instances of the emulator's seed, generated lazily: nothing per instance is stored but its UID
and number, and the bytes are generated on retrieve (deterministic)."""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from .dicom import (
    BULK_MARKER,
    CHUNK,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION,
    IMPLICIT_LE,
    SECONDARY_CAPTURE,
    UNCOMPRESSED_TS,
    JsonDict,
    ui,
)

_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"})
_PATTERN = bytes(range(256)) * (CHUNK // 256 + 1)


def _padded(text: str, vr: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) % 2:
        raw += b"\x00" if vr == "UI" else b" "
    return raw


def _even_len(text: str) -> int:
    return len(text) + (len(text) % 2)


def _explicit(tag: int, vr: str, value: bytes) -> bytes:
    group, element = tag >> 16, tag & 0xFFFF
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, element, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr.encode(), len(value)) + value


def _implicit(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def _item(length: int, tag: int = 0xFFFEE000) -> bytes:
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length)


def derived_sop_uid(series: str, index: int) -> str:
    """`{series}.{index}` when it fits in 64 characters, else a 2.25 UID derived from both."""
    uid = f"{series}.{index}"
    if len(uid) <= 64:
        return uid
    digest = hashlib.sha256(f"{series}/{index}".encode()).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


@dataclass(slots=True)
class SeedTemplate:
    """One seeded batch: the shared attributes; bytes are generated on retrieve."""

    study: str
    series: str
    transfer_syntax: str
    pixel_bytes: int
    modality: str = "OT"
    study_date: str = "20240101"
    patient_name: str = "EMULATOR^SEED"
    patient_id: str = "SEED"
    sop_class: str = SECONDARY_CAPTURE
    rows: int = 0
    columns: int = 0
    frames: int = 1
    _fixed_size: int = 0
    _variants: dict[str, SeedTemplate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        total = max(2, self.pixel_bytes + self.pixel_bytes % 2)
        if total <= 64 * 65534:
            self.columns, self.rows, self.frames = 64, max(1, -(-total // 64)), 1
        else:
            self.columns, self.rows = 512, 512
            self.frames = -(-total // (512 * 512))
        self.pixel_bytes = self.columns * self.rows * self.frames
        sample_sop, sample_number = "1.2", 1
        variable = 2 * _even_len(sample_sop) + _even_len(str(sample_number))
        self._fixed_size = len(self.header(sample_sop, sample_number)) - variable

    @property
    def encapsulated(self) -> bool:
        return self.transfer_syntax not in UNCOMPRESSED_TS

    def size(self, sop: str, number: int) -> int:
        """Exact byte size of the instance, without generating it."""
        variable = 2 * _even_len(sop) + _even_len(str(number))
        pixel = self.pixel_bytes
        if self.encapsulated:
            pixel += 8 * self.frames + 8  # fragment item headers and the sequence delimiter
        return self._fixed_size + variable + pixel

    def attrs(self) -> JsonDict:
        """The attributes shared by every instance of the batch (DICOM JSON)."""
        out: JsonDict = {
            "00080016": ui(self.sop_class),
            "00080020": {"vr": "DA", "Value": [self.study_date]} if self.study_date else {"vr": "DA"},
            "00080060": {"vr": "CS", "Value": [self.modality]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": self.patient_name}]},
            "00100020": {"vr": "LO", "Value": [self.patient_id]},
            "0020000D": ui(self.study),
            "0020000E": ui(self.series),
            "00200011": {"vr": "IS", "Value": [1]},
            "00280002": {"vr": "US", "Value": [1]},
            "00280004": {"vr": "CS", "Value": ["MONOCHROME2"]},
            "00280010": {"vr": "US", "Value": [self.rows]},
            "00280011": {"vr": "US", "Value": [self.columns]},
            "00280100": {"vr": "US", "Value": [8]},
            "00280101": {"vr": "US", "Value": [8]},
            "00280102": {"vr": "US", "Value": [7]},
            "00280103": {"vr": "US", "Value": [0]},
            "7FE00010": {"vr": "OB", "BulkDataURI": f"{BULK_MARKER}7FE00010"},
        }
        if self.frames > 1:
            out["00280008"] = {"vr": "IS", "Value": [self.frames]}
        return dict(sorted(out.items()))

    def variant(self, transfer_syntax: str) -> SeedTemplate:
        """The same batch encoded in another uncompressed syntax (the emulator's 'transcoding')."""
        if transfer_syntax == self.transfer_syntax:
            return self
        if transfer_syntax not in self._variants:
            self._variants[transfer_syntax] = SeedTemplate(
                study=self.study,
                series=self.series,
                transfer_syntax=transfer_syntax,
                pixel_bytes=self.pixel_bytes,
                modality=self.modality,
                study_date=self.study_date,
                patient_name=self.patient_name,
                patient_id=self.patient_id,
                sop_class=self.sop_class,
            )
        return self._variants[transfer_syntax]

    def header(self, sop: str, number: int) -> bytes:
        """File preamble, meta and data set up to and including the Pixel Data element header."""
        meta = b"".join(
            [
                _explicit(0x00020001, "OB", b"\x00\x01"),
                _explicit(0x00020002, "UI", _padded(self.sop_class, "UI")),
                _explicit(0x00020003, "UI", _padded(sop, "UI")),
                _explicit(0x00020010, "UI", _padded(self.transfer_syntax, "UI")),
                _explicit(0x00020012, "UI", _padded(IMPLEMENTATION_CLASS_UID, "UI")),
                _explicit(0x00020013, "SH", _padded(IMPLEMENTATION_VERSION, "SH")),
            ]
        )
        meta = _explicit(0x00020000, "UL", struct.pack("<I", len(meta))) + meta
        elements: list[tuple[int, str, bytes]] = [
            (0x00080016, "UI", _padded(self.sop_class, "UI")),
            (0x00080018, "UI", _padded(sop, "UI")),
            (0x00080020, "DA", _padded(self.study_date, "DA")),
            (0x00080060, "CS", _padded(self.modality, "CS")),
            (0x00100010, "PN", _padded(self.patient_name, "PN")),
            (0x00100020, "LO", _padded(self.patient_id, "LO")),
            (0x0020000D, "UI", _padded(self.study, "UI")),
            (0x0020000E, "UI", _padded(self.series, "UI")),
            (0x00200011, "IS", _padded("1", "IS")),
            (0x00200013, "IS", _padded(str(number), "IS")),
            (0x00280002, "US", struct.pack("<H", 1)),
            (0x00280004, "CS", _padded("MONOCHROME2", "CS")),
        ]
        if self.frames > 1:
            elements.append((0x00280008, "IS", _padded(str(self.frames), "IS")))
        elements += [
            (0x00280010, "US", struct.pack("<H", self.rows)),
            (0x00280011, "US", struct.pack("<H", self.columns)),
            (0x00280100, "US", struct.pack("<H", 8)),
            (0x00280101, "US", struct.pack("<H", 8)),
            (0x00280102, "US", struct.pack("<H", 7)),
            (0x00280103, "US", struct.pack("<H", 0)),
        ]
        implicit = self.transfer_syntax == IMPLICIT_LE
        body = b"".join(_implicit(t, v) if implicit else _explicit(t, vr, v) for t, vr, v in elements)
        if self.encapsulated:
            pixel_header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + _item(0)
        elif implicit:
            pixel_header = struct.pack("<HHI", 0x7FE0, 0x0010, self.pixel_bytes)
        else:
            pixel_header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, self.pixel_bytes)
        return b"\x00" * 128 + b"DICM" + meta + body + pixel_header

    def stream(self, sop: str, number: int, chunk: int = CHUNK) -> Iterator[bytes]:
        """The instance's bytes, deterministic for a given SOP UID, in chunks of at most `chunk` bytes."""
        yield self.header(sop, number)
        offset = zlib.crc32(sop.encode()) & 0xFF
        if not self.encapsulated:
            yield from _pattern(offset, self.pixel_bytes, chunk)
            return
        per_frame = self.pixel_bytes // self.frames
        for _ in range(self.frames):
            yield _item(per_frame)
            yield from _pattern(offset, per_frame, chunk)
        yield _item(0, 0xFFFEE0DD)

    def read(self, sop: str, number: int) -> bytes:
        return b"".join(self.stream(sop, number))


def _pattern(offset: int, length: int, chunk: int) -> Iterator[bytes]:
    remaining = length
    while remaining > 0:
        size = min(chunk, remaining, CHUNK)
        yield _PATTERN[offset : offset + size]
        remaining -= size
