"""Small fakes and builders shared by the unit tests (no network, no Google clients)."""

from __future__ import annotations

import builtins
import contextlib
import json
import posixpath
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import google_crc32c

from infra.local.dicom_factory import make_instance
from tests.schemas import assert_valid_event, assert_valid_request
from worker.continuation import KeyRing
from worker.errors import Code, ObjectExists, PermanentError, RetryableError, SourceGone, WorkerError
from worker.job import Job
from worker.layout import SeriesFolder
from worker.models import (
    DicomStore,
    GcsLocation,
    Instance,
    Operation,
    SeriesMetrics,
    SeriesRef,
    StoredObject,
    Stow,
)
from worker.ports import DicomWebSource, EventPublisher, ObjectStore, Ports
from worker.pubsub import Publisher
from worker.request import Action, Message, SeriesRequest, parse_request
from worker.settings import Settings
from worker.storage import crc32c_base64

PROJECT = "my-project"
LOCATION = "us-central1"
DATASET = "my-dataset"
STORE_ID = "my-store"
STORE = f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/dicomStores/{STORE_ID}"
STUDY = "1.2.840.113619.2.55.3.604688119"
SERIES = "1.2.840.113619.2.55.3.604688119.2"
SOP = "1.2.840.113619.2.55.3.604688119.2.7"
SERIES_PATH = f"{STORE}/dicomWeb/studies/{STUDY}/series/{SERIES}"
DICOMWEB_SERIES_PATH = f"studies/{STUDY}/series/{SERIES}"
COMPLETION_TOPIC = "projects/my-project/topics/series-done"
REQUEST_TOPIC = "projects/my-project/topics/series-requests"
MESSAGE_ID = "4711000000001"


def message(
    body: object,
    attributes: Mapping[str, str] | None = None,
    *,
    message_id: str = MESSAGE_ID,
    delivery_attempt: int | None = None,
) -> Message:
    """A delivery whose data is `body`: bytes as they are, str encoded, anything else as JSON."""
    if isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode("utf-8")
    else:
        data = json.dumps(body).encode("utf-8")
    return Message(data, dict(attributes or {}), message_id, delivery_attempt)


@dataclass(frozen=True)
class Published:
    topic: str
    data: bytes
    attributes: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.data)


class FakePublisher(Publisher):
    """Records what is published; `fail` makes every publish fail as the real one does (retryable).

    Every completion event (a message with a `status` attribute) must validate against
    schemas/event.schema.json, every follow-up request (a `continuation` attribute) against
    schemas/request.schema.json: a message that does not is refused with an AssertionError."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__(client=object())
        self.published: list[Published] = []
        self.fail = fail
        self.batches = 0

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        if self.fail:
            raise RetryableError(f"publishing to {topic} failed: NotFound")
        if "status" in attributes:
            assert_valid_event(json.loads(data))
        elif "continuation" in attributes:
            assert_valid_request(json.loads(data))
        self.published.append(Published(topic, data, dict(attributes)))
        return str(len(self.published))

    def publish_batch(self, topic: str, messages: Sequence[tuple[bytes, Mapping[str, str]]]) -> int:
        """Every message a request (validated against schemas/request.schema.json); `batches` counts calls."""
        if self.fail:
            raise RetryableError(f"publishing a batch to {topic} failed: NotFound")
        self.batches += 1
        for data, attributes in messages:
            assert_valid_request(json.loads(data))
            self.published.append(Published(topic, data, dict(attributes)))
        return len(messages)

    def to(self, topic: str) -> list[Published]:
        return [p for p in self.published if p.topic == topic]


def no_dicomweb() -> FakeSource:
    """A source for tests whose actions never touch the DICOMweb server: it holds nothing."""
    return FakeSource()


def no_storage() -> FakeBucket:
    """A bucket for tests whose actions never touch Cloud Storage: it holds nothing."""
    return FakeBucket()


class HeldBytes:
    """The most bytes held at once by threads that say what they hold (tests of memory bounds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = 0
        self.most = 0

    @contextlib.contextmanager
    def holding(self, size: int) -> Iterator[None]:
        with self._lock:
            self._now += size
            self.most = max(self.most, self._now)
        try:
            yield
        finally:
            with self._lock:
                self._now -= size


# -- typed fakes at the ports (worker/ports.py) ---------------------------------------------------------

SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture, what make_instance builds
EXPLICIT_LE = "1.2.840.10008.1.2.1"
OPERATIONS = f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/operations"


def sop(number: int) -> str:
    """The SOP Instance UID of the `number`th instance of SERIES in these tests."""
    return f"{SERIES}.{number}"


@dataclass
class FakePart:
    """One part of a retrieve response, served in chunks."""

    headers: Mapping[str, str]
    data: bytes
    chunk_bytes: int = 4096

    def iter_chunks(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.chunk_bytes):
            yield self.data[start : start + self.chunk_bytes]


@dataclass(frozen=True)
class Cataloged:
    """One series of a store as a series search sees it."""

    series: SeriesRef
    study_date: str | None
    modality: str

    def matches(self, params: Mapping[str, str]) -> bool:
        modality = params.get("Modality")
        if modality is not None and modality != self.modality:
            return False
        wanted = params.get("StudyDate")
        if wanted is None:
            return True
        if wanted == '""':
            return self.study_date is None
        if self.study_date is None:
            return False
        low, sep, high = wanted.partition("-")
        if not sep:
            return self.study_date == wanted
        return (not low or self.study_date >= low) and (not high or self.study_date <= high)


def catalog_series(
    count: int, *, study_date: str | None = "20150101", modality: str = "CT", study: int = 1
) -> list[Cataloged]:
    """`count` series of one study of STORE (study numbered `study`), with its date and modality."""
    store = DicomStore.parse(STORE)
    study_uid = f"{STUDY}.{study}"
    return [
        Cataloged(SeriesRef(store, study_uid, f"{study_uid}.{n}"), study_date, modality)
        for n in range(1, count + 1)
    ]


class FakeSource:
    """A DICOMweb source in memory holding one series: instances with their bytes, searched in pages,
    retrieved as parts, deleted (the series with a Healthcare operation, an instance synchronously).

    Every call is counted (`calls`, and `log` in order, with the SOP UID it names); a test may run a hook
    before the nth call of a method (`at`, `store_at`: an instance stored meanwhile), have a call fail
    (`refuse`), or have one take effect and its answer be lost (`lose_answer`). `search_lag` searches
    still list deleted instances (a search lagging behind deletes); `metrics_offset` is added to the
    series metrics count, and `metrics_bytes` (when set) replaces the bytes they report."""

    def __init__(self, series: SeriesRef | None = None, *, healthcare: bool = True) -> None:
        self.series = series or SeriesRef.parse(SERIES_PATH)
        self._healthcare = healthcare
        self.instances: dict[str, tuple[Instance, bytes]] = {}
        self.absent = False  # the store or study answers 404
        self.search_lag = 0
        self.metrics_offset = 0
        self.metrics_bytes: int | None = None
        self.operation_polls = 1  # polls of a delete operation before it is done
        self.operation_error: dict[str, Any] | None = None  # what a finished delete operation reports
        self.operations: dict[str, int] = {}  # name -> polls left
        # dicomStores.import: the instances (SOP UID -> bytes) a gs:// pattern names; the test sets it
        self.importable: Callable[[str], dict[str, bytes]] = lambda uri: {}
        self.imports: list[str] = []
        # setBlobStorageSettings: (class, filter URI) per call; the class of each instance (default STANDARD)
        self.tiers: list[tuple[str, str]] = []
        self.storage_classes: dict[str, str] = {}
        self.tier_applies = True  # False: the operation succeeds and changes nothing
        # a store's series for search_series_page (sweep): add_catalog; its search limits
        self.catalog: list[Cataloged] = []
        self.max_limit = 5000
        self.max_offset = 1_000_000
        self.calls: Counter[str] = Counter()
        self.log: list[tuple[str, str | None]] = []
        self.pages = 0  # search pages served
        self.stored: list[str] = []  # SOP UIDs stored through store_instance, in order
        self._ghosts: dict[str, Instance] = {}  # deleted, still listed while search_lag lasts
        self._hooks: dict[tuple[str, int], list[Callable[[], object]]] = {}
        self._refusals: dict[tuple[str, int | None], WorkerError] = {}
        self._lost: set[tuple[str, int]] = set()
        self._lock = threading.RLock()

    # -- what a test sets up ----------------------------------------------------------------------

    def add(self, sop_uid: str, data: bytes | None = None, *, number: int | None = None) -> bytes:
        """Store an instance of the series (a valid Part 10 file unless `data` is given)."""
        body = (
            data
            if data is not None
            else make_instance(self.series.study_uid, self.series.series_uid, sop_uid, number=number or 1)
        )
        instance = Instance(self.series.study_uid, self.series.series_uid, sop_uid, SC_CLASS, number)
        with self._lock:
            self.instances[sop_uid] = (instance, body)
        return body

    def add_series(self, count: int) -> dict[str, bytes]:
        return {sop(n): self.add(sop(n), number=n) for n in range(1, count + 1)}

    def at(self, method: str, call: int, hook: Callable[[], object]) -> None:
        """Run `hook` just before the `call`th call (from 1) of `method`."""
        self._hooks.setdefault((method, call), []).append(hook)

    def store_at(self, method: str, call: int, sop_uid: str, *, number: int | None = None) -> bytes:
        """An instance stored just before the `call`th call of `method`; returns its bytes."""
        body = make_instance(self.series.study_uid, self.series.series_uid, sop_uid, number=number or 1)

        def store() -> None:
            self.add(sop_uid, body, number=number)

        self.at(method, call, store)
        return body

    def refuse(self, method: str, error: WorkerError, call: int | None = None) -> None:
        """The `call`th call of `method` (every call when None) raises `error` and does nothing."""
        self._refusals[(method, call)] = error

    def lose_answer(self, method: str, call: int) -> None:
        """The `call`th call of `method` takes effect, then fails as a dropped connection does."""
        self._lost.add((method, call))

    def uids(self) -> list[str]:
        with self._lock:
            return sorted(self.instances)

    # -- the port ---------------------------------------------------------------------------------

    @property
    def healthcare(self) -> bool:
        return self._healthcare

    def root(self, series: SeriesRef) -> str:
        return "https://dicomweb.invalid/dicomWeb"

    def search_instances(self, series: SeriesRef, page_size: int) -> list[Instance]:
        self._enter("search_instances")
        with self._lock:
            if self.absent:
                raise SourceGone("the store or study is not found")
            found = [instance for instance, _ in self.instances.values()]
            if self.search_lag > 0:
                self.search_lag -= 1
                found += [ghost for uid, ghost in self._ghosts.items() if uid not in self.instances]
        pages = [found[start : start + page_size] for start in range(0, len(found), page_size)]
        self.pages += len(pages) + 1  # and the empty page that ends the listing
        return [instance for page in pages for instance in page]

    def series_metrics(self, series: SeriesRef) -> SeriesMetrics | None:
        self._enter("series_metrics")
        if not self._healthcare:
            return None
        with self._lock:
            if self.absent:
                return SeriesMetrics(0, 0)
            stored = sum(len(body) for _, body in self.instances.values())
            if self.metrics_bytes is not None:
                stored = self.metrics_bytes
            return SeriesMetrics(len(self.instances) + self.metrics_offset, stored)

    def search_series(
        self, store: DicomStore | None, study_uid: str | None, filters: Mapping[str, str], page_size: int
    ) -> list[SeriesRef]:
        self._enter("search_series")
        return [self.series] if self.instances else []

    def search_series_page(
        self, store: DicomStore | None, params: Mapping[str, str], limit: int, offset: int
    ) -> list[SeriesRef]:
        """A page of `catalog` (series of the store with their StudyDate and Modality) as QIDO matches
        them: Modality exactly, StudyDate a range (no date never in one) or `""` (no date only); a page
        of at most `max_limit`, an offset above `max_offset` refused like the Healthcare API."""
        self._enter("search_series_page")
        if offset > self.max_offset:
            raise PermanentError(Code.SOURCE_REFUSED, "offset above the maximum")
        found = [entry.series for entry in self.catalog if entry.matches(params)]
        return found[offset : offset + min(limit, self.max_limit)]

    @contextlib.contextmanager
    def retrieve_instance(
        self, series: SeriesRef, sop_uid: str, transfer_syntax: str, *, deadline: float | None = None
    ) -> Iterator[FakePart]:
        call = self._enter("retrieve_instance", sop_uid)
        with self._lock:
            found = self.instances.get(sop_uid)
        if found is None:
            raise SourceGone(f"instance {sop_uid} is not found")
        self._leave("retrieve_instance", call)
        yield self._part(found[1])

    @contextlib.contextmanager
    def retrieve_series(
        self, series: SeriesRef, transfer_syntax: str, *, deadline: float | None = None
    ) -> Iterator[Iterator[FakePart]]:
        call = self._enter("retrieve_series")
        with self._lock:
            bodies = [body for _, body in self.instances.values()]
        if not bodies:
            raise SourceGone("the series is not found")
        self._leave("retrieve_series", call)
        yield (self._part(body) for body in bodies)

    def metadata(self, series: SeriesRef) -> bytes:
        self._enter("metadata")
        with self._lock:
            return json.dumps([{"00080018": {"vr": "UI", "Value": [uid]}} for uid in self.instances]).encode()

    def store_instance(
        self,
        series: SeriesRef,
        sop_uid: str,
        chunks: Iterator[bytes],
        size: int,
        *,
        deadline: float | None = None,
    ) -> Stow:
        """STOW-RS: the whole stream or nothing (a stream that raises or has the wrong length stores
        nothing); an instance already held is PRESENT and left as it is."""
        call = self._enter("store_instance", sop_uid)
        data = b"".join(chunks)
        if len(data) != size:
            raise RetryableError(f"the instance ended after {len(data)} of its {size} bytes")
        with self._lock:
            present = sop_uid in self.instances
            if not present:
                self.add(sop_uid, data)
                self.stored.append(sop_uid)
        self._leave("store_instance", call)
        return Stow.PRESENT if present else Stow.STORED

    def delete_series(self, series: SeriesRef) -> Operation | None:
        call = self._enter("delete_series")
        with self._lock:
            if self.absent or not self.instances:
                raise SourceGone("the series is not found")
            for uid in list(self.instances):
                self._remove(uid)
            name = None
            if self._healthcare:
                name = f"{OPERATIONS}/{len(self.operations) + 1}"
                self.operations[name] = self.operation_polls
        self._leave("delete_series", call)
        return Operation(name, False, None) if name is not None else None

    def import_instances(self, store: DicomStore, uri: str) -> Operation:
        """Stores what `importable(uri)` names (an instance already there is left as it is) and starts
        an operation that is done after `operation_polls` polls."""
        call = self._enter("import_instances", uri)
        self.imports.append(uri)
        for sop_uid, body in self.importable(uri).items():
            if sop_uid not in self.instances:
                self.add(sop_uid, body)
        with self._lock:
            name = f"{OPERATIONS}/{len(self.operations) + 1}"
            self.operations[name] = self.operation_polls
        self._leave("import_instances", call)
        return Operation(name, False, None)

    def set_blob_storage_class(self, store: DicomStore, storage_class: str, filter_uri: str) -> Operation:
        """Records the call, sets the class of every instance of the series (unless `tier_applies` is
        False, or the operation is set to fail) and starts an operation done after `operation_polls`."""
        call = self._enter("set_blob_storage_class")
        with self._lock:
            self.tiers.append((storage_class, filter_uri))
            if self.tier_applies and self.operation_error is None:
                for uid in self.instances:
                    self.storage_classes[uid] = storage_class
            name = f"{OPERATIONS}/{len(self.operations) + 1}"
            self.operations[name] = self.operation_polls
        self._leave("set_blob_storage_class", call)
        return Operation(name, False, None)

    def instance_storage_class(self, series: SeriesRef, sop_uid: str) -> str | None:
        call = self._enter("instance_storage_class", sop_uid)
        with self._lock:
            if sop_uid not in self.instances:
                raise SourceGone("the instance is not found")
            found = self.storage_classes.get(sop_uid, "STANDARD")
        self._leave("instance_storage_class", call)
        return found

    def delete_instance(self, series: SeriesRef, sop_uid: str) -> bool:
        call = self._enter("delete_instance", sop_uid)
        with self._lock:
            deleted = sop_uid in self.instances
            if deleted:
                self._remove(sop_uid)
        self._leave("delete_instance", call)
        return deleted

    def get_operation(self, name: str, store: DicomStore) -> Operation:
        self._enter("get_operation")
        with self._lock:
            if name not in self.operations:
                raise SourceGone("the operation is not found")
            self.operations[name] = max(0, self.operations[name] - 1)
            done = self.operations[name] == 0
        return Operation(name, done, self.operation_error if done else None)

    # -- mechanics --------------------------------------------------------------------------------

    def _part(self, body: bytes) -> FakePart:
        headers = {
            "content-type": f"application/dicom; transfer-syntax={EXPLICIT_LE}",
            "content-length": str(len(body)),
        }
        return FakePart(headers, body)

    def _remove(self, sop_uid: str) -> None:
        instance, _ = self.instances.pop(sop_uid)
        self._ghosts[sop_uid] = instance

    def _enter(self, method: str, sop_uid: str | None = None) -> int:
        with self._lock:
            self.calls[method] += 1
            call = self.calls[method]
            self.log.append((method, sop_uid))
            hooks = self._hooks.pop((method, call), [])
        for hook in hooks:
            hook()
        refusal = self._refusals.get((method, call)) or self._refusals.get((method, None))
        if refusal is not None:
            raise refusal
        return call

    def _leave(self, method: str, call: int) -> None:
        if (method, call) in self._lost:
            raise RetryableError(f"the answer to {method} was lost")


class FakeBucket:
    """Cloud Storage in memory, as the worker's grant sees it: objects are created, never replaced.

    `put`, `replace` and `remove` are what someone else does to the bucket (test set-up); the port's
    methods never replace or remove."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, StoredObject]] = {}
        self.uploads: builtins.list[str] = []  # names created through upload and write_json, in order
        self.read_chunk_bytes = 64 * 1024  # read: the size of the chunks it yields
        self.reads: builtins.list[str] = []  # names read through read, in order
        self._generation = 0
        self._lock = threading.Lock()

    # -- what someone else does ---------------------------------------------------------------------

    def put(
        self, bucket: str, name: str, data: bytes, metadata: Mapping[str, str] | None = None
    ) -> StoredObject:
        with self._lock:
            self._generation += 1
            stored = StoredObject(
                bucket,
                name,
                len(data),
                crc32c_base64(google_crc32c.Checksum(data)),
                self._generation,
                dict(metadata or {}),
            )
            self.objects[(bucket, name)] = (data, stored)
        return stored

    def replace(self, bucket: str, name: str, data: bytes) -> StoredObject:
        """Put other bytes under an existing object's name, keeping its metadata."""
        _, stored = self.objects[(bucket, name)]
        return self.put(bucket, name, data, stored.metadata)

    def remove(self, bucket: str, name: str) -> None:
        del self.objects[(bucket, name)]

    def data(self, bucket: str, name: str) -> bytes:
        return self.objects[(bucket, name)][0]

    def names(self, bucket: str) -> builtins.list[str]:
        return sorted(name for held, name in self.objects if held == bucket)

    # -- the port ---------------------------------------------------------------------------------

    def stat(self, bucket: str, name: str) -> StoredObject | None:
        found = self.objects.get((bucket, name))
        return found[1] if found is not None else None

    def list(self, location: GcsLocation) -> Iterator[StoredObject]:
        prefix = location.prefix + "/" if location.prefix else ""
        with self._lock:
            listed = [stored for (bucket, name), (_, stored) in sorted(self.objects.items())]
        return iter([s for s in listed if s.bucket == location.bucket and s.name.startswith(prefix)])

    def upload(
        self,
        bucket: str,
        name: str,
        chunks: Iterator[bytes],
        *,
        metadata: Mapping[str, str],
        content_type: str = "application/dicom",
        size: int | None = None,
    ) -> StoredObject:
        data = b"".join(chunks)
        if size is not None and len(data) != size:  # as Storage: the announced length or nothing
            raise RetryableError(f"{name}: the source held {len(data)} bytes, not {size}")
        with self._lock:
            if (bucket, name) in self.objects:
                raise ObjectExists(name)
            self.uploads.append(name)
        return self.put(bucket, name, data, metadata)

    def write_json(self, bucket: str, name: str, body: Any) -> StoredObject:
        data = (json.dumps(body, indent=1, sort_keys=True) + "\n").encode("utf-8")
        versions = self.json_versions(bucket, name)
        for version in versions:
            if self.data(bucket, version.name) == data:
                return version
        stem, suffix = posixpath.splitext(name)
        target = name if not versions else f"{stem}.{len(versions) + 1}{suffix}"
        return self.upload(bucket, target, iter([data]), metadata={}, content_type="application/json")

    def json_versions(self, bucket: str, name: str) -> builtins.list[StoredObject]:
        stem, suffix = posixpath.splitext(name)
        pattern = re.compile(re.escape(stem) + r"(?:\.([2-9]|[1-9][0-9]+))?" + re.escape(suffix))
        found: builtins.list[tuple[int, StoredObject]] = []
        for (held, candidate), (_, stored) in list(self.objects.items()):
            match = pattern.fullmatch(candidate) if held == bucket else None
            if match:
                found.append((int(match.group(1) or 1), stored))
        return [stored for _, stored in sorted(found, key=lambda item: item[0])]

    def read(self, bucket: str, name: str, generation: int) -> Iterator[bytes]:
        """The object's bytes in chunks of `read_chunk_bytes`; RetryableError when that generation is
        no longer the object's (replaced or removed since it was listed)."""
        found = self.objects.get((bucket, name))
        if found is None or found[1].generation != generation:
            raise RetryableError(f"object {name} changed or vanished while it was read")
        self.reads.append(name)
        data = found[0]
        for start in range(0, len(data), self.read_chunk_bytes):
            yield data[start : start + self.read_chunk_bytes]

    def read_json(self, bucket: str, name: str) -> Any:
        found = self.objects.get((bucket, name))
        if found is None:
            return None
        try:
            return json.loads(found[0])
        except ValueError:
            return None


# -- a job on the fakes ------------------------------------------------------------------------------

KEYS = KeyRing.parse("worker-1=" + "k" * 32)
BUCKET = "my-bucket"
DESTINATION = GcsLocation(BUCKET, "archive")
ACTION_SETTINGS = Settings(
    completion_topic=COMPLETION_TOPIC,
    request_topic=REQUEST_TOPIC,
    continuation_keys=KEYS,
    delete_enabled=True,
    default_destination=DESTINATION,
    concurrency=4,
    deadline_seconds=60,
    search_settle_seconds=0.0,
)


class Clock:
    """A monotonic clock that moves only when told (`advance`) or when slept on (`sleep`)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: builtins.list[float] = []

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Fakes:
    """The ports of one test, and what it needs to build jobs on them."""

    source: FakeSource = field(default_factory=FakeSource)
    bucket: FakeBucket = field(default_factory=FakeBucket)
    publisher: FakePublisher = field(default_factory=FakePublisher)
    clock: Clock = field(default_factory=Clock)

    @property
    def ports(self) -> Ports:
        return Ports(self.source, self.bucket, self.publisher)

    def job(
        self,
        action: Action,
        *,
        settings: Settings = ACTION_SETTINGS,
        remaining: float = 60.0,
        request_id: str = "req-1",
        **fields: Any,
    ) -> Job:
        """A job on the fakes' series, `remaining` seconds before its deadline by the fakes' clock."""
        request = SeriesRequest(action, self.source.series, request_id, **fields)
        return Job(request, settings, self.ports, self.clock() + remaining, clock=self.clock)

    def folder(self) -> SeriesFolder:
        """The fakes' series folder under DESTINATION."""
        return SeriesFolder(DESTINATION, self.source.series)

    def follow_up(self, job: Job, *, remaining: float = 60.0) -> Job:
        """The job of the last request handed on to REQUEST_TOPIC, parsed as the worker would."""
        handed = self.publisher.to(REQUEST_TOPIC)[-1]
        request = parse_request(Message(handed.data, handed.attributes, "follow-up-1"), KEYS)
        return Job(request, job.settings, self.ports, self.clock() + remaining, clock=self.clock)


# The fakes satisfy the ports (checked by mypy).
_SOURCE: DicomWebSource = FakeSource()
_BUCKET: ObjectStore = FakeBucket()
_PUBLISHER: EventPublisher = FakePublisher()
