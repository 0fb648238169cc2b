"""Media types of the emulator: Content-Type and Accept parsing, and the Healthcare API's Accept negotiation
(WADO-RS retrieve, DICOM JSON answers)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .dicom import EXPLICIT_LE, RETRIEVABLE_TS
from .errors import ApiError

DICOM_JSON = "application/dicom+json"


@dataclass(frozen=True)
class MediaRange:
    type: str
    params: dict[str, str]
    q: float


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            current.append(char)
            escaped = True
        elif char == '"':
            current.append(char)
            quoted = not quoted
        elif char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_media_type(text: str) -> MediaRange:
    pieces = _split_outside_quotes(text, ";")
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        name, _, value = piece.partition("=")
        if name.strip():
            params[name.strip().lower()] = _unquote(value)
    try:
        q = float(params.pop("q", "1"))
    except ValueError:
        q = 1.0
    return MediaRange(pieces[0].strip().lower(), params, q)


def parse_accept(header: str) -> list[MediaRange]:
    ranges = [parse_media_type(item) for item in _split_outside_quotes(header, ",") if item.strip()]
    return sorted(ranges, key=lambda r: -r.q)  # stable: equal weights keep the client's order


def accepted_combinations(single_part: bool) -> list[str]:
    out = [f'multipart/related; transfer-syntax={ts}; type="application/dicom"' for ts in RETRIEVABLE_TS]
    if single_part:
        out += [f"application/dicom; transfer-syntax={ts}" for ts in RETRIEVABLE_TS]
    return out


def negotiate_retrieve(accept: str | None, single_part: bool) -> tuple[bool, str]:
    """(multipart?, transfer syntax) for a WADO-RS retrieve, as the Healthcare API negotiates it."""
    if accept is None or not accept.strip():
        return True, EXPLICIT_LE
    for media in parse_accept(accept):
        if media.q <= 0:
            continue
        ts = media.params.get("transfer-syntax", EXPLICIT_LE)
        if media.type == "*/*":
            return True, EXPLICIT_LE
        if media.type == "multipart/related":
            # type="application/dicom; transfer-syntax=X" (the whole type quoted) unquotes to a value with a
            # ';' in it: not application/dicom, so not acceptable, as on the real service.
            if media.params.get("type", "").strip().lower() == "application/dicom" and ts in RETRIEVABLE_TS:
                return True, ts
        elif media.type == "application/dicom" and single_part and ts in RETRIEVABLE_TS:
            return False, ts
    raise ApiError(
        406,
        f"no supported media type found in [{accept}], accept-header must include one of "
        + ",".join(accepted_combinations(single_part)),
    )


def check_json_accept(accept: str | None) -> None:
    if accept is None or not accept.strip():
        return
    ok = {"application/dicom+json", "application/json", "*/*", "application/*"}
    if not any(media.type in ok and media.q > 0 for media in parse_accept(accept)):
        raise ApiError(
            406, f"no supported media type found in [{accept}], accept-header must include {DICOM_JSON}"
        )
