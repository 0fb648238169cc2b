"""The emulator's one error: answered with Google's JSON error shape (see ``messages.error_response``)."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered with Google's JSON error shape."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []
