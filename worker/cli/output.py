"""What the commands write besides their results: one-line messages on stderr, and a progress line."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO


def print_error(message: str) -> None:
    """One line on stderr, at once."""
    print(message, file=sys.stderr, flush=True)


def reason(failure: BaseException) -> str:
    """One line naming a library failure (google.api_core errors can span lines)."""
    text = str(failure).strip().splitlines()
    first = text[0] if text else ""
    name = type(failure).__name__
    return f"{name}: {first[:200]}" if first else name


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class ProgressLine:
    """One status line on stderr: redrawn in place on a terminal; elsewhere (a pipe, a log file) written
    as a line at most every `interval` seconds, and once more, with the final state, on `close`."""

    def __init__(
        self,
        stream: TextIO,
        *,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._tty = _isatty(stream)
        self._interval = interval if interval is not None else (0.1 if self._tty else 2.0)
        self._clock = clock
        self._lock = threading.Lock()
        self._text = ""
        self._drawn = ""
        self._last = float("-inf")
        self._width = 0

    def update(self, text: str) -> None:
        with self._lock:
            self._text = text
            now = self._clock()
            if now - self._last >= self._interval:
                self._last = now
                self._draw()

    def close(self) -> None:
        """Show the final state (if there ever was one) and end the line."""
        with self._lock:
            if not self._text:
                return
            if self._text != self._drawn:
                self._draw()
            if self._tty:
                self._stream.write("\n")
                self._stream.flush()
            self._text = self._drawn = ""

    def _draw(self) -> None:
        if self._tty:
            self._stream.write("\r" + self._text.ljust(self._width))
            self._width = len(self._text)
        else:
            self._stream.write(self._text + "\n")
        self._stream.flush()
        self._drawn = self._text


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
