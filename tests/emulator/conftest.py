"""Fixtures for the conformance tests of the Healthcare API emulator (in-process, loopback only)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom.data
import pytest
import requests

from infra.local.healthcare_emulator import HealthcareEmulator, start_emulator
from infra.local.stack.gcs import FakeGcs

STORE = "projects/p/locations/us-central1/datasets/d/dicomStores/s"
TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"


def pydicom_file(name: str) -> Path:
    """A file shipped in pydicom's wheel (never fetched from the network)."""
    path = TEST_FILES / name
    assert path.is_file(), path
    return path


@dataclass
class Env:
    emulator: HealthcareEmulator
    http: requests.Session

    @property
    def url(self) -> str:
        return self.emulator.url

    @property
    def root(self) -> str:
        return self.emulator.dicomweb_root(STORE)

    def admin(self, method: str, path: str, json: object = None) -> requests.Response:
        resp = self.http.request(method, f"{self.url}/emulator/{path}", json=json, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp

    def seed(self, study: str, series: str, count: int, **extra: object) -> dict[str, object]:
        spec = {"store": STORE, "study": study, "series": series, "count": count, **extra}
        result: dict[str, object] = self.admin("POST", "seed", spec).json()
        return result

    def stow(self, parts: list[bytes], boundary: str = "stow-boundary-1234") -> requests.Response:
        body = b"".join(
            b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n"
            for part in parts
        )
        body += b"--" + boundary.encode() + b"--\r\n"
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
        return self.http.post(f"{self.root}/studies", data=body, headers=headers, timeout=30)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[HealthcareEmulator]:
    emu = start_emulator("127.0.0.1", 0, tmp_path / "data", operation_delay=0.3)
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def env(emulator: HealthcareEmulator) -> Iterator[Env]:
    with requests.Session() as http:
        e = Env(emulator, http)
        e.admin("POST", "stores", {"name": STORE})
        yield e


def parse_multipart(resp: requests.Response) -> tuple[str, list[tuple[dict[str, str], bytes]]]:
    """An independent multipart/related parser: (boundary, [(headers, content)]), strict about framing."""
    content_type = resp.headers["Content-Type"]
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    assert match, content_type
    boundary = match.group(1).encode()
    body = resp.content
    assert body.startswith(b"--" + boundary + b"\r\n"), body[:80]
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n"), body[-80:]
    parts = []
    pos = 0
    delimiter = b"--" + boundary
    while True:
        assert body[pos : pos + len(delimiter)] == delimiter
        pos += len(delimiter)
        if body[pos : pos + 2] == b"--":
            break
        assert body[pos : pos + 2] == b"\r\n"
        pos += 2
        head_end = body.index(b"\r\n\r\n", pos)
        headers = {}
        for line in body[pos:head_end].decode().split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = head_end + 4
        length = int(headers["content-length"])
        content = body[start : start + length]
        assert body[start + length : start + length + 2] == b"\r\n"
        parts.append((headers, content))
        pos = start + length + 2
    return match.group(1), parts


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGcs]:
    """fake-gcs-server on 127.0.0.1 (no permission front: import reads as the Healthcare service agent)."""
    server = FakeGcs(tmp_path_factory.mktemp("gcs"), front=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class ImportEnv(Env):
    gcs: FakeGcs
    bucket: str

    def upload(self, name: str, data: bytes) -> None:
        resp = self.http.post(
            f"{self.gcs.admin_url}/upload/storage/v1/b/{self.bucket}/o",
            params={"uploadType": "media", "name": name},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text

    def start_import(self, uri: str, **extra: object) -> requests.Response:
        body = {"gcsSource": {"uri": uri}, **extra}
        return self.http.post(f"{self.url}/v1/{STORE}:import", json=body, timeout=30)


@pytest.fixture
def importing(tmp_path: Path, gcs: FakeGcs) -> Iterator[ImportEnv]:
    """An emulator that imports from `gcs`, its store, and a fresh bucket of the test's own."""
    emu = start_emulator("127.0.0.1", 0, tmp_path / "data", operation_delay=0.3, storage_url=gcs.admin_url)
    bucket = gcs.create_bucket(f"import-{uuid.uuid4().hex[:12]}")
    try:
        with requests.Session() as http:
            http.trust_env = False
            e = ImportEnv(emu, http, gcs, bucket)
            e.admin("POST", "stores", {"name": STORE})
            yield e
    finally:
        emu.stop()
