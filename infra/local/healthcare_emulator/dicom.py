"""DICOM helpers of the emulator: parsing stored instances, DICOM JSON, synthetic instances, transcoding."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG2000 = "1.2.840.10008.1.2.4.91"
ANY_TS = "*"

# The transfer syntaxes a client may ask for in WADO-RS (Google's documented list).
RETRIEVABLE_TS = (EXPLICIT_LE, IMPLICIT_LE, JPEG_BASELINE, JPEG2000_LOSSLESS, JPEG2000, ANY_TS)
UNCOMPRESSED_TS = frozenset({EXPLICIT_LE, IMPLICIT_LE, BIG_ENDIAN, DEFLATED_LE})
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.8.498.1"
IMPLEMENTATION_VERSION = "HCEMU_1"

BULK_THRESHOLD = 1024
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
PIXEL_TAGS = frozenset({"7FE00008", "7FE00009", "7FE00010"})
BULK_MARKER = "@bulkdata:"
CHUNK = 1 << 20

JsonDict = dict[str, Any]


class DicomError(ValueError):
    """An instance the emulator cannot understand."""


class TranscodeError(ValueError):
    """A transfer syntax conversion the emulator cannot do."""


# --------------------------------------------------------------------------------------------------
# Tags and DICOM JSON values


def tag_key(name: str) -> str | None:
    """'PatientName' or '00100010' (any case) -> '00100010'; None when unknown."""
    text = name.strip()
    if len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text):
        return text.upper()
    tag = tag_for_keyword(text)
    return None if tag is None else f"{tag:08X}"


def keyword(key: str) -> str:
    return keyword_for_tag(int(key, 16)) or key


def first_value(attrs: JsonDict, key: str) -> Any:
    """The first value of an attribute of a DICOM JSON object (PN as its Alphabetic string), or None."""
    elem = attrs.get(key)
    if not elem:
        return None
    values = elem.get("Value")
    if not values:
        return None
    value = values[0]
    if isinstance(value, dict) and "Alphabetic" in value:
        return value["Alphabetic"]
    return value


def string_value(attrs: JsonDict, key: str) -> str:
    value = first_value(attrs, key)
    return "" if value is None else str(value)


def ui(value: str) -> JsonDict:
    return {"vr": "UI", "Value": [value]}


def with_bulk_uris(attrs: JsonDict, instance_url: str) -> JsonDict:
    """Replace the bulk data markers of stored DICOM JSON with URIs under the instance's URL."""
    out: JsonDict = {}
    for key, elem in attrs.items():
        uri = elem.get("BulkDataURI")
        if isinstance(uri, str) and uri.startswith(BULK_MARKER):
            out[key] = {"vr": elem["vr"], "BulkDataURI": f"{instance_url}/bulkdata/{uri[len(BULK_MARKER) :]}"}
        elif elem.get("vr") == "SQ" and elem.get("Value"):
            out[key] = {"vr": "SQ", "Value": [with_bulk_uris(item, instance_url) for item in elem["Value"]]}
        else:
            out[key] = elem
    return out


def without_bulk(attrs: JsonDict) -> JsonDict:
    """The attributes of a QIDO answer: everything but bulk data (also inside sequences)."""
    out: JsonDict = {}
    for key, elem in attrs.items():
        if "BulkDataURI" in elem:
            continue
        if elem.get("vr") == "SQ" and elem.get("Value"):
            elem = {"vr": "SQ", "Value": [without_bulk(item) for item in elem["Value"]]}
        out[key] = elem
    return out


# --------------------------------------------------------------------------------------------------
# Parsing stored instances


@dataclass(frozen=True, slots=True)
class ParsedInstance:
    study: str
    series: str
    sop: str
    sop_class: str
    transfer_syntax: str
    attrs: JsonDict


def _json_of(ds: Dataset) -> JsonDict:
    def bulk_handler(elem: DataElement) -> str:
        return f"{BULK_MARKER}{int(elem.tag):08X}"

    out: JsonDict = {}
    for elem in ds:
        tag = int(elem.tag)
        if tag & 0xFFFF == 0:  # group lengths are not part of DICOM JSON
            continue
        key = f"{tag:08X}"
        try:
            if key in PIXEL_TAGS:
                out[key] = {"vr": elem.VR, "BulkDataURI": f"{BULK_MARKER}{key}"}
            else:
                out[key] = elem.to_json_dict(bulk_handler, BULK_THRESHOLD)
        except Exception:  # an attribute pydicom cannot render is left out
            continue
    return dict(sorted(out.items()))


def parse_part10(data: bytes) -> ParsedInstance:
    """Read a DICOM Part 10 instance (bytes as received by STOW-RS)."""
    try:
        ds = dcmread(io.BytesIO(data))
    except Exception as exc:
        raise DicomError(f"not a readable DICOM Part 10 instance: {exc}") from exc
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not ts:
        raise DicomError("the instance has no file meta information with a TransferSyntaxUID")
    missing = [
        k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID") if not ds.get(k)
    ]
    if missing:
        raise DicomError(f"the instance lacks {', '.join(missing)}")
    return ParsedInstance(
        study=str(ds.StudyInstanceUID),
        series=str(ds.SeriesInstanceUID),
        sop=str(ds.SOPInstanceUID),
        sop_class=str(ds.SOPClassUID),
        transfer_syntax=ts,
        attrs=_json_of(ds),
    )


# --------------------------------------------------------------------------------------------------
# Transcoding (only what pydicom does without numpy or codec packages)


def can_transcode(source: str, target: str) -> bool:
    if target in (ANY_TS, source):
        return True
    return target in (EXPLICIT_LE, IMPLICIT_LE) and source in (
        EXPLICIT_LE,
        IMPLICIT_LE,
        DEFLATED_LE,
        RLE_LOSSLESS,
    )


def transcode_message(source: str, target: str) -> str:
    return f"emulator cannot transcode {source} to {target}"


def transcode(data: bytes, target: str) -> bytes:
    """Re-encode one stored instance in `target` (an uncompressed little endian syntax)."""
    ds = dcmread(io.BytesIO(data))
    source = str(ds.file_meta.TransferSyntaxUID)
    if not can_transcode(source, target):
        raise TranscodeError(transcode_message(source, target))
    if target in (ANY_TS, source):
        return data
    if source == RLE_LOSSLESS and "PixelData" in ds:
        from pydicom.pixels.decoders.base import get_decoder

        frames: list[bytes] = []
        info: dict[str, Any] = {}
        for buffer, frame_info in get_decoder(RLE_LOSSLESS).iter_buffer(ds):
            frames.append(bytes(buffer))
            info = dict(frame_info)
        pixels = b"".join(frames)
        if len(pixels) % 2:
            pixels += b"\x00"
        ds.PixelData = pixels
        elem = ds["PixelData"]
        elem.VR = "OB" if int(ds.BitsAllocated) <= 8 else "OW"
        elem.is_undefined_length = False
        if info:
            ds.PhotometricInterpretation = info["photometric_interpretation"]
            if int(info["samples_per_pixel"]) > 1:
                ds.PlanarConfiguration = int(info["planar_configuration"])
    ds.file_meta.TransferSyntaxUID = UID(target)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# --------------------------------------------------------------------------------------------------
# Synthetic instances, generated lazily (nothing per instance is stored but its UID and number)

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
            "00080020": {"vr": "DA", "Value": [self.study_date]},
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


def file_chunks(path: str, chunk: int = CHUNK) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while True:
            data = fh.read(chunk)
            if not data:
                return
            yield data
