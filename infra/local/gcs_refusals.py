"""What Cloud Storage answers a principal with objectCreator + objectViewer instead of doing a request:
the refusals of the permission front (infra/local/gcs_front.py), in Cloud Storage's JSON error shape."""

from __future__ import annotations

import base64
import json
from typing import Any

import google_crc32c


def crc32c_base64(data: bytes | Any) -> str:
    checksum = data if isinstance(data, google_crc32c.Checksum) else google_crc32c.Checksum(data)
    return base64.b64encode(checksum.digest()).decode("ascii")


class Refusal(Exception):
    """An answer Cloud Storage would give instead of doing the request."""

    REASONS = {400: "invalid", 403: "forbidden", 404: "notFound", 411: "required", 412: "conditionNotMet"}

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> bytes:
        error = {"message": self.message, "domain": "global", "reason": self.REASONS.get(self.status, "")}
        return json.dumps(
            {"error": {"code": self.status, "message": self.message, "errors": [error]}}
        ).encode()


def forbidden(permission: str, bucket: str, name: str) -> Refusal:
    return Refusal(
        403,
        f"function@local-project.iam.gserviceaccount.com does not have {permission} access to the Google"
        f" Cloud Storage object. Permission '{permission}' denied on resource (or it may not exist)."
        f" ({bucket}/{name})",
    )


PRECONDITION_FAILED = "At least one of the pre-conditions you specified did not hold."


def flip(data: bytes, at: int = 0) -> bytes:
    if at >= len(data):
        return data
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def claimed_crc32c(x_goog_hash: str) -> str | None:
    for item in x_goog_hash.split(","):
        kind, _, value = item.strip().partition("=")
        if kind == "crc32c":
            return value
    return None


def refuse_crc32c(claimed: str | None, actual: str) -> None:
    if claimed is not None and claimed != actual:
        raise Refusal(400, f'Provided CRC32C "{claimed}" doesn\'t match calculated CRC32C "{actual}".')
