"""DICOM helpers of the emulator: parsing stored instances, DICOM JSON, transcoding (synthetic instances are
in ``seed``)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
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


def file_chunks(path: str, chunk: int = CHUNK) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while True:
            data = fh.read(chunk)
            if not data:
                return
            yield data
