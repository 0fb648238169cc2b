"""`python -m worker` (worker/cli/program.py): --help, and importing the CLI costs nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.cli_fakes import run_cli
from worker.cli import EXIT_OK


@pytest.mark.parametrize("command", [[], ["submit"], ["fan-out"], ["run"], ["events"]])
def test_help_exits_0(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, _ = run_cli(capsys, *command, "--help")
    assert code == EXIT_OK
    assert out.startswith(f"usage: python -m worker {' '.join(command)}".rstrip())


def test_importing_the_cli_makes_no_client_and_imports_no_google_library() -> None:
    heavy = ("google.cloud.pubsub_v1", "google.cloud.storage", "google.auth", "google.api_core", "requests")
    code = f"import sys, worker.cli; print([n for n in {heavy!r} if n in sys.modules])"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
