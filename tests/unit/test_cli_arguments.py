"""The grammar (worker/cli/arguments.py): a bad argument is one line and exit 2, and no client is made."""

from __future__ import annotations

import pytest

from tests.unit.cli_fakes import SUBSCRIPTION, run_cli, usage_line
from tests.unit.fakes import SERIES_PATH, STORE
from worker.cli import EXIT_USAGE


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        ([], "python -m worker: error: the following arguments are required: COMMAND"),
        (["copy"], "python -m worker: error: argument COMMAND: invalid choice: 'copy'"),
        (["submit"], "python -m worker submit: error: the following arguments are required: ACTION, SERIES"),
        (
            ["submit", "copy", SERIES_PATH],
            "python -m worker submit: error: argument ACTION: invalid choice: 'copy'"
            " (choose from 'search', 'retrieve', 'delete', 'archive', 'restore', 'verify', 'tier')",
        ),
        (
            ["submit", "retrieve", SERIES_PATH, "--option", "mode"],
            "python -m worker submit: error: argument --option: expected key=value, got 'mode'",
        ),
        (
            ["submit", "search", SERIES_PATH, "--bogus"],
            "python -m worker: error: unrecognized arguments: --bogus",
        ),
        (
            ["fan-out", "search", STORE, "--page-size", "0"],
            "python -m worker fan-out: error: argument --page-size: expected a positive integer, got '0'",
        ),
        (
            ["fan-out", "search", STORE, "--modality", "C-T"],
            "python -m worker fan-out: error: argument --modality: 'C-T' is not a modality code",
        ),
        (
            ["fan-out", "search", STORE, "--study-date", "2024"],
            "python -m worker fan-out: error: argument --study-date: '2024' is not a date YYYYMMDD",
        ),
        (
            ["fan-out", "search", STORE, "--study-date", "20240230"],
            "python -m worker fan-out: error: argument --study-date: '20240230' is not a date YYYYMMDD",
        ),
        (
            ["fan-out", "search", STORE, "--study-date", "20241231-20240101"],
            "python -m worker fan-out: error: argument --study-date:"
            " the range '20241231-20240101' ends before it starts",
        ),
        (
            ["fan-out", "search", STORE, "--study-date", "-"],
            "python -m worker fan-out: error: argument --study-date: '-' is not a date YYYYMMDD or a range",
        ),
        (
            ["fan-out", "search", STORE, "--request-id", "x"],
            "python -m worker: error: unrecognized arguments: --request-id x",
        ),
        (
            ["run", "search", SERIES_PATH, "--deadline", "soon"],
            "python -m worker run: error: argument --deadline: expected a positive integer, got 'soon'",
        ),
        (["events"], "python -m worker events: error: the following arguments are required: --subscription"),
        (
            ["events", "--subscription", SUBSCRIPTION, "--wait", "0"],
            "python -m worker events: error: argument --wait: expected a positive number of seconds, got '0'",
        ),
        (
            ["events", "--subscription", SUBSCRIPTION, "--format", "xml"],
            "python -m worker events: error: argument --format: invalid choice: 'xml'",
        ),
        (
            ["events", "--subscription", SUBSCRIPTION, "--max", "-1"],
            "python -m worker events: error: argument --max: expected a positive integer, got '-1'",
        ),
    ],
)
def test_argparse_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], line: str) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == EXIT_USAGE
    assert out == ""
    assert usage_line(err).startswith(line)
    assert usage_line(err).endswith("--help)")
