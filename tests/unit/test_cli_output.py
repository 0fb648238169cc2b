"""What the CLI writes on stderr (worker/cli/output.py): sizes and the progress line."""

from __future__ import annotations

import io

import pytest

from tests.unit.cli_fakes import Clock
from worker.cli.output import ProgressLine, human_size


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**3, "5.0 GiB"), (2 * 1024**5, "2048.0 TiB")],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_off_a_terminal_writes_lines_at_most_every_interval() -> None:
    stream, clock = io.StringIO(), Clock()
    line = ProgressLine(stream, interval=2.0, clock=clock)
    for step in range(1, 6):
        clock.now = step * 0.9
        line.update(f"step {step}")
    line.close()
    line.close()
    assert stream.getvalue().splitlines() == ["step 1", "step 4", "step 5"]


def test_progress_line_on_a_terminal_redraws_in_place() -> None:
    stream, clock = FakeTty(), Clock()
    line = ProgressLine(stream, clock=clock)
    line.update("published 10/100")
    clock.now = 0.05
    line.update("published 20/100")  # too soon: not drawn
    clock.now = 1.0
    line.update("published 9/9")
    line.close()
    assert stream.getvalue() == "\rpublished 10/100\rpublished 9/9   \n"


def test_progress_line_never_updated_writes_nothing() -> None:
    stream = io.StringIO()
    ProgressLine(stream).close()
    assert stream.getvalue() == ""
