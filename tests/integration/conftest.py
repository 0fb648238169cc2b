"""Fixtures shared by the worker's integration tests (the stack itself is in tests/conftest.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from infra.local.stack import Deployment, Event, HealthcareEmulator, PubSubRest, Stack
from tests.integration.helpers import EmulatorAdmin
from tests.schemas import assert_valid_event, assert_valid_request

# Messages checked against schemas/*.json: every event pulled from a deployment's completion
# subscription, every follow-up the function publishes to itself (a tap on the request topic), and every
# JSON-object request a test publishes. Raw payloads (the hostile corpus, malformed data, store
# notifications) are not requests of the schema. test_stack.py drives a probe function, not the worker.
_COMPLETIONS = re.compile(r".*/subscriptions/completions-\d+-pull")
_TAPS = re.compile(r".*/subscriptions/requests-\d+-tap-\d+")
_UNCHECKED_FILES = {"test_stack.py"}
_current_file = ""


@pytest.fixture(autouse=True)
def _current_test_file(request: pytest.FixtureRequest) -> None:
    global _current_file
    _current_file = request.node.path.name


@pytest.fixture(scope="session", autouse=True)
def _schema_checked_messages() -> Iterator[None]:
    publish = Deployment.publish
    pull_once = PubSubRest.pull_once

    def checked_publish(
        self: Deployment, data: bytes | str | Mapping[str, Any], attributes: Mapping[str, str] | None = None
    ) -> str:
        if isinstance(data, Mapping) and _current_file not in _UNCHECKED_FILES:
            assert_valid_request(dict(data))
        return publish(self, data, attributes)

    def checked_pull_once(self: PubSubRest, subscription: str, max_messages: int) -> list[Event]:
        events = pull_once(self, subscription, max_messages)
        if _current_file not in _UNCHECKED_FILES:
            for event in events:
                if _COMPLETIONS.fullmatch(subscription):
                    assert_valid_event(event.data)
                elif _TAPS.fullmatch(subscription) and "continuation" in event.attributes:
                    assert_valid_request(event.data)  # a follow-up the worker signed
        return events

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Deployment, "publish", checked_publish)
        patch.setattr(PubSubRest, "pull_once", checked_pull_once)
        yield


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
