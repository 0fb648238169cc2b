"""The worker's errors, and the one rule that turns a failure into "acknowledge" or "redeliver".

    WorkerError
    ├── PermanentError   the request can never succeed as sent: publish a failed event, then acknowledge
    │                    (Pub/Sub must not redeliver a poison message forever). Carries a stable `code`.
    ├── RetryableError   a transient fault (429, 5xx, timeouts, dropped connections, a failed publish):
    │   │                raise to functions-framework, which answers 500, and Pub/Sub redelivers.
    │   └── InstanceGone an instance the search listed answers 404: a redelivery searches again
    ├── SourceGone       a 404 from the DICOMweb server: the caller decides "absent" or an error
    └── ObjectExists     a create-only write met an existing object (another delivery may have written it)

SourceGone and ObjectExists are answers of a boundary, not failures of a request: the caller always
handles them; one that escapes is a defect (retried, then reported by type).

Each external system's module translates its library's exceptions into these at its boundary, so the
handlers never see `requests` or `google.api_core` errors. Messages carry UIDs and counts only, never
DICOM attribute values: they end up in events and logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Code(StrEnum):
    """Stable codes of failed completion events (README lists them; subscribers may filter on them)."""

    INVALID_MESSAGE = "invalid_message"  # not UTF-8 JSON, or not an object, or too large
    INVALID_REQUEST = "invalid_request"  # well-formed JSON with wrong or missing fields
    SERIES_NOT_FOUND = "series_not_found"  # the series has no instances (retrieve, archive)
    DESTINATION_MISSING = "destination_missing"  # no destination in the request and no DEFAULT_DESTINATION
    DESTINATION_NOT_ALLOWED = "destination_not_allowed"  # outside ALLOWED_BUCKETS
    DESTINATION_REFUSED = "destination_refused"  # Cloud Storage refused the write (no bucket, no permission)
    DESTINATION_CONFLICT = "destination_conflict"  # an object differs from the source: never overwritten
    STORE_NOT_ALLOWED = "store_not_allowed"  # outside ALLOWED_DICOM_STORES
    DELETE_DISABLED = "delete_disabled"  # delete or archive without DELETE_ENABLED=true
    DELETE_NOT_SUPPORTED = "delete_not_supported"  # the DICOMweb server refuses DELETE (405, 501)
    DELETE_FAILED = "delete_failed"  # the delete operation finished with an error
    IMPORT_FAILED = "import_failed"  # restore by import: the import operation finished with an error
    SERIES_NOT_EMPTY = "series_not_empty"  # after delete or archive the series still holds instances
    VERIFICATION_FAILED = "verification_failed"  # archive, restore, verify: a copy does not match
    UNSUPPORTED_INSTANCE = "unsupported_instance"  # an instance without a valid SOP Instance UID
    INSTANCE_UNREADABLE = "instance_unreadable"  # retrieved bytes name no SOP Instance UID that can be read
    SEARCH_INCOMPLETE = "search_incomplete"  # the server's paging cannot return the whole series
    SOURCE_REFUSED = "source_refused"  # the DICOMweb server refused the request (400, 403, 406, ...)
    SOURCE_INVALID_RESPONSE = "source_invalid_response"  # a body too large, too deep or with oversize numbers
    RETRIES_EXHAUSTED = "retries_exhausted"  # transient failures on the last delivery attempt
    RESULT_TOO_LARGE = "result_too_large"  # a result does not fit an event and has nowhere to go
    RESTORE_CONFLICT = "restore_conflict"  # restore: the store holds the instance with other bytes
    RESTORE_DISABLED = "restore_disabled"  # restore without RESTORE_ENABLED=true
    TIER_FAILED = "tier_failed"  # tier: the setBlobStorageSettings operation finished with an error
    TIER_NOT_SUPPORTED = "tier_not_supported"  # tier on a DICOMweb server other than the Healthcare API
    REQUEST_TOPIC_MISSING = "request_topic_missing"  # sweep: no REQUEST_TOPIC to publish its requests onto


class WorkerError(Exception):
    """Root of every error the worker raises on purpose."""


class PermanentError(WorkerError):
    """The request cannot succeed as sent: report it in a failed event and acknowledge the message."""

    def __init__(self, code: Code, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = dict(details or {})

    def as_event_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": str(self.code), "message": self.message}
        if self.details:
            error["details"] = self.details
        return error


class RetryableError(WorkerError):
    """A transient failure: raise it so that Pub/Sub redelivers the message."""


class InstanceGone(RetryableError):
    """An instance found by the search is gone (404): not worth retrying now; a redelivery searches again."""


class InvalidValue(ValueError):
    """A value (a UID, a store or series path, a bucket name) is not valid. Raised by the value objects in
    `worker.models`; the request parser reports it as invalid_request, the settings as a SettingsError."""


class SettingsError(ValueError):
    """A setting is missing or malformed: the deployment is wrong, not the message."""


class MultipartError(ValueError):
    """The body is not a well-formed multipart body (or the Content-Type has no usable boundary); the
    DICOMweb boundary translates it to RetryableError."""


class MultipartTruncatedError(MultipartError):
    """The body ended before its closing delimiter ``--boundary--`` (e.g. the connection dropped)."""


class OperationRunning(Exception):
    """A long-running operation is not done yet: the signal of the poll's retry rule."""


class SourceGone(WorkerError):
    """A 404 from the source: the caller decides whether that is "absent" or an error."""


class ObjectExists(WorkerError):
    """A create-only write met an existing object (another delivery may have written it)."""


def invalid(message: str, **details: Any) -> PermanentError:
    """Shorthand for the most common permanent error, a request with a bad field."""
    return PermanentError(Code.INVALID_REQUEST, message, details or None)
