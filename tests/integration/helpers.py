"""Helpers for the integration tests: the emulator's admin API, seeding, and reading the bucket back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import requests

from infra.local.dicom_factory import Series, make_series, stow
from infra.local.stack import Event


class EmulatorAdmin:
    """The Healthcare API emulator's test-only API (/emulator/...)."""

    def __init__(self, admin_url: str, api_url: str) -> None:
        self.admin_url = admin_url
        self.api_url = api_url
        self.session = requests.Session()
        self.session.trust_env = False

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.session.request(method, f"{self.admin_url}/emulator/{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json() if response.content else None

    def dicomweb(self, store: str) -> str:
        return f"{self.api_url}/{store}/dicomWeb"

    def seed(
        self, store: str, series: Series | None = None, *, count: int, size: int | None = None, **kw: Any
    ) -> Any:
        body: dict[str, Any] = {"store": store, "count": count, **kw}
        if series is not None:
            body.update(study=series.study_uid, series=series.series_uid)
        if size is not None:
            body["size"] = size
        return self._call("POST", "seed", body)

    def seed_study(self, store: str, study: str, series: str, *, count: int, **kw: Any) -> Any:
        """The seed with its study and series given as UIDs (``seriesCount``: series ``{series}.{k}``)."""
        return self._call(
            "POST", "seed", {"store": store, "study": study, "series": series, "count": count, **kw}
        )

    def stow_series(self, store: str, count: int, *, pixel_bytes: int = 512) -> tuple[Series, list[bytes]]:
        series, data = make_series(count, pixel_bytes=pixel_bytes)
        stow(self.dicomweb(store), data)
        return series, data

    def faults(self, *rules: Mapping[str, Any]) -> None:
        self._call("POST", "faults", {"rules": list(rules)})

    def fired(self) -> list[Any]:
        return list(self._call("GET", "faults")["rules"])

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def requests(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "requests"))

    def clear_requests(self) -> None:
        self._call("DELETE", "requests")

    def config(self, **values: Any) -> None:
        self._call("POST", "config", values)

    def instance_count(self, store: str, series: Series) -> int:
        return len(self.instance_uids(store, series.study_uid, series.series_uid))

    def instance_uids(self, store: str, study_uid: str, series_uid: str) -> set[str]:
        response = self.session.get(
            f"{self.dicomweb(store)}/studies/{study_uid}/series/{series_uid}/instances",
            params={"limit": "50000", "includefield": "00080018"},
            timeout=60,
        )
        if response.status_code == 404:
            return set()
        response.raise_for_status()
        if response.status_code == 204:
            return set()
        return {item["00080018"]["Value"][0] for item in response.json()}


def series_path(store: str, series: Series) -> str:
    return f"{store}/dicomWeb/studies/{series.study_uid}/series/{series.series_uid}"


def read_bucket(storage_client: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    return {blob.name: blob.download_as_bytes() for blob in storage_client.list_blobs(bucket, prefix=prefix)}


def list_bucket(storage_client: Any, bucket: str, prefix: str = "") -> dict[str, Any]:
    return {blob.name: blob for blob in storage_client.list_blobs(bucket, prefix=prefix)}


def by_request(events: Iterable[Event]) -> dict[str, Any]:
    return {event.data["requestId"]: event.data for event in events}
