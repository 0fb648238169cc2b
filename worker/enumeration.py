"""Every series of a store that matches the filters, past the server's paging limits, page by page.

A QIDO-RS series search pages by `offset` and `limit` only, and the Healthcare API caps both (a page of at
most 5,000, an offset of at most 1,000,000): one search reaches `max_offset + page_size` results. So the
store is listed in partitions that each fit: first the whole search; when a probe page at `max_offset`
comes back full (the partition could hold more than paging reaches), it is split by StudyDate into two
halves, the lower listed first, again and again, and the higher half after it. Without a StudyDate
filter the store is first split into every date (00010101-99991231) and the studies without a
StudyDate, which are searched with empty value matching (`StudyDate=""`, DICOM PS3.4 C.2.2.2.1.1), so
they are listed too, never skipped. A StudyDate filter asks for dated studies only.

Partitions never overlap and are listed in date order, so every series is listed once, and where the
listing stands is one small value, a `Cursor` (the partition and the offset in it), that a continuation
carries. Only an empty page ends a partition: a non-empty page after a short one, or a page that repeats
the previous one, means a server that ignores `offset`: SEARCH_INCOMPLETE, nothing acted on as complete.
More series on one study date than paging reaches (or without a date) is SEARCH_INCOMPLETE as well.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from worker.errors import Code, InvalidValue, PermanentError
from worker.models import DicomStore, SeriesRef
from worker.ports import DicomWebSource

STUDY_DATE = "StudyDate"
EMPTY_VALUE = '""'  # DICOM empty value matching: entities with no value
FIRST_DAY = date(1, 1, 1)
LAST_DAY = date(9999, 12, 31)
_CURSOR = re.compile(r"(all|undated|[0-9]{8}-[0-9]{8})/([0-9]{1,9})")


def _day(text: str) -> date:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        raise InvalidValue("a date must be YYYYMMDD") from None


def _text(day: date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


@dataclass(frozen=True)
class SearchLimits:
    """What one paged search can reach: pages of `page_size`, offsets up to `max_offset`."""

    page_size: int
    max_offset: int


@dataclass(frozen=True)
class Partition:
    """All series (`kind` all), the studies of a StudyDate range (`range`), or those without one."""

    kind: str  # "all", "range" or "undated"
    low: date = FIRST_DAY
    high: date = LAST_DAY

    def params(self, filters: Mapping[str, str]) -> dict[str, str]:
        params = {name: value for name, value in filters.items() if name != STUDY_DATE}
        if self.kind == "range":
            params[STUDY_DATE] = f"{_text(self.low)}-{_text(self.high)}"
        elif self.kind == "undated":
            params[STUDY_DATE] = EMPTY_VALUE
        return params

    def encode(self) -> str:
        return f"{_text(self.low)}-{_text(self.high)}" if self.kind == "range" else self.kind


@dataclass(frozen=True)
class Cursor:
    """Where a listing stands: `offset` results of `partition` are listed, and every partition before it."""

    partition: Partition
    offset: int

    def encode(self) -> str:
        return f"{self.partition.encode()}/{self.offset}"

    @classmethod
    def parse(cls, text: object) -> Cursor:
        match = _CURSOR.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidValue("cursor must be all/N, undated/N or YYYYMMDD-YYYYMMDD/N")
        kind, offset = match.group(1), int(match.group(2))
        if kind in ("all", "undated"):
            return cls(Partition(kind), offset)
        low, high = _day(kind[:8]), _day(kind[9:])
        if low > high:
            raise InvalidValue("a cursor's date range must not end before it starts")
        return cls(Partition("range", low, high), offset)


def date_bounds(study_date: str | None) -> tuple[date, date] | None:
    """The StudyDate filter (`20240101`, `20240101-20241231`, `20240101-`, `-20241231`) as its first and
    last day; None without one. Raises InvalidValue."""
    if study_date is None:
        return None
    low, sep, high = study_date.partition("-")
    if not re.fullmatch(r"([0-9]{8})?", low) or not re.fullmatch(r"([0-9]{8})?", high) or not low + high:
        raise InvalidValue("studyDate must be YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD")
    first = _day(low) if low else FIRST_DAY
    last = (_day(high) if high else LAST_DAY) if sep else first
    if first > last:
        raise InvalidValue("the studyDate range ends before it starts")
    return first, last


@dataclass(frozen=True)
class Page:
    """Series listed in one search page, and the cursor after them (None: the listing is complete)."""

    series: list[SeriesRef]
    cursor: Cursor | None


class Enumeration:
    """The partitioned listing of one store's series matching `filters` (QIDO names: Modality, StudyDate)."""

    def __init__(
        self,
        source: DicomWebSource,
        store: DicomStore | None,
        filters: Mapping[str, str],
        limits: SearchLimits,
    ) -> None:
        self.source = source
        self.store = store
        self.filters = dict(filters)
        self.limits = limits
        self.bounds = date_bounds(self.filters.get(STUDY_DATE))

    def start(self) -> Cursor:
        if self.bounds is None:
            return Cursor(Partition("all"), 0)
        return Cursor(Partition("range", *self.bounds), 0)

    def pages(self, cursor: Cursor | None = None) -> Iterator[Page]:
        """The pages from `cursor` (default: the start) to the end; the last one's cursor is None."""
        at: Cursor | None = cursor or self.start()
        while at is not None:
            partition, offset = at.partition, at.offset
            if offset == 0 and self._too_big(partition):
                at = Cursor(self._lower_half(partition), 0)
                continue
            following = self._after(partition)
            for series, end in self._page_through(partition, offset):
                yield Page(series, Cursor(partition, end) if end is not None else following)
            at = following

    def all(self) -> list[SeriesRef]:
        return [series for page in self.pages() for series in page.series]

    def _search(self, partition: Partition, limit: int, offset: int) -> list[SeriesRef]:
        return self.source.search_series_page(self.store, partition.params(self.filters), limit, offset)

    def _too_big(self, partition: Partition) -> bool:
        """Whether the partition could hold more than paging reaches: its page at max_offset is full."""
        size = self.limits.page_size
        return len(self._search(partition, size, self.limits.max_offset)) >= size

    def _lower_half(self, partition: Partition) -> Partition:
        if partition.kind == "all":
            return Partition("range", FIRST_DAY, LAST_DAY)
        if partition.kind == "undated" or partition.low == partition.high:
            what = "without a StudyDate" if partition.kind == "undated" else "on one StudyDate"
            raise PermanentError(
                Code.SEARCH_INCOMPLETE,
                f"more series {what} than a search reaches ({self.limits.max_offset} + one page):"
                " they cannot be listed completely; nothing was published for them",
            )
        middle = partition.low + timedelta(days=(partition.high - partition.low).days // 2)
        return Partition("range", partition.low, middle)

    def _after(self, partition: Partition) -> Cursor | None:
        """The partition that follows `partition` (its higher dates, then the undated), or None."""
        if partition.kind == "range":
            last = self.bounds[1] if self.bounds is not None else LAST_DAY
            if partition.high < last:
                return Cursor(Partition("range", partition.high + timedelta(days=1), last), 0)
            if self.bounds is None:
                return Cursor(Partition("undated"), 0)
        return None

    def _page_through(
        self, partition: Partition, offset: int
    ) -> Iterator[tuple[list[SeriesRef], int | None]]:
        """(a page's series, the offset after it) up to an empty page, then ([], None): done."""
        size = self.limits.page_size
        previous: set[str] = set()
        short = False
        while offset <= self.limits.max_offset:
            page = self._search(partition, size, offset)
            if not page:
                break
            if short:
                raise PermanentError(
                    Code.SEARCH_INCOMPLETE,
                    "the DICOMweb server sent more results after a short page: it ignores offset",
                )
            paths = {series.dicomweb_path for series in page}
            if paths <= previous:
                raise PermanentError(
                    Code.SEARCH_INCOMPLETE,
                    "the DICOMweb server returned the same page again: it ignores offset",
                )
            previous = paths
            short = len(page) < size
            offset += len(page)
            yield page, offset
        yield [], None
