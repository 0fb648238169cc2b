"""multipart/related bodies of the emulator: splitting a STOW-RS request, the head of a WADO-RS part."""

from __future__ import annotations

from .errors import ApiError


def split_multipart(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    delimiter = b"--" + boundary.encode("latin-1")
    pos = body.find(delimiter)
    if pos < 0:
        raise ApiError(400, "multipart body has no boundary delimiter")
    parts: list[tuple[dict[str, str], bytes]] = []
    pos += len(delimiter)
    while True:
        if body[pos : pos + 2] == b"--":
            return parts
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            raise ApiError(400, "multipart body ends inside a delimiter line")
        start = line_end + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise ApiError(400, "multipart body has no closing delimiter")
        chunk = body[start:end]
        headers: dict[str, str] = {}
        if chunk.startswith(b"\r\n"):
            content = chunk[2:]
        else:
            head, sep, content = chunk.partition(b"\r\n\r\n")
            if not sep:
                raise ApiError(400, "multipart part has no blank line after its headers")
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, content))
        pos = end + 2 + len(delimiter)


def part_head(boundary: str, ts: str, size: int) -> bytes:
    head = f"--{boundary}\r\nContent-Type: application/dicom; transfer-syntax={ts}\r\n"
    return f"{head}Content-Length: {size}\r\n\r\n".encode()
