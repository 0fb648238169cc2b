"""Signed follow-ups: only the worker can make a message that carries `operation`, `instance` or a nonzero
`continuation`.

A follow-up tells the worker to skip work (wait on an operation instead of deleting, copy one instance, go
on where it stopped), so a sender who could forge one could have a series reported deleted with nothing
done. The worker signs the whole follow-up body with HMAC-SHA256 under a key only it holds
(CONTINUATION_KEYS or CONTINUATION_KEYS_FILE), and the signature binds every field: moved onto another
series, request, operation or action it no longer verifies.

Keys rotate without refusing follow-ups in flight: the first key of the ring signs, every key verifies.
Add the new key second and deploy, move it first and deploy, then drop the old one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SIGNATURE_FIELD = "signature"
MIN_SECRET_CHARS = 32
_SCHEME = "v1"
_CONTEXT = b"dicom-series-worker/continuation/v1\n"  # a MAC of this kind can be nothing else
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_SIGNATURE = re.compile(r"v1:([A-Za-z0-9_-]{1,32}):([A-Za-z0-9_-]{43})")
_ENTRY_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Key:
    key_id: str
    secret: bytes = field(repr=False)  # never in a repr, a log or an error message


@dataclass(frozen=True)
class KeyRing:
    """One or more keys: the first signs, all verify."""

    keys: tuple[Key, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("give one or more KEY_ID=SECRET entries")

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={self.key_ids!r})"

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(key.key_id for key in self.keys)

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """`KEY_ID=SECRET` entries separated by commas or white space. Errors name an entry by its place,
        never by its text, which may hold a secret."""
        entries = [entry for entry in _ENTRY_SEPARATORS.split(text.strip()) if entry]
        keys: list[Key] = []
        for place, entry in enumerate(entries, 1):
            key_id, equals, secret = entry.partition("=")
            if not equals or not secret:
                raise ValueError(f"entry {place} is not KEY_ID=SECRET")
            if not _KEY_ID.fullmatch(key_id):
                raise ValueError(f"entry {place}: the key id must be 1 to 32 letters, digits, _ or -")
            if len(secret) < MIN_SECRET_CHARS:
                raise ValueError(f"the secret of key {key_id} must be at least {MIN_SECRET_CHARS} characters")
            if any(key.key_id == key_id for key in keys):
                raise ValueError(f"key id {key_id} appears twice")
            keys.append(Key(key_id, secret.encode("utf-8")))
        return cls(tuple(keys))

    def sign(self, body: Mapping[str, Any]) -> str:
        """`v1:<key id>:<base64url MAC>` over `body` (any signature field in it left out)."""
        key = self.keys[0]
        mac = base64.urlsafe_b64encode(_mac(key, body)).rstrip(b"=").decode("ascii")
        return f"{_SCHEME}:{key.key_id}:{mac}"

    def verify(self, body: Mapping[str, Any], signature: object) -> bool:
        """Whether `signature` is one of this ring's keys' MAC over exactly `body`; constant-time."""
        found = _SIGNATURE.fullmatch(signature) if isinstance(signature, str) else None
        if found is None:
            return False
        key = next((key for key in self.keys if key.key_id == found.group(1)), None)
        if key is None:
            return False
        try:
            given = base64.urlsafe_b64decode(found.group(2) + "=")
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, _mac(key, body))


def _mac(key: Key, body: Mapping[str, Any]) -> bytes:
    unsigned = {name: value for name, value in body.items() if name != SIGNATURE_FIELD}
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key.secret, _CONTEXT + canonical.encode("utf-8"), hashlib.sha256).digest()
