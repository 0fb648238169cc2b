"""Deletes through Orthanc's own REST API (DICOMWEB_DELETE=orthanc): Orthanc's DICOMweb plugin has no DELETE.

Only ids Orthanc itself returned for the request's UIDs are used, and a series or instance is deleted only
when it belongs to the request's study and series (one series UID is several Orthanc series when its
instances name several patients).
"""

from __future__ import annotations

import re

from worker.errors import RetryableError, SourceGone
from worker.http_exchange import Exchanges, json_body, parse_json, read_whole
from worker.models import SeriesRef


class OrthancRest:
    def __init__(self, http: Exchanges, url: str) -> None:
        self._http = http
        self._url = url

    def _series_ids(self, series: SeriesRef) -> set[str]:
        """Orthanc's ids of the series whose study is the request's (one series UID is several Orthanc
        series when its instances name several patients)."""
        ids = set()
        for orthanc_id in self._lookup(series.series_uid, "Series"):
            with self._http.request("GET", f"{self._url}/series/{orthanc_id}/study") as response:
                tags = json_body(response, "Orthanc's study", dict).get("MainDicomTags")
            if isinstance(tags, dict) and tags.get("StudyInstanceUID") == series.study_uid:
                ids.add(orthanc_id)
        return ids

    def _lookup(self, uid: str, kind: str) -> list[str]:
        with self._http.request("POST", f"{self._url}/tools/lookup", data=uid) as response:
            body = read_whole(response)
        matches = parse_json(body, "Orthanc's lookup", list) if body.strip() else []
        ids = [m.get("ID") for m in matches if isinstance(m, dict) and m.get("Type") == kind]
        if not all(isinstance(i, str) and re.fullmatch(r"[0-9a-f-]{8,64}", i) for i in ids):
            raise RetryableError("Orthanc returned an unusable id")
        return [str(i) for i in ids]

    def delete_series(self, series: SeriesRef) -> None:
        """Orthanc has no DICOMweb DELETE: find the series' Orthanc ids and delete them."""
        ids = self._series_ids(series)
        if not ids:
            raise SourceGone()
        for orthanc_id in sorted(ids):
            with self._http.request("DELETE", f"{self._url}/series/{orthanc_id}", delete=True):
                pass

    def delete_instance(self, series: SeriesRef, sop_uid: str) -> bool:
        """Delete one instance through Orthanc's REST API, only where it belongs to the request's series."""
        series_ids = self._series_ids(series)
        deleted = False
        for orthanc_id in self._lookup(sop_uid, "Instance"):
            with self._http.request("GET", f"{self._url}/instances/{orthanc_id}") as response:
                parent = json_body(response, "Orthanc's instance", dict).get("ParentSeries")
            if parent not in series_ids:
                continue
            try:
                with self._http.request("DELETE", f"{self._url}/instances/{orthanc_id}", delete=True):
                    deleted = True
            except SourceGone:
                continue
        return deleted
