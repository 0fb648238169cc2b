"""Fixtures shared by the worker's integration tests (the stack itself is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

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
    return stack.storage_client()
