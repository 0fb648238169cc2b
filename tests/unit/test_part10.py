"""part10: what a streamed instance names (file meta header, dataset SOP UIDs), read without changing it."""

from __future__ import annotations

import random
import struct
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import pydicom.data
import pytest
from pydicom import Dataset, dcmread
from pydicom.filereader import read_file_meta_info

from worker.models import is_uid
from worker.part10 import (
    MAGIC,
    MAX_META_BYTES,
    PREAMBLE,
    FileMeta,
    PartIdentity,
    peek_identity,
)

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"


def meta_of(data: bytes) -> FileMeta | None:
    """The file meta group that peek_identity reads from the start of a file."""
    return peek_identity(iter([data]))[0].meta


def peek_meta(chunks: Iterator[bytes]) -> tuple[FileMeta | None, Iterator[bytes]]:
    identity, stream = peek_identity(chunks)
    return identity.meta, stream


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


# -- the file meta group ------------------------------------------------------------------------------


def test_every_bundled_part10_file_is_found() -> None:
    assert len(PART10_FILES) > 100
    assert bundled("CT_small.dcm") in PART10_FILES


@pytest.mark.parametrize("path", PART10_FILES, ids=lambda p: p.relative_to(TEST_FILES).as_posix())
def test_meta_agrees_with_pydicom(path: Path) -> None:
    assert meta_of(path.read_bytes()) == pydicom_meta(path)


def test_ct_small_values() -> None:
    meta = meta_of(bundled("CT_small.dcm").read_bytes())
    assert meta is not None

    assert meta.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert meta.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert meta.sop_instance_uid == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"


def test_meta_needs_only_the_header() -> None:
    data = bundled("MR_small.dcm").read_bytes()
    (group_length,) = struct.unpack_from("<I", data, 140)

    assert meta_of(data[: 144 + group_length]) == pydicom_meta(bundled("MR_small.dcm"))


@pytest.mark.parametrize(
    "data",
    [b"", b"DICM", b"\x00" * 128 + b"DICX" + b"\x00" * 100, b"\x00" * 132],
    ids=["empty", "short", "magic", "zeros"],
)
def test_bytes_that_are_not_part10_name_no_instance(data: bytes) -> None:
    assert peek_identity(iter([data]))[0].sop_instance_uid is None


def test_a_cut_header_names_no_instance() -> None:
    data = bundled("CT_small.dcm").read_bytes()

    assert peek_identity(iter([data[:200]]))[0].sop_instance_uid is None


def test_meta_without_group_length() -> None:
    sop = b"1.2.826.0.1.3680043.8.498.1"

    meta = meta_of(part10_without_group_length(sop, 100))

    assert meta == FileMeta("1.2.840.10008.5.1.4.1.1.7", sop.decode(), "1.2.840.10008.1.2.1")


# -- the meta group of a stream -----------------------------------------------------------------


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize("name", NAMED)
def test_peek_returns_the_meta_and_the_unchanged_stream(name: str, size: int) -> None:
    path = bundled(name)
    data = path.read_bytes()

    meta, stream = peek_meta(chunked(data, size))

    assert meta == pydicom_meta(path)
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
    meta, stream = peek_meta(chunked(data, size))

    assert meta is None
    assert b"".join(stream) == data


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_peek_of_a_cut_header_gives_none_and_the_unchanged_stream(size: int) -> None:
    data = bundled("CT_small.dcm").read_bytes()[:300]

    meta, stream = peek_meta(chunked(data, size))

    assert meta is None
    assert b"".join(stream) == data


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize("dataset_bytes", [100, 2 * MAX_META_BYTES])
def test_peek_without_group_length(size: int, dataset_bytes: int) -> None:
    sop = b"1.2.826.0.1.3680043.8.498.2"
    data = part10_without_group_length(sop, dataset_bytes)

    meta, stream = peek_meta(chunked(data, size))

    assert meta is not None
    assert meta.sop_instance_uid == sop.decode()
    assert b"".join(stream) == data


# -- peek_identity: what the bytes name ------------------------------------------------------------

REQUESTED = "1.2.826.0.1.3680043.8.498.1"
OTHER = "1.2.826.0.1.3680043.8.498.2"
DECOY = "1.2.826.0.1.3680043.8.498.3"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_LE_UID = "1.2.840.10008.1.2"
EXPLICIT_LE_UID = "1.2.840.10008.1.2.1"
EXPLICIT_BE_UID = "1.2.840.10008.1.2.2"
DEFLATED_UID = "1.2.840.10008.1.2.1.99"
Encoding = tuple[bool, str]  # (explicit VR, struct byte order)
EXPLICIT_LE: Encoding = (True, "<")
IMPLICIT_LE: Encoding = (False, "<")
EXPLICIT_BE: Encoding = (True, ">")
ENCODINGS = {"explicit-le": EXPLICIT_LE, "implicit-le": IMPLICIT_LE, "explicit-be": EXPLICIT_BE}
TS_OF = {EXPLICIT_LE: EXPLICIT_LE_UID, IMPLICIT_LE: IMPLICIT_LE_UID, EXPLICIT_BE: EXPLICIT_BE_UID}
UNDEFINED = 0xFFFFFFFF


def encoded(tag: tuple[int, int], vr: bytes, value: bytes, enc: Encoding) -> bytes:
    """One element with a defined length, in any of the three encodings."""
    explicit, order = enc
    if len(value) % 2:
        value += b"\x00"
    head = struct.pack(order + "HH", *tag)
    if not explicit:
        return head + struct.pack(order + "I", len(value)) + value
    if vr in (b"OB", b"SQ", b"UN", b"UT"):
        return head + vr + b"\x00\x00" + struct.pack(order + "I", len(value)) + value
    return head + vr + struct.pack(order + "H", len(value)) + value


def undefined_sequence(tag: tuple[int, int], items: list[bytes], enc: Encoding, vr: bytes = b"SQ") -> bytes:
    """A sequence of undefined length whose items have undefined length, with their delimiters."""
    explicit, order = enc
    head = struct.pack(order + "HH", *tag) + (vr + b"\x00\x00" if explicit else b"")
    item_order = "<" if vr == b"UN" else order  # UN of undefined length holds implicit VR LE
    body = b"".join(
        struct.pack(item_order + "HHI", 0xFFFE, 0xE000, UNDEFINED)
        + item
        + struct.pack(item_order + "HHI", 0xFFFE, 0xE00D, 0)
        for item in items
    )
    return (
        head + struct.pack(order + "I", UNDEFINED) + body + struct.pack(item_order + "HHI", 0xFFFE, 0xE0DD, 0)
    )


def meta_group(sop: str, transfer_syntax: str, group_length: int | None = None) -> bytes:
    """A file meta group; its group length is right unless given."""
    elements = (
        encoded((0x0002, 0x0001), b"OB", b"\x00\x01", EXPLICIT_LE)
        + element((0x0002, 0x0002), b"UI", CT_IMAGE.encode())
        + element((0x0002, 0x0003), b"UI", sop.encode())
        + element((0x0002, 0x0010), b"UI", transfer_syntax.encode())
    )
    length = len(elements) if group_length is None else group_length
    return element((0x0002, 0x0000), b"UL", struct.pack("<I", length)) + elements


def dataset(
    sop: str, enc: Encoding = EXPLICIT_LE, before: bytes = b"", sop_value: bytes | None = None
) -> bytes:
    """A dataset naming ``sop``: (0008,0005), ``before`` (tags in (0008,0005)..(0008,0016)), the SOP UIDs,
    then a patient name."""
    return (
        encoded((0x0008, 0x0005), b"CS", b"ISO_IR 100", enc)
        + before
        + encoded((0x0008, 0x0016), b"UI", CT_IMAGE.encode(), enc)
        + encoded((0x0008, 0x0018), b"UI", sop.encode() if sop_value is None else sop_value, enc)
        + encoded((0x0010, 0x0010), b"PN", b"Doe^Jane", enc)
    )


def part10(meta: bytes, body: bytes) -> bytes:
    return b"\x00" * PREAMBLE + MAGIC + meta + body


def identify(data: bytes, size: int | None = None) -> PartIdentity:
    """peek_identity over ``data`` in chunks of ``size`` (one chunk if None); checks the stream."""
    chunks = [data] if size is None else list(chunked(data, size))
    identity, stream = peek_identity(iter(chunks))
    out = list(stream)
    assert b"".join(out) == data
    assert all(a is b for a, b in zip(out, chunks, strict=True)), "the chunks are handed on as they came"
    return identity


@pytest.mark.parametrize("with_meta_elements", [True, False], ids=["meta", "group-length-only"])
def test_zero_group_length_names_the_instance_inside(with_meta_elements: bool) -> None:
    meta = meta_group(OTHER, EXPLICIT_LE_UID, group_length=0)
    if not with_meta_elements:
        meta = meta[:12]
    identity = identify(part10(meta, dataset(OTHER)))

    assert identity.sop_instance_uid == OTHER
    assert identity.dataset_sop_instance_uid == OTHER
    assert identity.meta is not None


def test_peek_meta_reads_the_whole_group_whatever_its_group_length() -> None:
    data = part10(meta_group(OTHER, EXPLICIT_LE_UID, group_length=0), dataset(OTHER))

    meta, stream = peek_meta(iter([data]))

    assert meta == FileMeta(CT_IMAGE, OTHER, EXPLICIT_LE_UID)
    assert b"".join(stream) == data


@pytest.mark.parametrize("enc", [EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE], ids=list(ENCODINGS))
@pytest.mark.parametrize("preamble", [True, False], ids=["preamble-no-meta", "no-preamble"])
def test_a_dataset_without_meta_is_read_from_its_start(enc: Encoding, preamble: bool) -> None:
    body = dataset(OTHER, enc)
    identity = identify(part10(b"", body) if preamble else body)

    assert identity.meta is None
    assert identity.sop_instance_uid == OTHER
    assert identity.sop_class_uid == CT_IMAGE
    assert identity.transfer_syntax_uid is None


def test_a_meta_group_without_preamble_is_read() -> None:
    identity = identify(meta_group(OTHER, IMPLICIT_LE_UID) + dataset(OTHER, IMPLICIT_LE))

    assert identity.meta == FileMeta(CT_IMAGE, OTHER, IMPLICIT_LE_UID)
    assert identity.dataset_sop_instance_uid == OTHER


@pytest.mark.parametrize("enc", [EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE], ids=list(ENCODINGS))
def test_the_meta_transfer_syntax_gives_the_dataset_encoding(enc: Encoding) -> None:
    identity = identify(part10(meta_group(REQUESTED, TS_OF[enc]), dataset(OTHER, enc)))

    assert identity.dataset_sop_instance_uid == OTHER
    assert identity.transfer_syntax_uid == TS_OF[enc]


@pytest.mark.parametrize("enc", [EXPLICIT_LE, IMPLICIT_LE], ids=["explicit-le", "implicit-le"])
@pytest.mark.parametrize("transfer_syntax", ["1.2.840.10008.1.2.4.50", "1.2.3.4.5"], ids=["jpeg", "private"])
def test_compressed_and_private_transfer_syntaxes(enc: Encoding, transfer_syntax: str) -> None:
    """Compressed syntaxes are explicit VR LE; a dataset not in the encoding its syntax says is still read."""
    identity = identify(part10(meta_group(OTHER, transfer_syntax), dataset(OTHER, enc)))

    assert identity.dataset_sop_instance_uid == OTHER
    assert identity.sop_instance_uid == OTHER
    assert identity.transfer_syntax_uid == transfer_syntax


def test_meta_and_dataset_that_disagree_name_no_instance() -> None:
    identity = identify(part10(meta_group(REQUESTED, EXPLICIT_LE_UID), dataset(OTHER)))

    assert identity.meta is not None and identity.meta.sop_instance_uid == REQUESTED
    assert identity.dataset_sop_instance_uid == OTHER
    assert identity.sop_instance_uid is None


def test_a_deflated_dataset_is_not_read() -> None:
    deflate = zlib.compressobj(wbits=-15)
    body = deflate.compress(dataset(OTHER)) + deflate.flush()

    identity = identify(part10(meta_group(REQUESTED, DEFLATED_UID), body))

    assert identity.dataset_sop_instance_uid is None
    assert identity.sop_instance_uid == REQUESTED
    assert identity.transfer_syntax_uid == DEFLATED_UID


@pytest.mark.parametrize("padding", [b"\x00", b" ", b"\x00\x00\x00"], ids=["nul", "space", "nuls"])
def test_padded_uids_are_stripped(padding: bytes) -> None:
    sop = OTHER.encode() + padding
    meta = meta_group(OTHER, EXPLICIT_LE_UID).replace(
        element((0x0002, 0x0003), b"UI", OTHER.encode()), element((0x0002, 0x0003), b"UI", sop)
    )

    identity = identify(part10(meta, dataset(OTHER, sop_value=sop)))

    assert identity.dataset_sop_instance_uid == OTHER
    assert identity.sop_instance_uid == OTHER


@pytest.mark.parametrize(
    "value", [b"1.2.abc", b"1..2", b"1.2.", b" 1.2", b"1." + b"2" * 63, b"\xff\xfe"], ids=str
)
def test_only_valid_uids_count(value: bytes) -> None:
    identity = identify(dataset(OTHER, sop_value=value))

    assert identity.dataset_sop_instance_uid is None
    assert identity.sop_instance_uid is None


def nested(enc: Encoding) -> list[bytes]:
    """Items that hold a (0008,0018) of their own (to be skipped, not read) and a nested sequence."""
    inner = undefined_sequence((0x0008, 0x1140), [encoded((0x0008, 0x1155), b"UI", DECOY.encode(), enc)], enc)
    return [encoded((0x0008, 0x0018), b"UI", DECOY.encode(), enc) + inner, b""]


@pytest.mark.parametrize(
    ("enc", "kind"),
    [(enc, kind) for enc in ENCODINGS.values() for kind in ("SQ", "empty", "defined-item")]
    + [(EXPLICIT_LE, "UN"), (EXPLICIT_BE, "UN")],  # only explicit VR names UN
    ids=str,
)
def test_undefined_length_elements_before_the_uid_are_skipped(enc: Encoding, kind: str) -> None:
    order = enc[1]
    if kind == "SQ":
        sequence = undefined_sequence((0x0008, 0x0006), nested(enc), enc)
    elif kind == "UN":
        sequence = undefined_sequence((0x0008, 0x0006), nested(IMPLICIT_LE), enc, vr=b"UN")
    elif kind == "empty":
        sequence = undefined_sequence((0x0008, 0x0006), [], enc)
    else:  # an undefined-length sequence of one defined-length item
        item = encoded((0x0008, 0x0018), b"UI", DECOY.encode(), enc)
        sequence = undefined_sequence((0x0008, 0x0006), [], enc)
        sequence = (
            sequence[:-8] + struct.pack(order + "HHI", 0xFFFE, 0xE000, len(item)) + item + sequence[-8:]
        )

    identity = identify(part10(meta_group(REQUESTED, TS_OF[enc]), dataset(OTHER, enc, before=sequence)))

    assert identity.dataset_sop_instance_uid == OTHER
    assert identity.sop_instance_uid is None  # disagrees with the meta


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "sequence",
    [
        undefined_sequence((0x0008, 0x0006), [b""], EXPLICIT_LE)[:-8],  # no sequence delimiter
        undefined_sequence((0x0008, 0x0006), [b""], EXPLICIT_LE)[:-16],  # nor item delimiter
        struct.pack("<HH", 0x0008, 0x0006) + b"SQ\x00\x00" + struct.pack("<I", UNDEFINED) + b"\x00" * 64,
    ],
    ids=["no-sequence-end", "no-item-end", "zeros"],
)
def test_an_undefined_length_that_never_ends_gives_none(sequence: bytes) -> None:
    identity = identify(part10(meta_group(REQUESTED, EXPLICIT_LE_UID), dataset(OTHER, before=sequence)))

    assert identity.dataset_sop_instance_uid is None
    assert identity.sop_instance_uid == REQUESTED


@pytest.mark.timeout(10)
def test_deep_nesting_gives_none() -> None:
    sequence = encoded((0x0008, 0x1155), b"UI", DECOY.encode(), EXPLICIT_LE)
    for _ in range(200):
        sequence = undefined_sequence((0x0008, 0x1140), [sequence], EXPLICIT_LE)
    sequence = sequence.replace(struct.pack("<HH", 0x0008, 0x1140), struct.pack("<HH", 0x0008, 0x0006), 1)

    identity = identify(part10(b"", dataset(OTHER, before=sequence)))

    assert identity.dataset_sop_instance_uid is None


def test_tags_out_of_order_give_none() -> None:
    body = encoded((0x0008, 0x0016), b"UI", CT_IMAGE.encode(), EXPLICIT_LE) + dataset(OTHER)

    assert identify(body).dataset_sop_instance_uid is None


@pytest.mark.timeout(20)
def test_garbage_never_raises() -> None:
    rng = random.Random(12)
    heads = [
        bundled("CT_small.dcm").read_bytes()[:2048],
        part10(meta_group(REQUESTED, IMPLICIT_LE_UID), dataset(REQUESTED, IMPLICIT_LE)),
    ]
    for _ in range(3000):
        flipped = bytearray(rng.choice(heads))
        for _ in range(rng.randint(1, 8)):  # flip bytes: lengths, tags, VRs go wrong
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        identity = identify(bytes(flipped[: rng.randrange(len(flipped) + 1)]), rng.choice([None, 1, 13]))
        assert identity.sop_instance_uid is None or is_uid(identity.sop_instance_uid)
    for data in [
        b"\xff" * 70_000,
        b"\x00" * 70_000,
        rng.randbytes(70_000),
        b"\x00" * 128 + b"DICM" + b"\xff" * 1000,
    ]:
        identity = identify(data, 4096)
        assert identity.sop_instance_uid is None


CUT = {
    "ct-small": bundled("CT_small.dcm").read_bytes()[:2048],
    "implicit": part10(meta_group(OTHER, IMPLICIT_LE_UID), dataset(OTHER, IMPLICIT_LE)),
    "sequence": part10(
        meta_group(OTHER, EXPLICIT_LE_UID),
        dataset(OTHER, before=undefined_sequence((0x0008, 0x0006), nested(EXPLICIT_LE), EXPLICIT_LE)),
    ),
    "no-preamble": dataset(OTHER, IMPLICIT_LE),
}


@pytest.mark.parametrize("name", list(CUT))
def test_a_truncated_instance_never_names_another(name: str) -> None:
    """Cut anywhere, the bytes name that instance or none; once the dataset's UID is in, that instance."""
    data = CUT[name]
    full = identify(data)
    assert full.sop_instance_uid is not None
    found = [identify(data[:end]).sop_instance_uid for end in range(len(data))]
    dataset_uid_end = data.rindex(full.sop_instance_uid.encode()) + len(full.sop_instance_uid) + 1

    assert set(found) <= {None, full.sop_instance_uid}
    assert set(found[dataset_uid_end:]) == {full.sop_instance_uid}


@pytest.mark.parametrize("name", list(CUT))
def test_a_split_at_every_position_gives_the_same_identity(name: str) -> None:
    data = CUT[name]
    full = identify(data)
    for at in range(1, min(len(data), 400)):
        identity, stream = peek_identity(iter([data[:at], data[at:]]))
        assert identity == full
        assert b"".join(stream) == data


def test_a_large_first_chunk_is_handed_on_as_it_is() -> None:
    data = part10_without_group_length(OTHER.encode(), 2 * MAX_META_BYTES)
    rest = b"more"

    identity, stream = peek_identity(iter([data, rest]))

    assert identity.sop_instance_uid == OTHER
    first, second = stream
    assert first is data and second is rest


@pytest.mark.parametrize("size", [7, 100, 4096, 1024 * 1024])
def test_peek_reads_at_most_the_window_ahead(size: int) -> None:
    data = part10_without_group_length(OTHER.encode(), 2 * MAX_META_BYTES)
    chunks = Counting(data, size)

    identity, stream = peek_identity(chunks)

    assert identity.sop_instance_uid == OTHER
    assert chunks.taken == max(1, -(-MAX_META_BYTES // size))
    assert b"".join(stream) == data


def test_no_bytes_name_nothing() -> None:
    assert identify(b"") == PartIdentity(None, None)


# -- real files: what pydicom reads ----------------------------------------------------------------

DEFLATED = {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"}


def pydicom_reads(path: Path) -> Dataset | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SC_rgb_jpeg.dcm: explicit VR in its meta, implicit in fact
            return dcmread(path, force=True, specific_tags=["SOPInstanceUID", "SOPClassUID"])
    except Exception:
        return None


def valid(value: object) -> str | None:
    return str(value) if value is not None and is_uid(str(value)) else None


READABLE = {
    path: ds
    for path in sorted(TEST_FILES.rglob("*"))
    if path.is_file() and (ds := pydicom_reads(path)) is not None
}


def test_the_bundled_files_are_found() -> None:
    assert len(READABLE) > 150


@pytest.mark.parametrize("path", list(READABLE), ids=lambda p: p.relative_to(TEST_FILES).as_posix())
def test_the_identity_of_every_bundled_file_agrees_with_pydicom(path: Path) -> None:
    ds = READABLE[path]
    file_meta = getattr(ds, "file_meta", None)
    meta_uid = valid(file_meta.get("MediaStorageSOPInstanceUID")) if file_meta else None
    dataset_uid = valid(ds.get("SOPInstanceUID"))
    if file_meta and file_meta.get("TransferSyntaxUID") in DEFLATED:
        dataset_uid = None  # pydicom inflates; the worker does not
    names = {uid for uid in (meta_uid, dataset_uid) if uid}

    identity = identify(path.read_bytes(), 1024 * 1024)

    assert identity.dataset_sop_instance_uid == dataset_uid
    assert identity.sop_instance_uid == (names.pop() if len(names) == 1 else None)
    if path in PART10_FILES:
        assert identity.meta == pydicom_meta(path)
