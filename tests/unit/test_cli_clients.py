"""Making clients (worker/cli/clients.py): missing Google credentials are a usage error."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.cli_fakes import run_cli, usage_line
from tests.unit.fakes import SERIES_PATH
from worker.cli import EXIT_USAGE, Clients


def test_missing_google_credentials_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials() -> Any:
        raise DefaultCredentialsError("Your default credentials were not found.\nSee the docs.")

    clients = Clients(publisher=no_credentials)
    code, _, err = run_cli(capsys, "submit", "search", SERIES_PATH, clients=clients)
    assert code == EXIT_USAGE
    assert usage_line(err) == (
        "python -m worker submit: error: no Google credentials: Your default credentials were not found."
    )
