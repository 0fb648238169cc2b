"""Fixtures of the contract tests: the Healthcare API emulator in-process on 127.0.0.1, reading Cloud Storage
from a real fake-gcs-server (also on 127.0.0.1) for imports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from infra.local.healthcare_emulator import HealthcareEmulator, start_emulator
from infra.local.stack.gcs import FakeGcs

STORE = "projects/p/locations/us-central1/datasets/d/dicomStores/s"


@dataclass
class Api:
    emulator: HealthcareEmulator
    gcs: FakeGcs
    bucket: str
    http: requests.Session

    @property
    def url(self) -> str:
        return self.emulator.url

    def admin(self, method: str, path: str, json: object = None) -> requests.Response:
        resp = self.http.request(method, f"{self.url}/emulator/{path}", json=json, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp

    def upload(self, name: str, data: bytes) -> None:
        resp = self.http.post(
            f"{self.gcs.admin_url}/upload/storage/v1/b/{self.bucket}/o",
            params={"uploadType": "media", "name": name},
            data=data,
            timeout=30,
        )
        assert resp.status_code == 200, resp.text


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGcs]:
    server = FakeGcs(tmp_path_factory.mktemp("gcs"), front=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(tmp_path: Path, gcs: FakeGcs) -> Iterator[Api]:
    emu = start_emulator("127.0.0.1", 0, tmp_path / "data", operation_delay=0.2, storage_url=gcs.admin_url)
    bucket = gcs.create_bucket(f"contract-{uuid.uuid4().hex[:12]}")
    try:
        with requests.Session() as http:
            http.trust_env = False
            env = Api(emu, gcs, bucket, http)
            env.admin("POST", "stores", {"name": STORE})
            yield env
    finally:
        emu.stop()
