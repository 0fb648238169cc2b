"""The operator CLI's unit tests share these: the environment, a fake publisher client, and `run_cli`,
which runs `main` with clients that fail the test if a command makes one it was not given."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.unit.fakes import REQUEST_TOPIC, STORE, STUDY
from worker.cli import Clients, main
from worker.models import DicomStore

ENV = {"REQUEST_TOPIC": REQUEST_TOPIC, "CONTINUATION_KEYS": "cli-1=" + "k" * 32}
DICOMWEB_ENV = {**ENV, "DICOMWEB_URL": "https://pacs.example.org/dicom-web", "DICOMWEB_AUTH": "none"}
SUBSCRIPTION = "projects/my-project/subscriptions/series-done-pull"
STORE_REF = DicomStore.parse(STORE)
STUDY_PATH = f"{STORE}/dicomWeb/studies/{STUDY}"


@dataclass
class FakePublisherClient:
    """google.cloud.pubsub_v1.PublisherClient as far as the CLI uses it: publish() hands out futures."""

    fail_for: Callable[[dict[str, Any]], BaseException | None] = lambda body: None
    refuse: bool = False
    published: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    stopped: bool = False

    def publish(self, topic: str, data: bytes, **attributes: str) -> Future[str]:
        if self.refuse:
            raise ValueError("the client is stopped")
        body = json.loads(data)
        self.published.append((topic, body, attributes))
        future: Future[str] = Future()
        error = self.fail_for(body)
        if error is None:
            future.set_result(str(len(self.published)))
        else:
            future.set_exception(error)
        return future

    def stop(self) -> None:
        self.stopped = True


def no_clients() -> Clients:
    """Clients that fail the test if a command makes one (bad arguments must stop before any)."""

    def never(*_: Any) -> Any:
        raise AssertionError("a client was made")

    return Clients(publisher=never, subscriber=never, dicomweb=never, worker=never, storage=never)


def run_cli(
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    env: dict[str, str] | None = None,
    clients: Clients | None = None,
) -> tuple[int, str, str]:
    code = main(list(argv), env=ENV if env is None else env, clients=clients or no_clients())
    out, err = capsys.readouterr()
    return code, out, err


def usage_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now
