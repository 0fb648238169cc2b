"""Settings, read once from the environment and validated; a bad value names its variable."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from worker.continuation import KeyRing
from worker.errors import InvalidValue, SettingsError
from worker.models import DICOMWEB_STORE, DicomStore, GcsLocation

_E = TypeVar("_E", bound=StrEnum)
_N = TypeVar("_N", int, float)
_TOPIC = re.compile(r"projects/[a-z0-9.:-]+/topics/[A-Za-z][A-Za-z0-9._~%+-]{2,254}")
_ANY_ID = "any-id"  # valid in every place of a store path: stands in for `*` while DicomStore checks the rest


class Auth(StrEnum):
    GOOGLE = "google"  # Application Default Credentials (the Healthcare API, or any Google-fronted server)
    NONE = "none"  # a local or unauthenticated server
    BASIC = "basic"  # HTTP basic: DICOMWEB_USERNAME and DICOMWEB_PASSWORD or DICOMWEB_PASSWORD_FILE
    BEARER = "bearer"  # DICOMWEB_TOKEN or DICOMWEB_TOKEN_FILE


@dataclass(frozen=True)
class Settings:
    healthcare_api_url: str = "https://healthcare.googleapis.com/v1"
    dicomweb_url: str | None = None
    dicomweb_auth: Auth = Auth.GOOGLE
    dicomweb_username: str | None = None
    dicomweb_secret: str | None = None  # basic password or bearer token; never logged
    dicomweb_delete: str = "standard"  # or "orthanc": delete through Orthanc's own REST API
    orthanc_url: str | None = None  # Orthanc's REST root; default: DICOMWEB_URL without its last path part
    completion_topic: str | None = None
    request_topic: str | None = None
    default_destination: GcsLocation | None = None
    allowed_buckets: tuple[GcsLocation, ...] = ()
    allowed_dicom_stores: tuple[str, ...] = ()  # whole-component patterns, see request.store_allowed
    continuation_keys: KeyRing | None = None  # sign and verify follow-ups; never logged
    delete_enabled: bool = False
    restore_enabled: bool = False  # restore writes into a clinical store: off unless asked for
    concurrency: int = 16
    upload_buffer_mib: int = 128  # bytes that uploads may hold at once (see worker/storage.py)
    deadline_seconds: float = 480.0
    search_page_size: int = 5000
    search_max_offset: int = 1_000_000  # the largest offset the server's search accepts (sweep partitions)
    search_settle_seconds: float = 30.0  # how long a search after deletes may lag behind them
    event_inline_bytes: int = 9_000_000
    http_timeout_seconds: float = 60.0
    retry_total: int = 5
    max_delivery_attempts: int = 5  # the dead-letter policy's; the last attempt ends with a failed event

    def __repr__(self) -> str:
        secret = "***" if self.dicomweb_secret else None
        return f"Settings(dicomweb_url={self.dicomweb_url!r}, auth={self.dicomweb_auth}, secret={secret})"

    def require_continuation_keys(self) -> None:
        """A worker with REQUEST_TOPIC signs what it hands on and verifies what comes back: without a key
        every follow-up would be refused. Checked where a worker is built, not here, so that a publisher
        of new requests (the CLI's submit and fan-out) needs no key."""
        if self.request_topic is not None and self.continuation_keys is None:
            raise SettingsError(
                "REQUEST_TOPIC needs CONTINUATION_KEYS or CONTINUATION_KEYS_FILE (KEY_ID=SECRET entries):"
                " the worker signs the follow-ups it hands on"
            )

    def destination_allowed(self, destination: GcsLocation) -> bool:
        """ALLOWED_BUCKETS, or when unset, only the bucket of DEFAULT_DESTINATION; nothing without either."""
        allowed = self.allowed_buckets
        if not allowed and self.default_destination is not None:
            allowed = (GcsLocation(self.default_destination.bucket, ""),)
        return any(destination.within(entry) for entry in allowed)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        dicomweb_url = get("DICOMWEB_URL")
        auth = _enum(Auth, "DICOMWEB_AUTH", get("DICOMWEB_AUTH") or "google")
        username = get("DICOMWEB_USERNAME")
        secret = None
        if auth is Auth.BASIC:
            if username is None:
                raise SettingsError("DICOMWEB_USERNAME is required with DICOMWEB_AUTH=basic")
            secret = _secret(env, "DICOMWEB_PASSWORD")
        elif auth is Auth.BEARER:
            secret = _secret(env, "DICOMWEB_TOKEN")
        return cls(
            healthcare_api_url=_url(
                "HEALTHCARE_API_URL", get("HEALTHCARE_API_URL") or cls.healthcare_api_url
            ),
            dicomweb_url=_url("DICOMWEB_URL", dicomweb_url) if dicomweb_url else None,
            dicomweb_auth=auth,
            dicomweb_username=username,
            dicomweb_delete=_choice(
                "DICOMWEB_DELETE", get("DICOMWEB_DELETE") or "standard", ("standard", "orthanc")
            ),
            orthanc_url=_url("ORTHANC_URL", get("ORTHANC_URL") or _parent(dicomweb_url))
            if dicomweb_url
            else None,
            dicomweb_secret=secret,
            completion_topic=_topic("COMPLETION_TOPIC", get("COMPLETION_TOPIC")),
            request_topic=_topic("REQUEST_TOPIC", get("REQUEST_TOPIC")),
            default_destination=_location("DEFAULT_DESTINATION", get("DEFAULT_DESTINATION")),
            allowed_buckets=tuple(_allowed_bucket(item) for item in _list(get("ALLOWED_BUCKETS"))),
            allowed_dicom_stores=tuple(
                _store_pattern(place, item)
                for place, item in enumerate(_list(get("ALLOWED_DICOM_STORES")), 1)
            ),
            continuation_keys=_key_ring(env),
            delete_enabled=_bool("DELETE_ENABLED", get("DELETE_ENABLED") or "false"),
            restore_enabled=_bool("RESTORE_ENABLED", get("RESTORE_ENABLED") or "false"),
            concurrency=_int("CONCURRENCY", get("CONCURRENCY"), cls.concurrency, 1, 64),
            upload_buffer_mib=_int(
                "UPLOAD_BUFFER_MIB", get("UPLOAD_BUFFER_MIB"), cls.upload_buffer_mib, 16, 16384
            ),
            deadline_seconds=_float(
                "DEADLINE_SECONDS", get("DEADLINE_SECONDS"), cls.deadline_seconds, 1, 3600
            ),
            search_page_size=_int(
                "SEARCH_PAGE_SIZE", get("SEARCH_PAGE_SIZE"), cls.search_page_size, 1, 50_000
            ),
            search_max_offset=_int(
                "SEARCH_MAX_OFFSET", get("SEARCH_MAX_OFFSET"), cls.search_max_offset, 0, 100_000_000
            ),
            search_settle_seconds=_float(
                "SEARCH_SETTLE_SECONDS", get("SEARCH_SETTLE_SECONDS"), cls.search_settle_seconds, 0, 300
            ),
            event_inline_bytes=_int(
                "EVENT_INLINE_BYTES", get("EVENT_INLINE_BYTES"), cls.event_inline_bytes, 1024, 9_500_000
            ),
            http_timeout_seconds=_float(
                "HTTP_TIMEOUT_SECONDS", get("HTTP_TIMEOUT_SECONDS"), cls.http_timeout_seconds, 1, 600
            ),
            retry_total=_int("RETRY_TOTAL", get("RETRY_TOTAL"), cls.retry_total, 0, 20),
            max_delivery_attempts=_int(
                "MAX_DELIVERY_ATTEMPTS", get("MAX_DELIVERY_ATTEMPTS"), cls.max_delivery_attempts, 5, 100
            ),
        )


def _list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _url(name: str, value: str) -> str:
    if not re.fullmatch(r"https?://[A-Za-z0-9.\[\]:-]+(/[A-Za-z0-9._~%/+-]*)?", value):
        raise SettingsError(f"{name} must be an http(s) URL without query or fragment")
    return value.rstrip("/")


def _topic(name: str, value: str | None) -> str | None:
    if value is not None and not _TOPIC.fullmatch(value):
        raise SettingsError(f"{name} must be a full topic path, projects/{{project}}/topics/{{topic}}")
    return value


def _location(name: str, value: str | None) -> GcsLocation | None:
    if value is None:
        return None
    try:
        return GcsLocation.parse(value)
    except InvalidValue as error:
        raise SettingsError(f"{name}: {error}") from None


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}")
    return value


def _parent(url: str | None) -> str:
    return (url or "").rstrip("/").rsplit("/", 1)[0]


def _allowed_bucket(item: str) -> GcsLocation:
    """An ALLOWED_BUCKETS entry: `bucket`, `bucket/prefix` or `gs://bucket/prefix`."""
    location = _location("ALLOWED_BUCKETS", item if item.startswith("gs://") else f"gs://{item}")
    assert location is not None
    return location


def _store_pattern(place: int, item: str) -> str:
    """An ALLOWED_DICOM_STORES entry: `dicomweb`, or a store path whose every id is a valid literal or
    exactly `*` (one whole id). Anything else would match more, or other, than it seems to say."""
    literal = "/".join(_ANY_ID if part == "*" else part for part in item.split("/"))
    if item != DICOMWEB_STORE and not ("*" not in literal and _is_store(literal)):
        raise SettingsError(
            f"ALLOWED_DICOM_STORES entry {place} must be projects/P/locations/L/datasets/D/dicomStores/S,"
            " each id either literal or exactly * (one whole id), or dicomweb"
        )
    return item


def _is_store(name: str) -> bool:
    try:
        DicomStore.parse(name)
    except InvalidValue:
        return False
    return True


def _key_ring(env: Mapping[str, str]) -> KeyRing | None:
    """CONTINUATION_KEYS, or the file CONTINUATION_KEYS_FILE: `KEY_ID=SECRET` entries, the first signs."""
    if not env.get("CONTINUATION_KEYS", "").strip() and not env.get("CONTINUATION_KEYS_FILE", "").strip():
        return None
    text = _secret(env, "CONTINUATION_KEYS")
    try:
        return KeyRing.parse(text)
    except ValueError as error:  # its message names an entry by place, never by its text
        raise SettingsError(f"CONTINUATION_KEYS: {error}") from None


def _bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise SettingsError(f"{name} must be true or false")


def _int(name: str, value: str | None, default: int, low: int, high: int) -> int:
    return _number(int, "an integer", name, value, default, low, high)


def _float(name: str, value: str | None, default: float, low: float, high: float) -> float:
    return _number(float, "a number", name, value, default, low, high)


def _number(kind: type[_N], what: str, name: str, value: str | None, default: _N, low: _N, high: _N) -> _N:
    if value is None:
        return default
    try:
        number = kind(value)
    except ValueError:
        raise SettingsError(f"{name} must be {what}") from None
    if not low <= number <= high:
        raise SettingsError(f"{name} must be between {low} and {high}")
    return number


def _enum(kind: type[_E], name: str, value: str) -> _E:
    try:
        return kind(value.lower())
    except ValueError:
        raise SettingsError(f"{name} must be one of {', '.join(m.value for m in kind)}") from None


def _secret(env: Mapping[str, str], name: str) -> str:
    """A secret from NAME, or from the file NAME_FILE (a mounted Secret Manager secret)."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path:
        try:
            secret = Path(path).read_text(encoding="utf-8").strip()
        except OSError:
            raise SettingsError(f"{name}_FILE cannot be read") from None
        if not secret:
            raise SettingsError(f"{name}_FILE is empty")
        return secret
    raise SettingsError(f"{name} or {name}_FILE is required")
