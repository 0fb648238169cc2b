"""The DICOMweb boundary: one function per transaction, `requests` errors translated here.

Requests go only to the configured service root (the Healthcare API's, or DICOMWEB_URL): URLs are built
from validated values, redirects are never followed, and retrieve URLs found in responses are ignored.
The exchanges themselves (sessions, retries, deadlines, size caps, status codes) are
`worker.http_exchange`'s. Operations are polled only on the Healthcare API, only for the series' own
dataset: no credential goes to a host a response names.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from worker.dicom_json import (
    INSTANCE_NUMBER_TAG,
    SERIES_TAG,
    SOP_CLASS_TAG,
    STUDY_TAG,
    first_value,
    instance_from_json,
    stow_outcome,
)
from worker.errors import Code, InvalidValue, PermanentError, RetryableError, SourceGone
from worker.http_exchange import (
    Exchanges,
    SizedBody,
    Transport,
    body_chunks,
    json_body,
    parse_json,
    read_whole,
)
from worker.media_type import parse_content_type
from worker.models import DicomStore, Instance, Operation, SeriesMetrics, SeriesRef, Stow, is_uid
from worker.multipart import MultipartError, Part, boundary_from_content_type, iter_parts
from worker.orthanc import OrthancRest
from worker.settings import Settings

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_J = TypeVar("_J")

MAX_OFFSET = 1_000_000
_OPERATION_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


# RetrieveInstance of the Healthcare API also takes this single part, non-standard Accept.
SINGLE_PART_AS_STORED = "application/dicom; transfer-syntax=*"


def accept_header(transfer_syntax: str) -> str:
    """Quote only the type: quoting the whole value gets 406 from the Healthcare API."""
    return f'multipart/related; type="application/dicom"; transfer-syntax={transfer_syntax}'


class DicomWebClient:
    """Search, retrieve, delete and operation polling against one configured DICOMweb root."""

    def __init__(
        self, settings: Settings, transport: Transport, delete_transport: Transport | None = None
    ) -> None:
        self._settings = settings
        self._http = Exchanges(transport, delete_transport or transport, settings.http_timeout_seconds)
        self._orthanc = OrthancRest(self._http, settings.orthanc_url or "")

    @property
    def healthcare(self) -> bool:
        """The Healthcare API, not a DICOMWEB_URL server: the only kind with long-running operations."""
        return self._settings.dicomweb_url is None

    def root(self, series: SeriesRef) -> str:
        """The service root for a series; a request naming the other kind of server is refused."""
        return self.store_root(series.store)

    def store_root(self, store: DicomStore | None) -> str:
        """The service root of a store (None: the DICOMWEB_URL server)."""
        if self._settings.dicomweb_url is not None:
            if store is not None:
                raise PermanentError(
                    Code.STORE_NOT_ALLOWED,
                    "this worker serves DICOMWEB_URL; give the series as studies/{study}/series/{series}",
                )
            return self._settings.dicomweb_url
        if store is None:
            raise PermanentError(
                Code.INVALID_REQUEST, "the series must name its DICOM store (projects/.../dicomStores/s/...)"
            )
        return f"{self._settings.healthcare_api_url}/{store.name}/dicomWeb"

    # -- search ---------------------------------------------------------------------------------

    def search_instances(self, series: SeriesRef, page_size: int) -> list[Instance]:
        """Every instance of the series (QIDO-RS SearchForInstances), paged to the end, complete or
        SEARCH_INCOMPLETE; raises SourceGone when the store or study is not found."""
        url = f"{self.root(series)}/{series.dicomweb_path}/instances"
        params = {"includefield": [SOP_CLASS_TAG, INSTANCE_NUMBER_TAG]}

        def parse(item: object) -> tuple[str, Instance] | None:
            instance = instance_from_json(item, series)
            return (instance.sop_uid, instance) if instance is not None else None

        return self._search_all(url, params, page_size, parse)

    def series_metrics(self, series: SeriesRef) -> SeriesMetrics | None:
        """The series' instance count and stored bytes from the Healthcare API's getSeriesMetrics (a count
        of 0 when the series is absent); None on a DICOMWEB_URL server, which has no such method."""
        if not self.healthcare:
            return None
        url = f"{self.root(series)}/{series.dicomweb_path}:getSeriesMetrics"
        try:
            with self._http.request("GET", url) as response:
                body = json_body(response, "the series metrics", dict)
        except SourceGone:
            return SeriesMetrics(0)
        count = _int64(body.get("instanceCount", "0"))
        if count is None:
            raise PermanentError(Code.SOURCE_INVALID_RESPONSE, "the series metrics hold no usable count")
        return SeriesMetrics(count, _int64(body.get("blobStorageSizeBytes")))

    def search_series(
        self, store: DicomStore | None, study_uid: str | None, filters: Mapping[str, str], page_size: int
    ) -> list[SeriesRef]:
        """Every series of a store, or of one study (QIDO-RS SearchForSeries), paged to the end."""
        root = self.store_root(store)
        url = f"{root}/studies/{study_uid}/series" if study_uid else f"{root}/series"

        def parse(item: object) -> tuple[str, SeriesRef] | None:
            if not isinstance(item, dict):
                return None
            try:
                found = SeriesRef(
                    store, first_value(item, STUDY_TAG) or study_uid or "", first_value(item, SERIES_TAG)
                )
            except (InvalidValue, TypeError):
                return None
            return (found.dicomweb_path, found)

        return self._search_all(url, dict(filters), page_size, parse)

    def search_series_page(
        self, store: DicomStore | None, params: Mapping[str, str], limit: int, offset: int
    ) -> list[SeriesRef]:
        """One page of a store's series search (QIDO-RS SearchForSeries at `offset`, at most `limit`), as
        the server sent it; results that name no valid study and series are SEARCH_INCOMPLETE (never left
        out unseen). Partitioned and paged by worker.enumeration."""
        url = f"{self.store_root(store)}/series"
        found: list[SeriesRef] = []
        for item in self._search_page(url, {**params, "limit": str(limit), "offset": str(offset)}):
            try:
                found.append(SeriesRef(store, first_value(item, STUDY_TAG), first_value(item, SERIES_TAG)))
            except (InvalidValue, TypeError, AttributeError):
                raise PermanentError(
                    Code.SEARCH_INCOMPLETE, "a series search result names no valid study and series"
                ) from None
        return found

    def _search_all(
        self,
        url: str,
        params: Mapping[str, Any],
        page_size: int,
        parse: Callable[[object], tuple[str, _T] | None],
    ) -> list[_T]:
        """Page by offset with an explicit limit on every page, until an empty page; complete or nothing.

        Only an empty page ends the listing. A non-empty page after a short one (a server that caps its
        results and ignores `offset`), or a page that brings nothing new (the same page again), means the
        rest cannot be listed: SEARCH_INCOMPLETE, so that nothing acts on a part taken for the whole.
        """
        found: dict[str, _T] = {}
        offset = 0
        short = False
        while True:
            if offset > MAX_OFFSET:
                raise PermanentError(Code.SEARCH_INCOMPLETE, f"more results than offset {MAX_OFFSET} reaches")
            page = self._search_page(url, {**params, "limit": str(page_size), "offset": str(offset)})
            if not page:
                break
            if short:
                raise PermanentError(
                    Code.SEARCH_INCOMPLETE,
                    "the DICOMweb server sent more results after a short page: it caps its results and"
                    " ignores offset, so the whole series cannot be listed",
                )
            new = 0
            for item in page:
                parsed = parse(item)
                if parsed is not None and parsed[0] not in found:
                    found[parsed[0]] = parsed[1]
                    new += 1
            if new == 0:
                raise PermanentError(
                    Code.SEARCH_INCOMPLETE,
                    "the DICOMweb server returned the same page again: it ignores offset, so the whole"
                    " series cannot be listed",
                )
            short = len(page) < page_size
            offset += len(page)
        return list(found.values())

    def _search_page(self, url: str, params: dict[str, Any]) -> list[Any]:
        with self._http.request(
            "GET", url, params=params, headers={"Accept": "application/dicom+json"}
        ) as response:
            body = read_whole(response)
            if response.status == 204 or not body.strip():
                return []
            if response.headers.get("Warning"):
                log.info("search page carried a Warning header", extra={"status": response.status})
            return parse_json(body, "the search response", list)

    # -- retrieve -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def retrieve_instance(
        self, series: SeriesRef, sop_uid: str, transfer_syntax: str, *, deadline: float | None = None
    ) -> Iterator[StreamedPart]:
        """The one part of a RetrieveInstance response, streamed; raises SourceGone on 404. The bytes as
        stored come from the Healthcare API in a single part (cheaper than splitting a multipart body).

        `deadline` (time.monotonic) ends the exchange however slowly the server sends."""
        url = f"{self.root(series)}/{series.dicomweb_path}/instances/{sop_uid}"
        if self.healthcare and transfer_syntax == "*":
            with self._single_part(url, deadline) as single:
                yield single
            return
        with self._retrieve(url, transfer_syntax, deadline) as parts:
            part = next(parts, None)
            if part is None:
                raise RetryableError("the instance response held no part")
            yield part
            if next(parts, None) is not None:
                raise RetryableError("the instance response held more than one part")

    @contextlib.contextmanager
    def _single_part(self, url: str, deadline: float | None) -> Iterator[StreamedPart]:
        """The Healthcare API's single-part RetrieveInstance of the bytes as stored: no multipart
        framing to split, the whole response is the instance."""
        headers = {"Accept": SINGLE_PART_AS_STORED}
        with self._http.request("GET", url, headers=headers, deadline=deadline) as response:
            media_type, _ = parse_content_type(response.headers.get("Content-Type", ""))
            if media_type != "application/dicom":
                raise RetryableError("the instance response is not application/dicom")
            headers = {"content-type": response.headers["Content-Type"]}
            length = response.headers.get("Content-Length")
            if length is not None:
                headers["content-length"] = length
            yield StreamedPart(headers, body_chunks(response))

    @contextlib.contextmanager
    def retrieve_series(
        self, series: SeriesRef, transfer_syntax: str, *, deadline: float | None = None
    ) -> Iterator[Iterator[StreamedPart]]:
        """The parts of a RetrieveSeries response, each streamed as the body arrives."""
        url = f"{self.root(series)}/{series.dicomweb_path}"
        with self._retrieve(url, transfer_syntax, deadline) as parts:
            yield parts

    @contextlib.contextmanager
    def _retrieve(
        self, url: str, transfer_syntax: str, deadline: float | None
    ) -> Iterator[Iterator[StreamedPart]]:
        headers = {"Accept": accept_header(transfer_syntax)}
        with self._http.request("GET", url, headers=headers, deadline=deadline) as response:
            try:
                boundary = boundary_from_content_type(response.headers.get("Content-Type", ""))
            except MultipartError:
                raise RetryableError("the retrieve response is not multipart/related") from None
            chunks = body_chunks(response)
            yield _translate_stream(iter_parts(chunks, boundary))

    def metadata(self, series: SeriesRef) -> bytes:
        """The series' metadata as the server sent it, once it parsed as DICOM JSON (an array of objects):
        a body cut short is never stored as the series' metadata."""
        url = f"{self.root(series)}/{series.dicomweb_path}/metadata"
        with self._http.request("GET", url, headers={"Accept": "application/dicom+json"}) as response:
            body = read_whole(response)
        parsed = parse_json(body, "the metadata response", list)
        if not all(isinstance(item, dict) for item in parsed):
            raise PermanentError(Code.SOURCE_INVALID_RESPONSE, "the metadata response is not DICOM JSON")
        return body

    # -- store ----------------------------------------------------------------------------------

    def store_instance(
        self,
        series: SeriesRef,
        sop_uid: str,
        chunks: Iterator[bytes],
        size: int,
        *,
        deadline: float | None = None,
    ) -> Stow:
        """STOW-RS of one instance of `size` bytes, streamed from `chunks` (`POST {root}/studies`, one
        part, with a Content-Length). Stow.PRESENT when the server already holds that SOP Instance UID
        (failure reason 0x0111, which the Healthcare API answers with 409).

        A stream that yields more or fewer than `size` bytes, or raises, breaks the request off before
        its closing delimiter, so the server stores nothing. Nothing in the answer is followed (its
        RetrieveURLs are ignored). A 409 for another reason is transient on the Healthcare API (it
        refuses inserts into a series while an operation deletes it), permanent elsewhere."""
        boundary = uuid.uuid4().hex
        head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii")
        tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        body = SizedBody(head, chunks, size, tail)
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        }
        url = f"{self.root(series)}/studies"
        with self._http.request(
            "POST", url, data=body, headers=headers, deadline=deadline, answers=frozenset({409})
        ) as response:
            status = response.status
            answer = read_whole(response)
        return stow_outcome(status, answer, sop_uid, healthcare=self.healthcare)

    def import_instances(self, store: DicomStore, uri: str) -> Operation:
        """dicomStores.import of the Cloud Storage objects `uri` names (`gs://bucket/folder/*.dcm`): a
        long-running operation of the store's dataset (Healthcare API only; its service agent reads the
        bucket)."""
        if not self.healthcare:
            raise PermanentError(
                Code.INVALID_REQUEST,
                "options.method import is the Healthcare API's; this worker serves DICOMWEB_URL",
            )
        url = f"{self._settings.healthcare_api_url}/{store.name}:import"
        with self._http.request("POST", url, json={"gcsSource": {"uri": uri}}) as response:
            operation = Operation.from_json(json_body(response, "the import response", dict))
        check_operation_name(operation.name, store)
        return operation

    # -- storage classes inside a store (Healthcare API) ---------------------------------------

    def set_blob_storage_class(self, store: DicomStore, storage_class: str, filter_uri: str) -> Operation:
        """dicomStores.setBlobStorageSettings: `storage_class` for the resources the filter file
        `filter_uri` lists (`/studies/X/series/Y`, one a line; the store's service agent reads it): a
        long-running operation of the store's dataset. Healthcare API only."""
        if not self.healthcare:
            raise _tier_not_supported()
        url = f"{self._settings.healthcare_api_url}/{store.name}:setBlobStorageSettings"
        body = {
            "blobStorageSettings": {"blobStorageClass": storage_class},
            "filterConfig": {"resourcePathsGcsUri": filter_uri},
        }
        with self._http.request("POST", url, json=body) as response:
            operation = Operation.from_json(json_body(response, "the setBlobStorageSettings response", dict))
        check_operation_name(operation.name, store)
        return operation

    def instance_storage_class(self, series: SeriesRef, sop_uid: str) -> str | None:
        """The instance's blob storage class (getStorageInfo's `blobStorageInfo.storageClass`; None when
        the answer names none). Raises SourceGone when the instance is not found. Healthcare API only."""
        if not self.healthcare:
            raise _tier_not_supported()
        if not is_uid(sop_uid):
            raise PermanentError(Code.INVALID_REQUEST, "not a valid SOP Instance UID")
        url = f"{self.root(series)}/{series.dicomweb_path}/instances/{sop_uid}:getStorageInfo"
        with self._http.request("GET", url) as response:
            body = json_body(response, "the getStorageInfo response", dict)
        info = body.get("blobStorageInfo")
        value = info.get("storageClass") if isinstance(info, dict) else None
        return value if isinstance(value, str) else None

    # -- delete ---------------------------------------------------------------------------------

    def delete_series(self, series: SeriesRef) -> Operation | None:
        """DELETE the series. Returns its operation on the Healthcare API; None where the server answered
        synchronously; raises SourceGone when it is absent."""
        if self._settings.dicomweb_delete == "orthanc":
            self.root(series)  # the same refusal of Healthcare paths as every other request
            self._orthanc.delete_series(series)
            return None
        url = f"{self.root(series)}/{series.dicomweb_path}"
        with self._http.request("DELETE", url, delete=True, not_supported=True) as response:
            body = read_whole(response)
        if not self.healthcare or series.store is None:
            return None  # only the Healthcare API has operations: a generic server's body is never polled
        operation = Operation.from_json(parse_json(body, "the delete response", dict))
        check_operation_name(operation.name, series.store)
        return operation

    def delete_instance(self, series: SeriesRef, sop_uid: str) -> bool:
        """DELETE one instance (synchronous on the Healthcare API). True when this call deleted it, False
        when it was already absent, so a retry after a lost answer is safe and says so."""
        if self._settings.dicomweb_delete == "orthanc":
            self.root(series)  # the same refusal of Healthcare paths as every other request
            return self._orthanc.delete_instance(series, sop_uid)
        url = f"{self.root(series)}/{series.dicomweb_path}/instances/{sop_uid}"
        try:
            with self._http.request("DELETE", url, delete=True, not_supported=True) as response:
                read_whole(response)
        except SourceGone:
            return False
        return True

    def get_operation(self, name: str, store: DicomStore) -> Operation:
        """Poll a long-running operation of the store's dataset: Healthcare API only, its own session."""
        if not self.healthcare:
            raise PermanentError(Code.INVALID_REQUEST, "only the Healthcare API has long-running operations")
        check_operation_name(name, store)
        with self._http.request("GET", f"{self._settings.healthcare_api_url}/{name}") as response:
            return Operation.from_json(json_body(response, "the operation response", object))


def check_operation_name(name: str, store: DicomStore) -> None:
    """Only an operation of the series' own dataset, named as the Healthcare API names them, is polled."""
    prefix = f"{store.dataset_name}/operations/"
    if not name.startswith(prefix) or not _OPERATION_ID.fullmatch(name[len(prefix) :]):
        raise PermanentError(
            Code.SOURCE_INVALID_RESPONSE, "the operation is not one of the series' dataset; it was not polled"
        )


def _int64(value: object) -> int | None:
    """An int64 of a Healthcare API answer (a string of digits, or a number); None if it is not one."""
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    return int(text) if text.isdigit() and len(text) <= 18 else None


class StreamedPart:
    """One instance of a retrieve response: its (part) headers and its body as chunks, streamed as it
    arrives, once.

    A body cut short (the connection dropped, the closing delimiter missing, fewer bytes than its
    Content-Length) raises RetryableError, never a short last chunk taken for the end.
    """

    def __init__(self, headers: Mapping[str, str], chunks: Iterator[bytes]) -> None:
        self.headers = headers
        self._chunks = chunks

    def iter_chunks(self) -> Iterator[bytes]:
        try:
            yield from self._chunks
        except MultipartError as error:
            raise RetryableError(f"the retrieve response broke off: {type(error).__name__}") from None


def _translate_stream(parts: Iterator[Part]) -> Iterator[StreamedPart]:
    try:
        for part in parts:
            yield StreamedPart(part.headers, part.iter_chunks())
    except MultipartError as error:
        raise RetryableError(f"the retrieve response broke off: {type(error).__name__}") from None


def _tier_not_supported() -> PermanentError:
    return PermanentError(
        Code.TIER_NOT_SUPPORTED,
        "storage classes inside a store are the Healthcare API's; this worker serves DICOMWEB_URL",
    )
