"""Just enough of DICOM Part 10 to name a streamed instance: what its first bytes say it is.

A RetrieveSeries part carries no SOP Instance UID in its headers, and a server may answer with another
instance than the one asked for, so an instance is named by its own bytes: the file meta group
(0002,xxxx) and the dataset's SOP Instance UID (0008,0018), both within the first few hundred bytes.
Reading them needs no DICOM library, and never touches patient attributes: the dataset's elements are
walked only up to (0008,0018), their values skipped, and patient attributes come after it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from worker.models import is_uid

PREAMBLE = 128
MAGIC = b"DICM"
#: The bytes read ahead to name an instance: preamble, meta group and dataset up to (0008,0018).
MAX_META_BYTES = 64 * 1024

_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())  # 4-byte length
_VRS = _LONG_VRS | frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split())
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_SOP_CLASS, _SOP_INSTANCE = 0x00080016, 0x00080018
_MAX_DEPTH = 16  # nested undefined-length sequences skipped before giving up


class _Malformed(Exception):
    """The bytes are not well-formed elements (or end too soon): this source names nothing."""


@dataclass(frozen=True)
class FileMeta:
    """The file meta group's values as sent (padding stripped), not validated."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    transfer_syntax_uid: str | None


@dataclass(frozen=True)
class PartIdentity:
    """What an instance's first bytes say it is. Only valid UIDs count (see :func:`worker.models.is_uid`)."""

    meta: FileMeta | None  # the file meta group, when it parses
    dataset_sop_instance_uid: str | None  # (0008,0018) read from the dataset itself, when it can be
    dataset_sop_class_uid: str | None = None  # (0008,0016), read with it

    @property
    def sop_instance_uid(self) -> str | None:
        """The one SOP Instance UID the bytes name: None when they name none, or two different ones."""
        named = {self._meta_uid("sop_instance_uid"), self.dataset_sop_instance_uid} - {None}
        return named.pop() if len(named) == 1 else None

    @property
    def sop_class_uid(self) -> str | None:
        """(0002,0002), else (0008,0016) from the dataset."""
        return self._meta_uid("sop_class_uid") or self.dataset_sop_class_uid

    @property
    def transfer_syntax_uid(self) -> str | None:
        """(0002,0010): the dataset's encoding as the meta states it."""
        return self._meta_uid("transfer_syntax_uid")

    def _meta_uid(self, field: str) -> str | None:
        value = getattr(self.meta, field) if self.meta is not None else None
        return value if is_uid(value) else None


@dataclass(frozen=True)
class _Encoding:
    explicit: bool  # explicit VR
    order: str  # struct byte order


_EXPLICIT_LE = _Encoding(True, "<")
_IMPLICIT_LE = _Encoding(False, "<")
_EXPLICIT_BE = _Encoding(True, ">")
_DEFLATED = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205"})
#: The encodings the transfer syntax names that are not explicit VR little endian.
_ENCODING_OF = {"1.2.840.10008.1.2": _IMPLICIT_LE, "1.2.840.10008.1.2.2": _EXPLICIT_BE}


def peek_identity(chunks: Iterator[bytes]) -> tuple[PartIdentity, Iterator[bytes]]:
    """Name a streamed instance from its first MAX_META_BYTES; return that and the unchanged stream.

    Reads chunks until MAX_META_BYTES are in (or the stream ends), so it reads at most one chunk more
    than that; the returned iterator yields every chunk as it came, the peeked ones first. Never raises
    on the bytes: what cannot be read is None.
    """
    head: list[bytes] = []
    size = 0
    for chunk in chunks:
        head.append(chunk)
        size += len(chunk)
        if size >= MAX_META_BYTES:
            break
    window = head[0] if len(head) == 1 else b"".join(head)
    identity = _identify(memoryview(window)[:MAX_META_BYTES])
    return identity, _chain(head, chunks)


def _identify(data: memoryview) -> PartIdentity:
    """The meta group after the DICM prefix (or at 0 without one), then the dataset after it."""
    start = PREAMBLE + len(MAGIC) if data[PREAMBLE : PREAMBLE + len(MAGIC)] == MAGIC else 0
    meta: FileMeta | None
    try:
        meta, dataset = _read_meta(data, start)
    except _Malformed:
        meta, dataset = None, start
    transfer_syntax = meta.transfer_syntax_uid if meta is not None else None
    if transfer_syntax in _DEFLATED:
        return PartIdentity(meta, None)
    # The syntax's encoding first; then, as a file may not be what its meta says, the others in turn.
    first = _ENCODING_OF.get(transfer_syntax or "", _EXPLICIT_LE)
    for encoding in dict.fromkeys((first, _EXPLICIT_LE, _IMPLICIT_LE, _EXPLICIT_BE)):
        try:
            sop_class, sop_instance = _read_sop_uids(data, dataset, encoding)
        except _Malformed:
            continue
        return PartIdentity(meta, sop_instance, sop_class)
    return PartIdentity(meta, None)


def _read_meta(data: memoryview, pos: int) -> tuple[FileMeta, int]:
    """The group 0002 elements at ``pos`` (whatever its group length says) and where they end."""
    values: dict[int, str] = {}
    start = pos
    while pos + 2 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 0x0002:
        tag, _, length, value = _header(data, pos, _EXPLICIT_LE)
        if length == _UNDEFINED or value + length > len(data):
            raise _Malformed
        pos = value + length
        if tag in (0x00020002, 0x00020003, 0x00020010):
            values[tag] = bytes(data[value:pos]).rstrip(b"\x00 ").decode("ascii", "replace")
    if pos == start:
        raise _Malformed
    return FileMeta(values.get(0x00020002), values.get(0x00020003), values.get(0x00020010)), pos


def _read_sop_uids(data: memoryview, pos: int, encoding: _Encoding) -> tuple[str | None, str | None]:
    """(0008,0016) and (0008,0018) of the dataset at ``pos``: _Malformed unless (0008,0018) is there and
    every element before it is well formed (tags ascending, lengths within the bytes)."""
    sop_class = None
    previous = -1
    while pos < len(data):
        tag, vr, length, value = _header(data, pos, encoding)
        if tag <= previous or tag > _SOP_INSTANCE:
            break
        previous = tag
        pos = _skip(data, vr, length, value, encoding, 0)
        if tag == _SOP_CLASS:
            sop_class = _uid(data[value:pos])
        elif tag == _SOP_INSTANCE:
            return sop_class, _uid(data[value:pos])
    raise _Malformed


def _header(data: memoryview, pos: int, encoding: _Encoding) -> tuple[int, bytes, int, int]:
    """The tag, VR (b"" when implicit, and for items), value length and value offset of an element."""
    if pos + 8 > len(data):
        raise _Malformed
    group, element, length = struct.unpack_from(encoding.order + "HHI", data, pos)
    if not encoding.explicit or group == 0xFFFE:
        return group << 16 | element, b"", length, pos + 8
    vr = bytes(data[pos + 4 : pos + 6])
    if vr not in _VRS:
        raise _Malformed
    if vr not in _LONG_VRS:
        (length,) = struct.unpack_from(encoding.order + "H", data, pos + 6)
        return group << 16 | element, vr, length, pos + 8
    if pos + 12 > len(data):
        raise _Malformed
    (length,) = struct.unpack_from(encoding.order + "I", data, pos + 8)
    return group << 16 | element, vr, length, pos + 12


def _skip(data: memoryview, vr: bytes, length: int, pos: int, encoding: _Encoding, depth: int) -> int:
    """Where the value at ``pos`` ends; an undefined length is walked item by item to its delimiter."""
    if length != _UNDEFINED:
        if pos + length > len(data):
            raise _Malformed
        return pos + length
    if depth >= _MAX_DEPTH:
        raise _Malformed
    inner = _IMPLICIT_LE if vr == b"UN" else encoding  # UN of undefined length holds implicit VR LE
    while True:
        tag, _, length, pos = _header(data, pos, inner)
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise _Malformed
        if length != _UNDEFINED:
            pos = _skip(data, b"", length, pos, inner, depth)
            continue
        while True:  # the item's elements, to its delimiter
            tag, vr, length, pos = _header(data, pos, inner)
            if tag == _ITEM_END:
                break
            pos = _skip(data, vr, length, pos, inner, depth + 1)


def _uid(value: memoryview) -> str | None:
    text = bytes(value).rstrip(b"\x00 ").decode("ascii", "replace")
    return text if is_uid(text) else None


def _chain(head: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    """The peeked chunks, each let go of once handed on, then the rest."""
    head.reverse()
    while head:
        yield head.pop()
    yield from rest
