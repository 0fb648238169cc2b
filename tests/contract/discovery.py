"""Google's description of the Cloud Healthcare API, as data: the discovery document ``healthcare.v1.json``
that google-api-python-client ships in its wheel (requirements-dev.txt pins it; only tests read it).

- ``methods()``: every documented method by id (HTTP verb, ``flatPath``, ``path`` and its parameters'
  patterns, request and response schemas).
- ``documented(verb, path)``: the documented methods a concrete request path is, matched as Google's HTTP
  rules match: each ``{+param}`` by its documented pattern, each ``{param}`` as one segment, and a final
  ``:verb`` (``:getSeriesMetrics``, ``:import``) only by a template ending in that verb.
- ``json_schema(name)``: a discovery schema as a strict JSON Schema (unknown fields refused but the
  ``@type`` of a packed message; int64 as decimal strings; ``google-datetime`` as RFC 3339 in UTC).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PACKAGE = importlib.util.find_spec("googleapiclient")  # located, never imported
if _PACKAGE is None or _PACKAGE.origin is None:
    raise ImportError(
        "google-api-python-client is not installed (requirements-dev.txt): it holds the document"
    )
DOCUMENT = Path(_PACKAGE.origin).parent / "discovery_cache" / "documents" / "healthcare.v1.json"
RFC3339_UTC = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z$"
_PARAM = re.compile(r"\{(\+?)([A-Za-z0-9_]+)\}")
_VERB = re.compile(r":([A-Za-z]+)$")


@dataclass(frozen=True)
class Method:
    id: str
    http_method: str
    flat_path: str
    path: str
    patterns: tuple[tuple[str, str], ...]  # (path parameter, its documented regex)
    request: str | None
    response: str | None

    @functools.cached_property
    def verb(self) -> str | None:
        found = _VERB.search(self.path)
        return found[1] if found else None

    @functools.cached_property
    def regex(self) -> re.Pattern[str]:
        """The concrete paths (``v1/...``, without the verb) this method's ``path`` template accepts."""
        patterns = dict(self.patterns)
        template = _VERB.sub("", self.path)
        out, last = "", 0
        for found in _PARAM.finditer(template):
            out += re.escape(template[last : found.start()])
            if found[1]:
                out += "(?:" + patterns[found[2]].removeprefix("^").removesuffix("$") + ")"
            else:
                out += "[^/]+"
            last = found.end()
        return re.compile(out + re.escape(template[last:]))


@functools.cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def methods() -> dict[str, Method]:
    found: dict[str, Method] = {}

    def walk(resources: dict[str, Any]) -> None:
        for resource in resources.values():
            for spec in resource.get("methods", {}).values():
                params = spec.get("parameters", {})
                found[spec["id"]] = Method(
                    id=spec["id"],
                    http_method=spec["httpMethod"],
                    flat_path=spec["flatPath"],
                    path=spec["path"],
                    patterns=tuple(
                        (name, param["pattern"])
                        for name, param in params.items()
                        if param.get("location") == "path" and "pattern" in param
                    ),
                    request=spec.get("request", {}).get("$ref"),
                    response=spec.get("response", {}).get("$ref"),
                )
            walk(resource.get("resources", {}))

    walk(document()["resources"])
    return found


def documented(http_method: str, path: str) -> list[str]:
    """The ids of the documented methods a request is (``path``: ``/v1/...`` or ``v1/...``, decoded)."""
    path = path.lstrip("/")
    last = path.rsplit("/", 1)[-1]
    verb = last.rsplit(":", 1)[1] if ":" in last else None
    bare = path[: -len(verb) - 1] if verb else path
    return sorted(
        method.id
        for method in methods().values()
        if method.http_method == http_method and method.verb == verb and method.regex.fullmatch(bare)
    )


def normalized(template: str) -> str:
    """A path template with its placeholders' names left out: ``.../studies/{}/series/{}``."""
    return _PARAM.sub("{}", template)


def json_schema(name: str) -> dict[str, Any]:
    """The discovery schema ``name`` as a JSON Schema (draft 2020-12) with every schema it refers to."""
    schemas = document()["schemas"]
    return {"$ref": f"#/$defs/{name}", "$defs": {key: _convert(value) for key, value in schemas.items()}}


def _convert(spec: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in spec:
        return {"$ref": f"#/$defs/{spec['$ref']}"}
    kind = spec.get("type")
    if kind == "any":
        return {}
    if kind == "object":
        out: dict[str, Any] = {"type": "object"}
        if "properties" in spec:
            out["properties"] = {key: _convert(value) for key, value in spec["properties"].items()}
            out["properties"]["@type"] = {"type": "string"}  # a message packed in a google.protobuf.Any
            out["additionalProperties"] = False
        if "additionalProperties" in spec:
            out["additionalProperties"] = _convert(spec["additionalProperties"])
        return out
    if kind == "array":
        return {"type": "array", "items": _convert(spec.get("items", {}))}
    if kind == "string":
        string: dict[str, Any] = {"type": "string"}
        if spec.get("format") in ("int64", "uint64"):
            string["pattern"] = r"^-?[0-9]+$"
        elif spec.get("format") == "google-datetime":
            string["pattern"] = RFC3339_UTC
        if "enum" in spec:
            string["enum"] = spec["enum"]
        return string
    if kind == "integer":
        return {"type": "integer"}
    if kind == "number":
        return {"type": "number"}
    if kind == "boolean":
        return {"type": "boolean"}
    raise ValueError(f"a discovery type this converter does not know: {spec}")
