"""The DICOMweb boundary: one function per transaction, `requests` errors translated here.

Requests go only to the configured service root (the Healthcare API's, or DICOMWEB_URL): URLs are built
from validated values, redirects are never followed, and retrieve URLs found in responses are ignored.
Idempotent requests are retried by urllib3's `Retry` (exponential backoff with jitter, `Retry-After`
honoured); a DELETE is retried only when the server refused it outright (429, 503), so a series is
never deleted twice while its operation runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from worker.errors import Code, PermanentError, RetryableError
from worker.models import DicomStore, Instance, SeriesRef, is_uid
from worker.multipart import MultipartError, Part, boundary_from_content_type, iter_parts
from worker.settings import Auth, Settings

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_J = TypeVar("_J")

HEALTHCARE_SCOPES = ("https://www.googleapis.com/auth/cloud-healthcare",)
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DELETE_RETRY_STATUSES = frozenset({429, 503})
MAX_OFFSET = 1_000_000
CHUNK_BYTES = 1024 * 1024

_SOP_CLASS = "00080016"
_SOP_INSTANCE = "00080018"
_STUDY = "0020000D"
_SERIES = "0020000E"
_INSTANCE_NUMBER = "00200013"


class SourceGone(Exception):
    """A 404 from the source: the caller decides whether that is "absent" or an error."""


@dataclass(frozen=True)
class Operation:
    """A Healthcare API long-running operation, as far as the worker needs it."""

    name: str
    done: bool
    error: dict[str, Any] | None

    @classmethod
    def from_json(cls, body: object) -> Operation:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise RetryableError("the operation response has no name")
        error = body.get("error")
        return cls(body["name"], bool(body.get("done")), error if isinstance(error, dict) else None)


def accept_header(transfer_syntax: str) -> str:
    """Quote only the type: quoting the whole value gets 406 from the Healthcare API."""
    return f'multipart/related; type="application/dicom"; transfer-syntax={transfer_syntax}'


def build_session(settings: Settings, *, delete: bool = False) -> requests.Session:
    """A pooled session with the retry rule of its kind of request, and the configured authentication."""
    session: requests.Session
    if settings.dicomweb_auth is Auth.GOOGLE:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        credentials, _ = google.auth.default(scopes=HEALTHCARE_SCOPES)
        session = AuthorizedSession(credentials)
    else:
        session = requests.Session()
        if settings.dicomweb_auth is Auth.BASIC:
            session.auth = (settings.dicomweb_username or "", settings.dicomweb_secret or "")
        elif settings.dicomweb_auth is Auth.BEARER:
            session.headers["Authorization"] = f"Bearer {settings.dicomweb_secret}"
    session.trust_env = False  # no proxies or .netrc from the environment: requests go where we say
    retry = Retry(
        total=settings.retry_total,
        connect=settings.retry_total,
        read=0 if delete else settings.retry_total,
        status=settings.retry_total,
        other=0,
        allowed_methods=frozenset({"DELETE"}) if delete else frozenset({"GET", "HEAD"}),
        status_forcelist=DELETE_RETRY_STATUSES if delete else RETRY_STATUSES,
        backoff_factor=0.5,
        backoff_max=20,
        backoff_jitter=0.5,
        respect_retry_after_header=True,
        raise_on_status=False,
        redirect=0,
    )
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=settings.concurrency + 4, max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class DicomWebClient:
    """Search, retrieve, delete and operation polling against one configured DICOMweb root."""

    def __init__(
        self, settings: Settings, session: requests.Session, delete_session: requests.Session | None = None
    ) -> None:
        self._settings = settings
        self._session = session
        self._delete_session = delete_session or session

    def root(self, series: SeriesRef) -> str:
        """The service root for a series; a request naming the other kind of server is refused."""
        if self._settings.dicomweb_url is not None:
            if series.store is not None:
                raise PermanentError(
                    Code.STORE_NOT_ALLOWED,
                    "this worker serves DICOMWEB_URL; give the series as studies/{study}/series/{series}",
                )
            return self._settings.dicomweb_url
        if series.store is None:
            raise PermanentError(
                Code.INVALID_REQUEST, "the series must name its DICOM store (projects/.../dicomStores/s/...)"
            )
        return f"{self._settings.healthcare_api_url}/{series.store.name}/dicomWeb"

    # -- search ---------------------------------------------------------------------------------

    def search_instances(self, series: SeriesRef, page_size: int) -> list[Instance]:
        """Every instance of the series (QIDO-RS SearchForInstances), paged to the end."""
        url = f"{self.root(series)}/{series.dicomweb_path}/instances"
        params = {"includefield": [_SOP_CLASS, _INSTANCE_NUMBER]}

        def parse(item: object) -> tuple[str, Instance] | None:
            instance = _instance_from_json(item, series)
            return (instance.sop_uid, instance) if instance is not None else None

        return self._search_all(url, params, page_size, parse)

    def search_series(
        self, store: DicomStore | None, study_uid: str | None, filters: Mapping[str, str], page_size: int
    ) -> list[SeriesRef]:
        """Every series of a store, or of one study (QIDO-RS SearchForSeries), paged to the end."""
        probe = SeriesRef(store, study_uid or "1", "1")
        root = self.root(probe)
        url = f"{root}/studies/{study_uid}/series" if study_uid else f"{root}/series"

        def parse(item: object) -> tuple[str, SeriesRef] | None:
            if not isinstance(item, dict):
                return None
            try:
                found = SeriesRef(
                    store, _first_value(item, _STUDY) or study_uid or "", _first_value(item, _SERIES)
                )
            except (PermanentError, TypeError):
                return None
            return (found.dicomweb_path, found)

        return self._search_all(url, dict(filters), page_size, parse)

    def _search_all(
        self,
        url: str,
        params: Mapping[str, Any],
        page_size: int,
        parse: Callable[[object], tuple[str, _T] | None],
    ) -> list[_T]:
        """Page by offset with an explicit limit on every page, until an empty page.

        A page that brings nothing new means the server ignores `offset`: harmless after a short page
        (everything came in it), an error after a full one (the rest cannot be reached).
        """
        found: dict[str, _T] = {}
        offset = 0
        while True:
            if offset > MAX_OFFSET:
                raise PermanentError(Code.SEARCH_INCOMPLETE, f"more results than offset {MAX_OFFSET} reaches")
            page = self._search_page(url, {**params, "limit": str(page_size), "offset": str(offset)})
            if not page:
                break
            new = 0
            for item in page:
                parsed = parse(item)
                if parsed is not None and parsed[0] not in found:
                    found[parsed[0]] = parsed[1]
                    new += 1
            if new == 0:
                if len(page) >= page_size:
                    raise PermanentError(
                        Code.SEARCH_INCOMPLETE,
                        "the DICOMweb server returned the same page again: it ignores offset, so more than"
                        " one page of results cannot be listed whole",
                    )
                break
            offset += len(page)
        return list(found.values())

    def _search_page(self, url: str, params: dict[str, Any]) -> list[Any]:
        with self._request(
            "GET", url, params=params, headers={"Accept": "application/dicom+json"}
        ) as response:
            if response.status_code == 204 or not response.content.strip():
                return []
            warning = response.headers.get("Warning")
            if warning:
                log.info("search page carried a Warning header", extra={"status": response.status_code})
            return _json(response, "the search response", list)

    # -- retrieve -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def retrieve_instance(
        self, series: SeriesRef, sop_uid: str, transfer_syntax: str
    ) -> Iterator[StreamedPart]:
        """The one part of a RetrieveInstance response, streamed; raises SourceGone on 404."""
        url = f"{self.root(series)}/{series.dicomweb_path}/instances/{sop_uid}"
        with self._retrieve(url, transfer_syntax) as parts:
            part = next(parts, None)
            if part is None:
                raise RetryableError("the instance response held no part")
            yield part
            if next(parts, None) is not None:
                raise RetryableError("the instance response held more than one part")

    @contextlib.contextmanager
    def retrieve_series(self, series: SeriesRef, transfer_syntax: str) -> Iterator[Iterator[StreamedPart]]:
        """The parts of a RetrieveSeries response, each streamed as the body arrives."""
        url = f"{self.root(series)}/{series.dicomweb_path}"
        with self._retrieve(url, transfer_syntax) as parts:
            yield parts

    @contextlib.contextmanager
    def _retrieve(self, url: str, transfer_syntax: str) -> Iterator[Iterator[StreamedPart]]:
        headers = {"Accept": accept_header(transfer_syntax)}
        with self._request("GET", url, headers=headers, stream=True) as response:
            try:
                boundary = boundary_from_content_type(response.headers.get("Content-Type", ""))
            except MultipartError as error:
                raise RetryableError(f"the retrieve response is not multipart/related: {error}") from None
            chunks = _translate_chunks(response.iter_content(CHUNK_BYTES))
            yield _translate_stream(iter_parts(chunks, boundary))

    def metadata(self, series: SeriesRef) -> Iterator[bytes]:
        """The series' metadata (DICOM JSON) as byte chunks."""
        url = f"{self.root(series)}/{series.dicomweb_path}/metadata"
        with self._request("GET", url, headers={"Accept": "application/dicom+json"}, stream=True) as response:
            yield from _translate_chunks(response.iter_content(CHUNK_BYTES))

    # -- delete ---------------------------------------------------------------------------------

    def delete_series(self, series: SeriesRef) -> Operation | None:
        """DELETE the series. Returns its operation (Healthcare API), None when the server answered
        synchronously; raises SourceGone when it is absent."""
        if self._settings.dicomweb_delete == "orthanc":
            self._delete_in_orthanc(series)
            return None
        url = f"{self.root(series)}/{series.dicomweb_path}"
        with self._request("DELETE", url, session=self._delete_session, not_supported=True) as response:
            if not response.content.strip():
                return None
            body = _json(response, "the delete response", object)
        if isinstance(body, dict) and "name" in body:
            return Operation.from_json(body)
        return None

    def _delete_in_orthanc(self, series: SeriesRef) -> None:
        """Orthanc has no DICOMweb DELETE: find the series' Orthanc id, check its study, delete it."""
        self.root(series)  # the same refusal of Healthcare paths as every other request
        base = self._settings.orthanc_url
        with self._request("POST", f"{base}/tools/lookup", data=series.series_uid) as response:
            matches = _json(response, "Orthanc's lookup", list) if response.content.strip() else []
        ids = [m.get("ID") for m in matches if isinstance(m, dict) and m.get("Type") == "Series"]
        if not ids:
            raise SourceGone()
        deleted = 0
        # One series UID is several Orthanc series when its instances name several patients.
        for orthanc_id in ids:
            if not isinstance(orthanc_id, str) or not re.fullmatch(r"[0-9a-f-]{8,64}", orthanc_id):
                raise RetryableError("Orthanc returned an unusable series id")
            with self._request("GET", f"{base}/series/{orthanc_id}/study") as response:
                tags = _json(response, "Orthanc's study", dict).get("MainDicomTags")
            study = tags.get("StudyInstanceUID") if isinstance(tags, dict) else None
            if study != series.study_uid:
                continue
            with self._request("DELETE", f"{base}/series/{orthanc_id}", session=self._delete_session):
                deleted += 1
        if not deleted:
            raise SourceGone()

    def get_operation(self, name: str) -> Operation:
        url = f"{self._settings.healthcare_api_url}/{name}"
        with self._request("GET", url) as response:
            return Operation.from_json(_json(response, "the operation response", object))

    # -- the one place where HTTP outcomes become worker errors ------------------------------------

    @contextlib.contextmanager
    def _request(
        self,
        method: str,
        url: str,
        *,
        session: requests.Session | None = None,
        not_supported: bool = False,
        **kwargs: Any,
    ) -> Iterator[requests.Response]:
        session = session or self._session
        try:
            response = session.request(
                method, url, timeout=self._settings.http_timeout_seconds, allow_redirects=False, **kwargs
            )
        except requests.RequestException as error:
            raise RetryableError(f"{method} to the DICOMweb server failed: {type(error).__name__}") from None
        with response:
            check_status(response, method, not_supported=not_supported)
            yield response


def _json(response: requests.Response, what: str, kind: type[_J]) -> _J:
    """The response's JSON body, of the expected kind; anything else is a transient server fault."""
    try:
        body = json.loads(response.content)
    except ValueError:
        raise RetryableError(f"{what} is not JSON") from None
    if not isinstance(body, kind):
        raise RetryableError(f"{what} is not a JSON {'array' if kind is list else 'object'}")
    return body


def check_status(response: requests.Response, method: str, *, not_supported: bool = False) -> None:
    status = response.status_code
    if status < 300:
        return
    if status == 404:
        raise SourceGone()
    if status in RETRY_STATUSES:
        raise RetryableError(f"{method} answered {status} after retries")
    if not_supported and status in (405, 501):
        raise PermanentError(
            Code.DELETE_NOT_SUPPORTED, f"the DICOMweb server does not support DELETE (it answered {status})"
        )
    raise PermanentError(Code.SOURCE_REFUSED, f"the DICOMweb server refused {method} with {status}")


class StreamedPart:
    """One part of a retrieve response: its headers and its body as chunks, streamed as it arrives.

    A body cut short (the connection dropped, the closing delimiter missing) raises RetryableError,
    never a short last chunk taken for the end.
    """

    def __init__(self, part: Part) -> None:
        self.headers: Mapping[str, str] = part.headers
        self._part = part

    def iter_chunks(self) -> Iterator[bytes]:
        try:
            yield from self._part.iter_chunks()
        except MultipartError as error:
            raise RetryableError(f"the retrieve response broke off: {type(error).__name__}") from None


def _translate_stream(parts: Iterator[Part]) -> Iterator[StreamedPart]:
    try:
        for part in parts:
            yield StreamedPart(part)
    except MultipartError as error:
        raise RetryableError(f"the retrieve response broke off: {type(error).__name__}") from None


def _translate_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    except requests.RequestException as error:
        raise RetryableError(f"the response broke off: {type(error).__name__}") from None


def _first_value(item: dict[str, Any], tag: str) -> Any:
    element = item.get(tag)
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    if not isinstance(values, list) or not values:
        return None
    return values[0]


def _instance_from_json(item: object, series: SeriesRef) -> Instance | None:
    """One QIDO result. Results of another series are skipped (a server that ignores the path); a result
    of this series without a usable SOP Instance UID stops the request: skipping it would leave it out
    of the copy, and an archive would then delete it uncopied."""
    if not isinstance(item, dict):
        raise _unusable_result()
    series_uid = _first_value(item, _SERIES) or series.series_uid
    study_uid = _first_value(item, _STUDY) or series.study_uid
    if series_uid != series.series_uid or study_uid != series.study_uid:
        return None
    sop_uid = _first_value(item, _SOP_INSTANCE)
    sop_class = _first_value(item, _SOP_CLASS)
    number = _first_value(item, _INSTANCE_NUMBER)
    try:
        number = int(number) if number is not None else None
    except (TypeError, ValueError, OverflowError):
        number = None
    if not is_uid(sop_class):
        sop_class = None  # it goes into events and object metadata: a UID or nothing
    try:
        return Instance(study_uid, series_uid, sop_uid, sop_class, number)
    except (PermanentError, TypeError):
        raise _unusable_result() from None


def _unusable_result() -> PermanentError:
    return PermanentError(
        Code.UNSUPPORTED_INSTANCE,
        "the series holds an instance without a valid SOP Instance UID (digits and dots, at most 64"
        " characters); it cannot be copied safely, so nothing was copied or deleted",
    )
