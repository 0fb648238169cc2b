"""Header values as servers send them: a Content-Type's media type and parameters (quoted or not), and
read-only, case-insensitive header maps."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Final

_PARAM: Final = re.compile(r';\s*([^\s;=]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.DOTALL)
_QUOTED_PAIR: Final = re.compile(r"\\(.)", re.DOTALL)


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type value into its lower-cased media type and its parameters.

    Parameter names are lower-cased, values are unquoted (``\\x`` quoted pairs resolved) and otherwise kept
    as sent; the first occurrence of a name wins; malformed parameters are skipped.
    """
    media_type, _, _ = value.partition(";")
    params: dict[str, str] = {}
    pos = len(media_type)
    while pos < len(value):
        match = _PARAM.match(value, pos)
        if match is None:
            nxt = value.find(";", pos + 1)
        else:
            name, raw = match.group(1).lower(), match.group(2)
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1]) if raw.startswith('"') else raw.strip()
            params.setdefault(name, raw)
            nxt = value.find(";", match.end())
        if nxt < 0:
            break
        pos = nxt
    return media_type.strip().lower(), params


def content_type_params(value: str) -> dict[str, str]:
    """The parameters of a Content-Type value (lower-cased names, unquoted values): boundary, type, ..."""
    return parse_content_type(value)[1]


class Headers(Mapping[str, str]):
    """Read-only part headers: case-insensitive lookup, iteration yields lower-case names.

    A repeated header's values are joined with ``", "``.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, str] | None = None) -> None:
        self._fields: dict[str, str] = {k.lower(): v for k, v in (fields or {}).items()}

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"
