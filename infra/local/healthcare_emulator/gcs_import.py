"""The Cloud Storage side of ``dicomStores.import``: the request body, the ``gs://`` pattern, and listing and
reading objects through the Cloud Storage JSON API of a local server (fake-gcs-server), with no credentials.

The pattern follows Google's description of ``GoogleCloudHealthcareV1DicomGcsSource.uri``: ``gs://{bucket}/
{object}`` where the object may hold ``*`` (0 or more characters but ``/``), ``?`` (one character but ``/``)
or ``**`` (0 or more characters, ``/`` included) at the end of the path, with no other wildcard, optionally
followed by an extension (``**.dcm``). Anything else answers 400 before an operation starts.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from .errors import ApiError

IMPORT_METHOD = "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData"
IMPORT_RESPONSE_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.dicom.ImportDicomDataResponse"
BLOB_STORAGE_CLASSES = frozenset(
    {"BLOB_STORAGE_CLASS_UNSPECIFIED", "STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"}
)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_TIMEOUT = 60.0


@dataclass(frozen=True)
class GcsPattern:
    """A parsed ``gcsSource.uri``: the bucket, the literal prefix to list, and the whole-name matcher."""

    uri: str
    bucket: str
    prefix: str
    regex: re.Pattern[str]

    def matches(self, name: str) -> bool:
        return self.regex.fullmatch(name) is not None


class ImportFailed(Exception):
    """Cloud Storage could not be listed or read: ends the operation (``code`` is a google.rpc.Code)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> ApiError:
    return ApiError(400, message)


def parse_gcs_uri(uri: str) -> GcsPattern:
    """``gs://bucket/path`` with Google's wildcards; ApiError 400 naming what is wrong."""
    if not uri.startswith("gs://"):
        raise _invalid(f"gcsSource.uri must be gs://{{bucket_id}}/{{object_id}}, not {uri!r}")
    bucket, sep, name = uri[len("gs://") :].partition("/")
    if not _BUCKET.fullmatch(bucket) or not sep or not name:
        raise _invalid(f"gcsSource.uri must be gs://{{bucket_id}}/{{object_id}}, not {uri!r}")
    if "**" in name:
        head, _, tail = name.partition("**")
        if any(c in head for c in "*?") or any(c in tail for c in "*?/"):
            raise _invalid(
                f"invalid gcsSource.uri {uri!r}: '**' must end the path (optionally followed by an extension"
                " such as .dcm) and no other wildcard may be used with it"
            )
    regex = ""
    for token in re.split(r"(\*\*|\*|\?)", name):
        regex += {"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
    prefix = re.split(r"[*?]", name, maxsplit=1)[0]
    return GcsPattern(uri, bucket, prefix, re.compile(regex, re.DOTALL))


def parse_import_request(body: bytes) -> GcsPattern:
    """An ``ImportDicomDataRequest``: ``{"gcsSource": {"uri": ...}, "blobStorageSettings"?: {...}}``.

    Unknown fields answer 400 as Google's JSON parser does ("Invalid JSON payload received. Unknown
    name")."""
    try:
        spec: Any = json.loads(body) if body.strip() else {}
    except ValueError as exc:
        raise _invalid(f"Invalid JSON payload received. {exc}") from exc
    if not isinstance(spec, dict):
        raise _invalid("Invalid JSON payload received. The request must be an ImportDicomDataRequest object.")
    _no_unknown(spec, {"gcsSource", "blobStorageSettings"}, "")
    settings = spec.get("blobStorageSettings")
    if settings is not None:
        if not isinstance(settings, dict):
            raise _invalid("Invalid JSON payload received. blobStorageSettings must be an object.")
        _no_unknown(settings, {"blobStorageClass"}, "blobStorageSettings.")
        storage_class = settings.get("blobStorageClass", "BLOB_STORAGE_CLASS_UNSPECIFIED")
        if storage_class not in BLOB_STORAGE_CLASSES:
            raise _invalid(f"Invalid value at 'blob_storage_settings.blob_storage_class': {storage_class!r}")
    source = spec.get("gcsSource")
    if not isinstance(source, dict):
        raise _invalid('gcsSource is required: {"gcsSource": {"uri": "gs://bucket/path/**.dcm"}}')
    _no_unknown(source, {"uri"}, "gcsSource.")
    uri = source.get("uri")
    if not isinstance(uri, str):
        raise _invalid("gcsSource.uri is required and must be a string")
    return parse_gcs_uri(uri)


def _no_unknown(obj: dict[str, Any], known: set[str], where: str) -> None:
    for key in obj:
        if key not in known:
            raise _invalid(f'Invalid JSON payload received. Unknown name "{where}{key}": Cannot find field.')


def check_storage_url(url: str) -> str:
    """``http://127.0.0.1:PORT`` (no trailing slash); ValueError unless http(s) on a loopback address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the storage URL must be http://HOST:PORT, not {url!r}")
    try:
        address = ipaddress.ip_address(socket.gethostbyname(parts.hostname))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot resolve the storage URL's host {parts.hostname!r}") from exc
    if not address.is_loopback:
        raise ValueError(f"the emulator reads Cloud Storage on loopback addresses only, not {url!r}")
    return url.rstrip("/")


class GcsReader:
    """Lists and downloads objects through the Cloud Storage JSON API at ``base_url`` (loopback only, no
    credentials, proxies from the environment ignored)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = check_storage_url(base_url)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _get(self, path: str, query: dict[str, str], what: str) -> bytes:
        url = f"{self.base_url}{path}?{urlencode(query)}"
        try:
            with self._opener.open(url, timeout=_TIMEOUT) as response:
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise ImportFailed(5, f"{what} not found") from None
            raise ImportFailed(14, f"Cloud Storage answered {exc.code} for {what}") from None
        except OSError as exc:
            raise ImportFailed(14, f"Cloud Storage is unreachable: {exc}") from None

    def list(self, pattern: GcsPattern) -> list[str]:
        """The names of the bucket's objects the pattern matches, in the listing's (lexicographic) order."""
        names: list[str] = []
        token: str | None = None
        while True:
            query = {"prefix": pattern.prefix}
            if token:
                query["pageToken"] = token
            try:
                path = f"/storage/v1/b/{quote(pattern.bucket, safe='')}/o"
                page = json.loads(self._get(path, query, f"bucket gs://{pattern.bucket}"))
            except ValueError:
                raise ImportFailed(14, "Cloud Storage sent a listing that is not JSON") from None
            names += [
                item["name"]
                for item in page.get("items", [])
                if isinstance(item.get("name"), str) and pattern.matches(item["name"])
            ]
            token = page.get("nextPageToken")
            if not token:
                return names

    def read(self, bucket: str, name: str) -> bytes:
        path = f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
        return self._get(path, {"alt": "media"}, f"object gs://{bucket}/{name}")
