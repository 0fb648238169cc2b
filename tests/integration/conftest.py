"""Fixtures shared by the worker's integration tests (the stack itself is in tests/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.stack import HealthcareEmulator, Stack
from tests.integration.helpers import EmulatorAdmin


@pytest.fixture
def emulator(stack: Stack, healthcare: HealthcareEmulator) -> Iterator[EmulatorAdmin]:
    """The emulator's admin API; faults and configuration are reset after each test."""
    admin = EmulatorAdmin(stack.healthcare_admin_url, stack.healthcare_url)
    yield admin
    admin.clear_faults()
    admin.config(operationDelay=0.5, absentDelete="404")


@pytest.fixture(scope="session")
def storage_client(stack: Stack) -> object:
    """A client with the function's rights (through the permission front: create-only)."""
    return stack.storage_client()


@pytest.fixture(scope="session")
def admin_storage(stack: Stack) -> object:
    """A client past the permission front, for a test that must replace or remove an object."""
    return stack.storage_client(admin=True)


_STARTED = time.time()
ABUSE_FIGURES = Path(__file__).resolve().parents[2] / "bench" / "out" / "abuse-figures.txt"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show the fault and abuse suite's figures at the end of the run, when it ran in this session."""
    if ABUSE_FIGURES.exists() and ABUSE_FIGURES.stat().st_mtime >= _STARTED:
        terminalreporter.section("fault and abuse suite")
        for line in ABUSE_FIGURES.read_text(encoding="utf-8").splitlines():
            terminalreporter.write_line(line)
