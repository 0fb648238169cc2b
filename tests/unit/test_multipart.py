"""Tests of worker.multipart: the streaming, byte-exact multipart/related parser."""

from __future__ import annotations

import random
import re
import string
import tracemalloc
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pytest

from worker.multipart import (
    MAX_TRANSPORT_PADDING,
    Headers,
    MultipartError,
    MultipartTruncatedError,
    Part,
    boundary_from_content_type,
    content_type_params,
    iter_parts,
    parse_content_type,
)

B = "simple-boundary"
BB = B.encode()
Parsed = list[tuple[dict[str, str], bytes]]


def read_all(part: Part) -> bytes:
    return b"".join(part.iter_chunks())


# ----------------------------------------------------------------------------------------------- helpers


def chunked(data: bytes, size: int | None) -> list[bytes]:
    """``data`` in chunks of ``size`` bytes (one chunk if None)."""
    if size is None:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)]


def random_chunks(data: bytes, rng: random.Random, max_size: int) -> list[bytes]:
    """``data`` cut at random places, with some empty chunks thrown in."""
    out: list[bytes] = []
    i = 0
    while i < len(data):
        n = rng.randint(0, max_size)
        out.append(data[i : i + n])
        i += n
    return out


def split(chunks: Iterable[bytes], boundary: str = B, **kwargs: int) -> Parsed:
    """Parse everything, returning (headers, body) per part; raises what the parser raises."""
    return [
        (dict(part.headers), b"".join(part.iter_chunks())) for part in iter_parts(chunks, boundary, **kwargs)
    ]


def build(
    parts: Sequence[tuple[Sequence[tuple[str, str]], bytes]],
    boundary: str = B,
    *,
    preamble: bytes | None = None,
    epilogue: bytes = b"",
    padding: bytes = b"",
    content_length: bool = False,
) -> bytes:
    """A multipart body; with ``content_length`` every part gets a Content-Length header."""
    bnd = boundary.encode()
    out = [b"" if preamble is None else preamble + b"\r\n", b"--" + bnd]
    for headers, body in parts:
        out.append(padding + b"\r\n")
        fields = list(headers)
        if content_length:
            fields.append(("Content-Length", str(len(body))))
        out.extend(f"{name}: {value}\r\n".encode() for name, value in fields)
        out += [b"\r\n", body, b"\r\n--", bnd]
    out.append(b"--" + padding + b"\r\n" + epilogue)
    return b"".join(out)


def expected(
    parts: Sequence[tuple[Sequence[tuple[str, str]], bytes]], content_length: bool = False
) -> Parsed:
    result: Parsed = []
    for headers, body in parts:
        fields = {name.lower(): value.strip() for name, value in headers}
        if content_length:
            fields["content-length"] = str(len(body))
        result.append((fields, body))
    return result


def reference_split(message: bytes, boundary: bytes) -> Parsed:
    """A simple whole-buffer splitter (regular expressions over the complete message), for comparison.

    Same grammar as the parser: delimiter CRLF--boundary (the very first one may start the message),
    then transport padding and CRLF/LF, or "--" for the last one; a body that starts with the
    delimiter line itself (right after the blank line) is empty. Content-Length headers are ignored.
    Raises ValueError where the parser must raise MultipartError.
    """
    data = b"\r\n" + message
    tail = rb"(--|[ \t]*\r?\n)"
    delimiter = re.compile(rb"\r\n--" + re.escape(boundary) + tail)
    at_body_start = re.compile(rb"--" + re.escape(boundary) + tail)
    first = delimiter.search(data)
    if first is None:
        raise ValueError("no delimiter")
    closed, pos = first.group(1) == b"--", first.end()
    parts: Parsed = []
    while not closed:
        headers: dict[str, str] = {}
        last = ""
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                raise ValueError("unterminated headers")
            line = data[pos:nl].removesuffix(b"\r")
            pos = nl + 1
            if not line:
                break
            if line[:1] in (b" ", b"\t") and last:
                headers[last] += " " + line.strip().decode("latin-1")
                continue
            name, sep, value = line.partition(b":")
            if not sep or not name.strip():
                raise ValueError("bad header")
            key, text = name.strip().decode("latin-1").lower(), value.strip().decode("latin-1")
            headers[key] = headers[key] + ", " + text if key in headers else text
            last = key
        match = at_body_start.match(data, pos) or delimiter.search(data, pos)
        if match is None:
            raise ValueError("no closing delimiter")
        parts.append((headers, data[pos : match.start()]))
        closed, pos = match.group(1) == b"--", match.end()
    return parts


class CountingSource:
    """Chunks that record how many bytes the parser has pulled."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.pulled += len(chunk)
            yield chunk


# ------------------------------------------------------------------------------------------ Content-Type


@pytest.mark.parametrize(
    "value",
    [
        f"multipart/related; boundary={B}",
        f'multipart/related; boundary="{B}"',
        f'multipart/related; type="application/dicom"; boundary={B}',
        f'multipart/related; boundary="{B}"; type="application/dicom"; transfer-syntax=*',
        f'multipart/related;transfer-syntax=1.2.840.10008.1.2.1;type="application/dicom";boundary="{B}"',
        f"Multipart/Related; BOUNDARY={B}",
        f"  multipart/related ;  Boundary = {B}  ; type=application/dicom",
        f"multipart/related; boundary={B};",
    ],
)
def test_boundary_from_content_type(value: str) -> None:
    assert boundary_from_content_type(value) == B


def test_boundary_quoted_with_special_characters() -> None:
    assert boundary_from_content_type('multipart/related; boundary="a b;c=d"; type=x') == "a b;c=d"
    assert boundary_from_content_type(r'multipart/related; boundary="x\"y\\z"') == 'x"y\\z'
    assert (
        boundary_from_content_type("multipart/related; boundary=0a1b-2c'()+_,./:=?") == "0a1b-2c'()+_,./:=?"
    )


@pytest.mark.parametrize(
    "value",
    [
        "application/dicom",
        f"application/dicom; boundary={B}",
        f"multipart/mixed; boundary={B}",
        "multipart/related",
        'multipart/related; type="application/dicom"',
        "multipart/related; boundary=",
        'multipart/related; boundary=""',
        "multipart/related; boundaryx=abc",
        "",
    ],
)
def test_boundary_from_content_type_errors(value: str) -> None:
    with pytest.raises(MultipartError, match="multipart") as info:
        boundary_from_content_type(value)
    assert repr(value) not in str(info.value)  # the server's text is not repeated


def test_content_type_params() -> None:
    value = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90; boundary=x'
    assert content_type_params(value) == {
        "type": "application/dicom",
        "transfer-syntax": "1.2.840.10008.1.2.4.90",
        "boundary": "x",
    }
    assert parse_content_type("Application/DICOM; Transfer-Syntax=*") == (
        "application/dicom",
        {"transfer-syntax": "*"},
    )
    # malformed parameters are skipped, the first of a repeated one wins
    assert content_type_params("a/b; junk; x=1; x=2; ;y") == {"x": "1"}


def test_iter_parts_rejects_bad_boundary() -> None:
    for boundary in ("", "a\r\nb", "a\nb", "\u20ac"):
        with pytest.raises(MultipartError, match="boundary") as info:
            iter_parts([b""], boundary)
        assert repr(boundary) not in str(info.value)
    with pytest.raises(ValueError, match="max_header_bytes"):
        iter_parts([b""], "b", max_header_bytes=0)


# ---------------------------------------------------------------------------------------- basic parsing

PARTS: list[tuple[Sequence[tuple[str, str]], bytes]] = [
    ([("Content-Type", "application/dicom; transfer-syntax=1.2.840.10008.1.2.1")], b"first body"),
    ([("Content-Type", "application/dicom"), ("X-Extra", "  spaced  ")], b"\r\n--simple-boundar\r\n"),
    ([], b"no headers"),
    ([("Content-Type", "application/dicom")], b""),
    ([("Content-Type", "application/dicom")], bytes(range(256)) * 4),
]


@pytest.mark.parametrize("content_length", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64, 4096, None])
def test_parts_with_and_without_content_length(content_length: bool, chunk_size: int | None) -> None:
    message = build(PARTS, content_length=content_length)
    assert split(chunked(message, chunk_size)) == expected(PARTS, content_length)
    assert reference_split(message, BB) == expected(PARTS, content_length)


def test_mixed_content_length_and_metadata() -> None:
    message = (
        b"--b\r\nContent-Type: application/dicom\r\nCONTENT-LENGTH:  5 \r\n\r\nhello\r\n"
        b"--b\r\ncontent-type: application/dicom\r\n\r\nworld\r\n--b--"
    )
    parts = iter_parts([message], "b")
    first = next(parts)
    second = next(parts)  # drains (discards) the first
    assert first.index == 0 and first.content_length == 5
    assert second.index == 1 and second.content_length is None
    assert second.headers["Content-Type"] == second.headers["content-type"] == "application/dicom"
    assert "CONTENT-TYPE" in second.headers and "content-length" not in second.headers
    non_str: object = 5
    assert non_str not in second.headers
    assert list(second.headers) == ["content-type"] and len(second.headers) == 1
    assert read_all(second) == b"world"
    with pytest.raises(MultipartError, match="discarded"):
        read_all(first)
    assert next(parts, None) is None


def test_header_syntax_variants() -> None:
    message = (
        b"--b\nContent-Type: a\nX-Folded: one\n\ttwo\nX-Dup: 1\r\nx-dup: 2\r\nX-Empty:\r\n\nbody\n\r\n--b--"
    )
    assert split([message], "b") == [
        ({"content-type": "a", "x-folded": "one two", "x-dup": "1, 2", "x-empty": ""}, b"body\n")
    ]
    assert Headers({"A": "1"})["a"] == "1" and repr(Headers({"A": "1"})) == "Headers({'a': '1'})"


# --------------------------------------------------------------------------- bodies that look like delimiters

TRICKY_BODIES: list[bytes] = [
    b"",
    b"\r\n",
    b"\r",
    b"\n",
    b"--",
    b"\r\n--",
    b"\r\n--simple",
    b"\r\n--simple-boundar",
    b"\r\n--simple-boundar\r\n--simple-bound\r",
    b"x--simple-boundary\r\n",  # boundary without the CRLF before it (at a body's start: see below)
    b"x--simple-boundary--",
    b"x\n--simple-boundary\r\n",  # bare LF before the boundary is not a delimiter
    b"x\r--simple-boundary\r\n",
    b"\r\n--simple-boundaryX",  # full boundary followed by something else
    b"\r\n--simple-boundary-x",
    b"\r\n--simple-boundary \tx\r\n",
    b"\r\n--simple-boundary \r",
    b"\r\n--simple-boundary\rX\r\n",
    b"\r\n--simple-boundary \t -- \r\n",
    b"\r\n\r\n\r\n--\r\n--s\r\n--si\r\n--simple-boundar\r\n--simple-boundaryy\r",
    b"abc\r\n-",
    b"trailing CR\r",
    b"trailing CRLF-dash\r\n-",
    bytes(range(256)),
]


@pytest.mark.parametrize("content_length", [False, True])
@pytest.mark.parametrize("body", TRICKY_BODIES)
def test_tricky_bodies(body: bytes, content_length: bool) -> None:
    parts = [([("Content-Type", "application/dicom")], body), ([], body), ([("A", "b")], b"after")]
    message = build(parts, content_length=content_length)
    want = expected(parts, content_length)
    for size in (1, 2, 3, 7, 64, 4096, None):
        assert split(chunked(message, size)) == want, size
    assert reference_split(message, BB) == want


def test_delimiter_split_at_every_position() -> None:
    parts = [([("Content-Type", "application/dicom")], body) for body in TRICKY_BODIES[:12]]
    for content_length in (False, True):
        message = build(
            parts, preamble=b"pre\r\n--simple-boundaryX", padding=b" \t", content_length=content_length
        )
        want = expected(parts, content_length)
        for i in range(len(message) + 1):
            assert split([message[:i], message[i:]]) == want, i


def test_every_pair_of_cut_points_on_a_small_message() -> None:
    parts = [([("A", "1")], b"x\r\n--bb"), ([], b""), ([("C", "3")], b"\r\n--b\r")]
    message = build(parts, "b", preamble=b"\r\n--bx")
    want = expected(parts)
    assert len(message) < 100
    for i in range(len(message) + 1):
        for j in range(i, len(message) + 1):
            assert split([message[:i], message[i:j], message[j:]], "b") == want, (i, j)


@pytest.mark.parametrize("content_length", [False, True])
def test_content_length_body_is_not_scanned(content_length: bool) -> None:
    """With Content-Length the body may even contain a full delimiter line."""
    body = b"start\r\n--simple-boundary\r\nX: y\r\n\r\nfake\r\n--simple-boundary--\r\nend"
    message = build([([("A", "1")], body)], content_length=True)
    assert split([message]) == expected([([("A", "1")], body)], True)
    # without it, the same bytes are split at the first delimiter
    assert split([message.replace(f"Content-Length: {len(body)}\r\n".encode(), b"")]) == [
        ({"a": "1"}, b"start"),
        ({"x": "y"}, b"fake"),
    ]


def test_body_starting_with_a_delimiter_line_is_empty() -> None:
    # "--b" right after the blank line is a delimiter (the blank line's CRLF is the delimiter's), as in
    # RFC 2046's grammar and Go's mime/multipart; anything else that starts like it is data.
    assert split([b"--b\r\nA: 1\r\n\r\n--b\r\n\r\n--b--"], "b") == [({"a": "1"}, b""), ({}, b"")]
    assert split([b"--b\r\n\r\n--b--"], "b") == [({}, b"")]
    assert split([b"--b\r\nA: 1\r\nContent-Length: 0\r\n\r\n--b--"], "b") == [
        ({"a": "1", "content-length": "0"}, b"")
    ]
    assert split([b"--b\r\nA: 1\r\n\r\n--bX\r\n--b--"], "b") == [({"a": "1"}, b"--bX")]
    assert split([b"--b\r\nContent-Length: 5\r\n\r\n--b--\r\n--b--"], "b") == [
        ({"content-length": "5"}, b"--b--")
    ]


# ------------------------------------------------------------------------------ random property testing

BCHARS = string.ascii_letters + string.digits + "'()+_,-./:=?"


def random_boundary(rng: random.Random) -> str:
    fixed = ["b", "-", "--", "ab", "0123456789", "==boundary==", "a" * 70]
    if rng.random() < 0.4:
        return rng.choice(fixed)
    return "".join(rng.choice(BCHARS) for _ in range(rng.randint(1, 70)))


def random_soup(rng: random.Random, bnd: bytes, max_tokens: int) -> bytes:
    """Random bytes rich in CR, LF, dashes and (partial) boundaries."""
    tokens = [
        b"\r\n--",
        b"\r\n",
        b"\r",
        b"\n",
        b"--",
        b"-",
        b" ",
        b"\t",
        bnd,
        b"--" + bnd,
        b"\r\n--" + bnd + b"X",
        b"\r\n--" + bnd + b" x",
        b"\r\n--" + bnd + b"-x",
        b"\r\n--" + bnd + b"\rx",
    ]
    out: list[bytes] = []
    for _ in range(rng.randint(0, max_tokens)):
        r = rng.random()
        if r < 0.15:
            out.append(rng.randbytes(rng.randint(1, 40)))
        elif r < 0.35:
            out.append(b"\r\n--" + bnd[: rng.randint(0, len(bnd) - 1)])
        elif r < 0.45:
            out.append(bnd[: rng.randint(1, len(bnd))])
        else:
            out.append(rng.choice(tokens))
    return b"".join(out)


def random_message(rng: random.Random) -> tuple[bytes, str, Parsed]:
    """A random valid message and its parts (the bodies never contain a real delimiter)."""
    boundary = random_boundary(rng)
    bnd = boundary.encode()

    def eol() -> bytes:
        return b"\r\n" if rng.random() < 0.8 else b"\n"

    def padding() -> bytes:
        return b"" if rng.random() < 0.7 else bytes(rng.choice(b" \t") for _ in range(rng.randint(1, 5)))

    out = [rng.choice([b"", b"\r\n", random_soup(rng, bnd, 8) + b"\r\n"]), b"--" + bnd]
    want: Parsed = []
    for _ in range(rng.randint(0, 4)):
        body = random_soup(rng, bnd, 40)
        headers: dict[str, str] = {}
        lines: list[bytes] = []
        for name, value in (
            ("Content-Type", "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"),
            ("X-Random", "".join(rng.choice(string.printable[:94]) for _ in range(rng.randint(0, 30)))),
            ("Content-Length", str(len(body))),
        ):
            if rng.random() < 0.5:
                lines.append(rng.choice([name, name.upper(), name.lower()]).encode() + b":" + padding())
                lines[-1] += value.encode() + padding() + eol()
                headers[name.lower()] = value
        out += [padding(), eol(), *lines, eol(), body, b"\r\n--", bnd]
        want.append((headers, body))
    out += [b"--", padding(), rng.choice([b"", b"\r\n", b"\r\n" + random_soup(rng, bnd, 8)])]
    return b"".join(out), boundary, want


@pytest.mark.parametrize("seed", range(12))
def test_random_messages_against_reference(seed: int) -> None:
    rng = random.Random(seed)
    checked = rejected = 0
    while checked < 40:
        message, boundary, want = random_message(rng)
        try:
            ok = reference_split(message, boundary.encode()) == want
        except ValueError:
            ok = False
        if not ok:  # a random body happened to contain a real delimiter line: draw again
            rejected += 1
            continue
        checked += 1
        for chunks in (
            chunked(message, 1),
            chunked(message, rng.randint(2, 9)),
            chunked(message, rng.randint(10, 300)),
            [message],
            random_chunks(message, rng, 50),
        ):
            assert split(chunks, boundary) == want, (seed, checked, message, boundary)
    assert rejected < checked


@pytest.mark.parametrize("seed", range(12))
def test_random_soup_parses_like_the_reference(seed: int) -> None:
    """Arbitrary byte soup (often invalid): same parts as the reference, or an error when it has one."""
    rng = random.Random(1000 + seed)
    outcomes = {"parts": 0, "error": 0}
    for _ in range(150):
        boundary = rng.choice(["b", "xy", "-", "ab-"])
        bnd = boundary.encode()
        message = rng.choice([b"", b"--" + bnd + b"\r\n"]) + b"".join(
            rng.choice(
                [random_soup(rng, bnd, 4), b"--" + bnd + b"\r\n", b"\r\n--" + bnd + b"--", b"X: y\r\n", b":"]
            )
            for _ in range(rng.randint(0, 12))
        )
        want: Parsed | str
        try:
            want = reference_split(message, bnd)
        except ValueError:
            want = "error"
        outcomes["error" if want == "error" else "parts"] += 1
        for chunks in (chunked(message, 1), chunked(message, 5), [message], random_chunks(message, rng, 20)):
            got: Parsed | str
            try:
                got = split(chunks, boundary)
            except MultipartError:
                got = "error"
            assert got == want, (message, boundary)
    assert min(outcomes.values()) > 10, outcomes  # both kinds of input were exercised


# ------------------------------------------------------------------ preamble, epilogue, padding, empties


@pytest.mark.parametrize(
    ("preamble", "epilogue"),
    [
        (None, b""),
        (b"", b""),
        (b"This is a preamble.", b"\r\nThis is an epilogue.\r\n"),
        (b"--simple-boundary-not\r\n--simple-boundaryX", b"\r\n--simple-boundary\r\nA: b\r\n\r\nignored"),
        (b"x--simple-boundary\r\nA: b\r\n", b"--simple-boundary--"),
        (b"\r\n\r\n", b"garbage without newline"),
    ],
)
def test_preamble_and_epilogue_are_ignored(preamble: bytes | None, epilogue: bytes) -> None:
    message = build(PARTS[:2], preamble=preamble, epilogue=epilogue)
    for size in (1, 3, None):
        assert split(chunked(message, size)) == expected(PARTS[:2])


def test_epilogue_is_not_read() -> None:
    def source() -> Iterator[bytes]:
        yield b"--b\r\n\r\nbody\r\n--b--"
        raise AssertionError("the epilogue was read")

    assert split(source(), "b") == [({}, b"body")]


@pytest.mark.parametrize("padding", [b" ", b"\t", b" \t  \t", b" " * MAX_TRANSPORT_PADDING])
def test_transport_padding(padding: bytes) -> None:
    message = build(PARTS[:3], padding=padding)
    for size in (1, 7, None):
        assert split(chunked(message, size)) == expected(PARTS[:3])
    # bare LF after a delimiter (and its padding) is accepted too
    assert split([message.replace(padding + b"\r\n", padding + b"\n")]) == expected(PARTS[:3])


def test_transport_padding_too_long() -> None:
    message = build(PARTS[:1], padding=b" " * (MAX_TRANSPORT_PADDING + 1))
    with pytest.raises(MultipartError, match="padding"):
        split([message])


@pytest.mark.parametrize(
    "message", [b"--b--", b"--b--\r\n", b"--b--  \r\nepilogue", b"preamble\r\n--b--", b"\r\n--b--", b"--b--x"]
)
def test_zero_parts(message: bytes) -> None:
    for size in (1, 2, None):
        assert split(chunked(message, size), "b") == []


def test_input_chunk_types_and_empty_chunks() -> None:
    message = build(PARTS)
    chunks: list[bytes] = []
    for i, chunk in enumerate(chunked(message, 5)):
        chunks += [b"", chunk] if i % 2 else [bytearray(chunk), memoryview(chunk)[:0]]  # type: ignore[list-item]
    assert split(chunks) == expected(PARTS)


# ----------------------------------------------------------------------------------------------- errors


def consume(message_chunks: Iterable[bytes], boundary: str = B) -> Parsed:
    return split(message_chunks, boundary)


@pytest.mark.parametrize("content_length", [False, True])
def test_truncated_at_every_cut_point(content_length: bool) -> None:
    parts = [([("A", "1")], b"first\r\n--simple-boundar"), ([], b""), ([("C", "3")], b"last\r\n")]
    message = build(parts, preamble=b"pre", epilogue=b"\r\nepilogue", content_length=content_length)
    complete = message.index(b"\r\n--simple-boundary--") + len(b"\r\n--simple-boundary--")
    for cut in range(len(message) + 1):
        for chunks in ([message[:cut]], chunked(message[:cut], 4)):
            if cut < complete:
                with pytest.raises(MultipartTruncatedError):
                    consume(chunks)
            else:
                assert consume(chunks) == expected(parts, content_length)


def test_truncated_body_raises_from_the_part_after_its_data() -> None:
    parts = iter_parts([b"--b\r\nA: 1\r\n\r\nhalf of a bo"], "b")
    part = next(parts)
    chunks = part.iter_chunks()
    assert next(chunks) == b"half of a bo"
    with pytest.raises(MultipartTruncatedError, match="truncated"):
        next(chunks)
    # the error sticks: no later read or next() makes the body look complete
    with pytest.raises(MultipartTruncatedError):
        read_all(part)
    with pytest.raises(MultipartTruncatedError):
        next(parts)
    with pytest.raises(MultipartTruncatedError):
        next(parts)


def test_truncated_content_length_part() -> None:
    message = b"--b\r\nContent-Length: 10\r\n\r\n0123456789\r\n--b--"
    for cut in range(len(message)):
        with pytest.raises(MultipartTruncatedError):
            consume([message[:cut]], "b")
    part = next(iter_parts([message[:-7]], "b"))  # all of the body, no delimiter after it
    chunks = part.iter_chunks()
    assert next(chunks) == b"0123456789"
    with pytest.raises(MultipartTruncatedError):
        next(chunks)


@pytest.mark.parametrize(
    "message", [b"", b"\r\n", b"preamble only", b"--b", b"--b-", b"--b\r\n", b"--b\r\nA: 1"]
)
def test_truncated_before_any_body(message: bytes) -> None:
    with pytest.raises(MultipartTruncatedError):
        consume([message], "b")


@pytest.mark.parametrize(
    ("declared", "where"),
    [
        (4, "middle"),  # too short: the delimiter does not follow
        (6, "middle"),  # too long: swallows the CRLF of the delimiter
        (4, "last"),
        (6, "last"),
        (40, "last"),  # runs past the closing delimiter: the body ends first
    ],
)
def test_wrong_content_length(declared: int, where: str) -> None:
    good = b"--b\r\nContent-Length: 5\r\n\r\nhello\r\n"
    bad = f"--b\r\nContent-Length: {declared}\r\n\r\nhello\r\n".encode()
    message = (bad + good if where == "middle" else good + bad) + b"--b--"
    for size in (1, 3, None):
        with pytest.raises(MultipartError):
            consume(chunked(message, size), "b")


def test_wrong_content_length_message() -> None:
    with pytest.raises(MultipartError, match="Content-Length") as info:
        consume([b"--b\r\nContent-Length: 3\r\n\r\nhello\r\n--b--"], "b")
    assert not isinstance(info.value, MultipartTruncatedError)


@pytest.mark.parametrize(
    "value", ["-1", "abc", "1.5", "", "5, 5", "\u0665", "9" * 19, "1" * 5000], ids=lambda v: v[:20]
)
def test_invalid_content_length(value: str) -> None:
    """Too many digits for a length is a MultipartError (not int()'s ValueError), and the server's text
    is not repeated in the message."""
    message = f"--b\r\nContent-Length: {value}\r\n\r\nhello\r\n--b--".encode()
    with pytest.raises(MultipartError, match="invalid Content-Length") as info:
        consume([message], "b")
    assert repr(value) not in str(info.value)


@pytest.mark.parametrize("line", [b"no colon here", b": no name", b"   : blank name"])
def test_malformed_header_line(line: bytes) -> None:
    with pytest.raises(MultipartError, match="malformed header") as info:
        consume([b"--b\r\n" + line + b"\r\n\r\nbody\r\n--b--"], "b")
    assert line.strip().decode() not in str(info.value)


def test_header_block_size_limit() -> None:
    headers = b"A: " + b"x" * 90 + b"\r\n\r\n"  # 97 bytes, blank line included
    message = b"--b\r\n" + headers + b"body\r\n--b--"
    for size in (1, 10, None):
        assert consume(chunked(message, size), "b") == [({"a": "x" * 90}, b"body")]
        assert split(chunked(message, size), "b", max_header_bytes=len(headers)) == [
            ({"a": "x" * 90}, b"body")
        ]
        with pytest.raises(MultipartError, match="header block larger than 96"):
            split(chunked(message, size), "b", max_header_bytes=len(headers) - 1)


def test_endless_header_line_fails_without_reading_everything() -> None:
    source = CountingSource(b"x" * 1000 if i else b"--b\r\nA: " for i in range(10**6))
    with pytest.raises(MultipartError, match="header block larger"):
        next(iter_parts(source, "b", max_header_bytes=10_000))
    assert source.pulled < 12_000


# ----------------------------------------------------------------------------------------------- draining


@pytest.mark.parametrize("content_length", [False, True])
def test_unread_and_partly_read_parts_are_drained(content_length: bool) -> None:
    bodies = [b"A" * 5000, b"B" * 5000 + b"\r\n--simple-boundar", b"C" * 10, b"D" * 7]
    message = build([([("N", str(i))], body) for i, body in enumerate(bodies)], content_length=content_length)
    parts = iter_parts(chunked(message, 100), B)
    p0 = next(parts)  # not read at all
    p1 = next(parts)
    assert p1.headers["n"] == "1"
    assert set(next(p1.iter_chunks())) == {ord("B")}  # partly read: one input chunk of it
    p2 = next(parts)
    assert read_all(p2) == b"C" * 10  # read to the end
    p3 = next(parts)
    assert next(p3.iter_chunks()).startswith(b"D")
    with pytest.raises(StopIteration):
        next(parts)  # drains p3 even though there is no next part
    for stale in (p0, p1):
        with pytest.raises(MultipartError, match="discarded"):
            list(stale.iter_chunks())
    assert list(p2.iter_chunks()) == []


def test_drained_part_errors_still_raise() -> None:
    parts = iter_parts([b"--b\r\nContent-Length: 3\r\n\r\nabcdef\r\n--b--"], "b")
    part = next(parts)
    assert next(part.iter_chunks()) == b"abc"
    with pytest.raises(MultipartError, match="Content-Length"):
        next(parts)


# --------------------------------------------------------------------------------------------- DICOM data

DICOM_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle.dcm",
    "MR_small_bigendian.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "rtplan.dcm",
]


@pytest.fixture(scope="module")
def dicom_files() -> list[bytes]:
    data = pytest.importorskip("pydicom.data")
    return [Path(data.get_testdata_file(name, download=False)).read_bytes() for name in DICOM_FILES]


@pytest.mark.parametrize("content_length", [False, True])
def test_dicom_round_trip(dicom_files: list[bytes], content_length: bool) -> None:
    parts = [([("Content-Type", "application/dicom; transfer-syntax=*")], data) for data in dicom_files]
    message = build(parts, boundary="DICOMwebBoundary", content_length=content_length)
    want = expected(parts, content_length)
    for size in (1, 7, 1000, 4096, 65536, None):
        assert split(chunked(message, size), "DICOMwebBoundary") == want
    got = [read_all(part) for part in iter_parts(chunked(message, 1500), "DICOMwebBoundary")]
    assert got == dicom_files


# --------------------------------------------------------------------------------- bounded memory / work


def repeated_block_body(block: bytes, count: int, content_length: bool, boundary: str = B) -> Iterator[bytes]:
    """One part of ``count`` copies of ``block`` (yielded, never concatenated), as a multipart body."""
    headers = "Content-Type: application/dicom\r\n"
    if content_length:
        headers += f"Content-Length: {len(block) * count}\r\n"
    yield f"--{boundary}\r\n{headers}\r\n".encode()
    for _ in range(count):
        yield block
    yield f"\r\n--{boundary}--\r\n".encode()


def adversarial_block(size: int) -> bytes:
    """Random data with false delimiters inside, ending with a delimiter prefix so that every chunk leaves a
    carry-over tail (the parser's copying path)."""
    rng = random.Random(42)
    tail = b"\r\n--" + BB[:-1]
    filler = b"\r\n--" + BB + b"X" + b"\r\n--" + BB[:5] + b"\r\n--\r\n"
    block = rng.randbytes(size - len(tail) - len(filler))
    return block[: size // 2] + filler + block[size // 2 :] + tail


@pytest.mark.parametrize("content_length", [False, True])
@pytest.mark.parametrize("kind", ["random", "adversarial"])
def test_64_mib_part_in_bounded_memory(content_length: bool, kind: str) -> None:
    chunk = 64 * 1024
    count = 1024  # 64 MiB
    block = random.Random(1).randbytes(chunk) if kind == "random" else adversarial_block(chunk)
    assert b"\r\n--" + BB + b"\r\n" not in block + block
    want = 0
    for _ in range(count):
        want = zlib.crc32(block, want)
    source = CountingSource(repeated_block_body(block, count, content_length))
    crc = total = largest = 0
    max_lag = 0
    tracemalloc.start()
    try:
        for part in iter_parts(source, B):
            for data in part.iter_chunks():
                crc = zlib.crc32(data, crc)
                total += len(data)
                largest = max(largest, len(data))
                max_lag = max(max_lag, source.pulled - total)  # pulled but not handed out yet
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == chunk * count and crc == want
    assert peak < 1024 * 1024, peak  # about 3 chunks, whatever the part size
    assert largest <= chunk + len(BB) + 4  # output chunks are not accumulated
    # body bytes are handed out as soon as they cannot start a delimiter: besides the part headers, at most
    # one input chunk and a delimiter's worth of bytes are held back
    assert max_lag <= chunk + 100 + len(BB) + 4


def test_many_false_delimiters_do_not_accumulate() -> None:
    """A body made only of almost-delimiters: many small outputs, but nothing held back."""
    piece = b"\r\n--" + BB + b"X"
    block = piece * (65536 // len(piece))
    source = CountingSource(repeated_block_body(block, 64, False))
    total = 0
    for part in iter_parts(source, B):
        for data in part.iter_chunks():
            total += len(data)
            assert source.pulled - total <= len(block) + 100
    assert total == len(block) * 64


def test_part_is_a_plain_object() -> None:
    part = Part(0, Headers({"A": "1"}), None, iter([b"x"]))
    assert read_all(part) == b"x" and "Part 0" in repr(part)
