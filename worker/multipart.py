"""Byte-exact streaming parser for ``multipart/related`` bodies (WADO-RS RetrieveSeries responses).

The parser reads the response body as an iterable of byte chunks (``response.iter_content(n)``) and yields
one :class:`Part` at a time; each part's body is itself streamed, so memory stays bounded by about two
input chunks whatever the size of a part. Body bytes are returned exactly as sent: nothing is decoded.

Grammar (RFC 2046 section 5.1.1, as servers send it):

* the delimiter is ``CRLF "--" boundary``; the first one may sit at the very start of the body (no CRLF)
  and anything before it is a preamble, which is ignored;
* a delimiter is followed by optional transport padding (spaces, tabs) and CRLF (a bare LF is accepted),
  or by ``--`` for the closing delimiter, after which anything (the epilogue) is ignored and not read;
* ``CRLF "--" boundary`` followed by anything else is not a delimiter: it is part of the body;
* each part is ``headers CRLF body``; its body is exactly the bytes between the blank line ending its
  headers and the CRLF that starts the next delimiter. A part with a ``Content-Length`` header is read by
  count (no scanning) and the delimiter must follow it, else :class:`MultipartError`;
* a delimiter line right after the blank line (``--boundary`` with no CRLF of its own) ends an empty
  body: the blank line's CRLF counts as the delimiter's, as in RFC 2046's grammar and Go's mime/multipart
  (unless Content-Length says the body is not empty).

A body that ends (connection closed) before the closing delimiter raises :class:`MultipartTruncatedError`,
from the part iterator or from the part being read: a short part is never reported as complete. Errors
raised by the chunk iterable itself (network errors) propagate unchanged.

Not thread-safe: one consumer reads the parts, in order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Final

from worker.errors import MultipartError, MultipartTruncatedError
from worker.media_type import Headers, content_type_params, parse_content_type

__all__ = [
    "MAX_TRANSPORT_PADDING",
    "Headers",
    "MultipartError",
    "MultipartTruncatedError",
    "Part",
    "boundary_from_content_type",
    "content_type_params",
    "iter_parts",
    "parse_content_type",
]

#: Most spaces/tabs accepted between a boundary and its CRLF (RFC 2046 transport padding).
MAX_TRANSPORT_PADDING: Final = 1024

_CR: Final = 0x0D
_LF: Final = 0x0A
_SP: Final = 0x20
_HT: Final = 0x09
_DASH: Final = 0x2D
_CRLF: Final = b"\r\n"
#: A Content-Length: decimal digits, few enough for int() and for any real body (below 10**18 bytes).
_LENGTH: Final = re.compile(r"[0-9]{1,18}")


# --------------------------------------------------------------------------------------------- Content-Type


def boundary_from_content_type(content_type: str) -> str:
    """The boundary of a ``multipart/related`` Content-Type value, quoted or not.

    Raises MultipartError when the media type is not multipart/related or the boundary is missing/invalid.
    """
    media_type, params = parse_content_type(content_type)
    if media_type != "multipart/related":
        raise MultipartError("expected a multipart/related response, got another Content-Type")
    boundary = params.get("boundary")
    if not boundary:
        raise MultipartError("multipart/related Content-Type has no boundary parameter")
    _delimiter(boundary)  # validates
    return boundary


def _delimiter(boundary: str) -> bytes:
    if not boundary:
        raise MultipartError("empty multipart boundary")
    try:
        raw = boundary.encode("latin-1")
    except UnicodeEncodeError:
        raise MultipartError("multipart boundary is not Latin-1") from None
    if b"\r" in raw or b"\n" in raw:
        raise MultipartError("multipart boundary contains CR or LF")
    return b"\r\n--" + raw


# ---------------------------------------------------------------------------------------------------- Part


class Part:
    """One body part. Its body is streamed from the shared input and can be read once, in order.

    Read it with :meth:`iter_chunks`. Asking the part iterator for the next part first discards what is
    left of this one; reading this part afterwards raises MultipartError (unless it had been read to the
    end).
    """

    __slots__ = (
        "_body",
        "_discarded",
        "_done",
        "_error",
        "_pend",
        "_pend_off",
        "content_length",
        "headers",
        "index",
    )

    def __init__(
        self, index: int, headers: Headers, content_length: int | None, body: Iterator[bytes]
    ) -> None:
        #: 0-based position of the part in the body.
        self.index: int = index
        self.headers: Headers = headers
        #: The part's Content-Length header, when it has one (already checked to be an integer).
        self.content_length: int | None = content_length
        self._body = body
        self._pend = b""
        self._pend_off = 0
        self._done = False
        self._discarded = False
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<Part {self.index} headers={dict(self.headers)!r}>"

    def _take(self, limit: int) -> bytes | None:
        """Up to ``limit`` (> 0) next body bytes, or None at the verified end of the body."""
        if self._error is not None:
            raise self._error
        if self._discarded:
            raise MultipartError(f"part {self.index} was discarded when the next part was requested")
        pend, off = self._pend, self._pend_off
        if off >= len(pend):
            if self._done:
                return None
            try:
                pend = next(self._body)
            except StopIteration:
                self._done = True
                self._pend, self._pend_off = b"", 0
                return None
            except Exception as exc:
                self._error = exc
                raise
            self._pend, off = pend, 0
        if off == 0 and len(pend) <= limit:
            self._pend, self._pend_off = b"", 0
            return pend
        end = min(len(pend), off + limit)
        self._pend_off = end
        return pend[off:end]

    def iter_chunks(self) -> Iterator[bytes]:
        """The (remaining) body bytes, exactly, in chunks of at most about one input chunk.

        Raises MultipartTruncatedError (at the end, after the last bytes) if the body was cut short.
        """
        while (chunk := self._take(1 << 62)) is not None:
            yield chunk

    def _discard_rest(self) -> None:
        """Drain the body (the parser needs to reach the next delimiter); mark the part if data was lost."""
        if self._done or self._discarded:
            return
        lost = self._pend_off < len(self._pend)
        self._pend, self._pend_off = b"", 0
        while self._take(1 << 62) is not None:
            self._pend, self._pend_off = b"", 0
            lost = True
        self._discarded = lost


# -------------------------------------------------------------------------------------------------- Parser


def iter_parts(
    chunks: Iterable[bytes], boundary: str, *, max_header_bytes: int = 64 * 1024
) -> Iterator[Part]:
    """Iterate over the parts of a multipart body given as byte chunks, streaming each part's body.

    ``boundary`` is the Content-Type boundary (see :func:`boundary_from_content_type`). Each part must be
    consumed (or is discarded) before the next one is produced. The iterator stops at the closing
    delimiter without reading the epilogue. Raises MultipartError on malformed input (header block larger
    than ``max_header_bytes``, Content-Length not followed by a delimiter, ...) and
    MultipartTruncatedError if the chunks end before the closing delimiter.
    """
    if max_header_bytes < 1:
        raise ValueError("max_header_bytes must be positive")
    return _PartIterator(_Parser(chunks, _delimiter(boundary), max_header_bytes))


class _PartIterator(Iterator[Part]):
    """Remembers a failure so that a retried ``next()`` raises it again instead of ending quietly."""

    def __init__(self, parser: _Parser) -> None:
        self._gen = parser.parts()
        self._error: BaseException | None = None

    def __next__(self) -> Part:
        if self._error is not None:
            raise self._error
        try:
            return next(self._gen)
        except StopIteration:
            raise
        except Exception as exc:
            self._error = exc
            raise


class _Parser:
    """Buffer invariant: ``_buf[_pos:]`` is data read but not yet consumed; it stays short (a delimiter,
    a header line or the rest of one input chunk) because body bytes are handed out as soon as they cannot
    be the start of a delimiter, so appending a chunk copies little."""

    def __init__(self, chunks: Iterable[bytes], delimiter: bytes, max_header_bytes: int) -> None:
        self._chunks = iter(chunks)
        # A virtual CRLF, so that a first delimiter at the very start ("--boundary") is found as
        # "\r\n--boundary"; it only ever lands in the ignored preamble.
        self._buf = _CRLF
        self._pos = 0
        self._eof = False
        self._delim = delimiter
        self._max_header_bytes = max_header_bytes
        self._closed = False  # the latest delimiter was the closing one
        self._index = -1  # part being read, for messages

    # ---------------------------------------------------------------------------------------- input

    def _more(self) -> bool:
        """Append the next non-empty input chunk to the unconsumed data; False at the end of the input."""
        if self._eof:
            return False
        for chunk in self._chunks:
            if not chunk:
                continue
            if type(chunk) is not bytes:
                chunk = bytes(chunk)
            if self._pos >= len(self._buf):
                self._buf = chunk
            else:
                self._buf = self._buf[self._pos :] + chunk
            self._pos = 0
            return True
        self._eof = True
        return False

    def _ensure(self, n: int) -> bool:
        """Make at least ``n`` unconsumed bytes available; False if the input ends first."""
        while len(self._buf) - self._pos < n:
            if not self._more():
                return False
        return True

    def _truncated(self, where: str) -> MultipartTruncatedError:
        boundary = self._delim[4:].decode("latin-1")
        return MultipartTruncatedError(
            f"multipart body ended {where} before the closing delimiter --{boundary}-- (truncated transfer?)"
        )

    # ----------------------------------------------------------------------------------- delimiters

    def _delimiter_end(self, rel: int) -> int | None:
        """``_buf[_pos:_pos+rel]`` is ``CRLF--boundary``: if a real delimiter line follows (transport
        padding and CRLF/LF, or ``--``), return its length from ``_pos`` and set ``_closed``; else None."""
        j = rel
        while True:
            buf, p = self._buf, self._pos + j
            if p >= len(buf):
                if not self._more():
                    raise self._truncated("inside a delimiter")
                continue
            c = buf[p]
            if c in (_SP, _HT):
                j += 1
                if j - rel > MAX_TRANSPORT_PADDING:
                    raise MultipartError(
                        f"more than {MAX_TRANSPORT_PADDING} bytes of padding after a boundary"
                    )
                continue
            if c == _LF:
                self._closed = False
                return j + 1
            if c == _CR or (c == _DASH and j == rel):
                if p + 1 >= len(buf):
                    if not self._more():
                        raise self._truncated("inside a delimiter")
                    continue
                c2 = buf[p + 1]
                if c == _CR:
                    if c2 != _LF:
                        return None
                    self._closed = False
                    return j + 2
                if c2 != _DASH:
                    return None
                self._closed = True
                return j + 2
            return None

    def _scan(self) -> Iterator[bytes]:
        """Yield the bytes up to the next delimiter, consume the delimiter line."""
        delim = self._delim
        dlen = len(delim)
        skip = 0  # bytes after _pos known not to start a delimiter
        while True:
            buf, pos = self._buf, self._pos
            i = buf.find(delim, pos + skip)
            if i >= 0:
                if i > pos:
                    self._pos = i
                    yield buf[pos:i]
                end = self._delimiter_end(dlen)
                if end is not None:
                    self._pos += end
                    return
                skip = 1
                continue
            # No delimiter: keep back only a tail that may begin one (it starts with CR, the only CR in it).
            n = end = len(buf)
            k = buf.rfind(b"\r", max(pos + skip, n - dlen + 1))
            if k >= 0 and delim.startswith(buf[k:]):
                end = k
            if end > pos:
                self._pos = end
                skip = 0
                yield buf if pos == 0 and end == n else buf[pos:end]
            if not self._more():
                raise self._truncated(f"inside part {self._index}" if self._index >= 0 else "in the preamble")

    def _read_exact(self, length: int) -> Iterator[bytes]:
        """Yield exactly ``length`` bytes (Content-Length), then check and consume the delimiter."""
        remaining = length
        while remaining:
            buf, pos = self._buf, self._pos
            avail = len(buf) - pos
            if avail == 0:
                if not self._more():
                    raise self._truncated(
                        f"{length - remaining} bytes into part {self._index} (Content-Length {length})"
                    )
                continue
            take = min(avail, remaining)
            self._pos = pos + take
            remaining -= take
            yield buf if pos == 0 and take == len(buf) else buf[pos : pos + take]
        dlen = len(self._delim)
        if not self._ensure(dlen):
            raise self._truncated(f"after part {self._index} (Content-Length {length})")
        end = None
        if self._buf.startswith(self._delim, self._pos):
            end = self._delimiter_end(dlen)
        if end is None:
            raise MultipartError(
                f"part {self._index}: no multipart delimiter after Content-Length {length} bytes "
                "(wrong Content-Length?)"
            )
        self._pos += end

    # -------------------------------------------------------------------------------------- headers

    def _read_headers(self) -> Headers:
        """Parse a part's header block, up to and including the blank line."""
        fields: dict[str, str] = {}
        last = ""
        total = 0  # header bytes consumed
        search = 0  # bytes after _pos known to hold no LF
        limit = self._max_header_bytes
        while True:
            buf, pos = self._buf, self._pos
            nl = buf.find(b"\n", pos + search, pos + limit - total)
            if nl < 0:
                search = len(buf) - pos
                if total + search > limit:
                    raise MultipartError(f"part {self._index}: header block larger than {limit} bytes")
                if not self._more():
                    raise self._truncated(f"inside the headers of part {self._index}")
                continue
            total += nl + 1 - pos
            search = 0
            line = buf[pos:nl]
            self._pos = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                return Headers(fields)
            if line[0] in b" \t" and last:  # obsolete line folding
                fields[last] += " " + line.strip().decode("latin-1")
                continue
            name, sep, value = line.partition(b":")
            name = name.strip()
            if not sep or not name:
                raise MultipartError(f"part {self._index}: malformed header line ({len(line)} bytes)")
            key, text = name.decode("latin-1").lower(), value.strip().decode("latin-1")
            fields[key] = f"{fields[key]}, {text}" if key in fields else text
            last = key

    def _body_starts_with_delimiter(self) -> bool:
        """Consume a delimiter line that starts the body at once (``--boundary`` right after the blank line
        ending the headers): the part's body is empty. RFC 2046's grammar reads the blank line's CRLF as the
        delimiter's, as do line-based parsers and Go's mime/multipart."""
        dash = self._delim[2:]
        if not (self._ensure(len(dash)) and self._buf.startswith(dash, self._pos)):
            return False
        end = self._delimiter_end(len(dash))
        if end is None:
            return False
        self._pos += end
        return True

    # ---------------------------------------------------------------------------------------- parts

    def parts(self) -> Iterator[Part]:
        for _ in self._scan():  # preamble
            pass
        while not self._closed:
            self._index += 1
            headers = self._read_headers()
            length: int | None = None
            raw_length = headers.get("content-length")
            if raw_length is not None:
                if not _LENGTH.fullmatch(raw_length):
                    raise MultipartError(
                        f"part {self._index}: invalid Content-Length ({len(raw_length)} characters)"
                    )
                length = int(raw_length)
            body: Iterator[bytes]
            if length is None:
                body = iter(()) if self._body_starts_with_delimiter() else self._scan()
            elif length == 0 and self._body_starts_with_delimiter():
                body = iter(())
            else:
                body = self._read_exact(length)  # a body that starts like a delimiter is data here
            part = Part(self._index, headers, length, body)
            yield part
            part._discard_rest()
