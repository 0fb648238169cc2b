"""The operator's command line: `python -m worker COMMAND ...` (every command has --help).

    submit ACTION SERIES       validate one request and publish it to REQUEST_TOPIC; print the message id
    fan-out ACTION TARGET      search the series of a study or a store; publish one request per series
    run ACTION SERIES          run one request in this process, without Pub/Sub; print its completion event
    events --subscription S    pull completion events, print them (a table or JSON lines) and ack them

Configuration is the function's own: the same environment variables, read by `Settings.from_env`
(REQUEST_TOPIC, COMPLETION_TOPIC, HEALTHCARE_API_URL, DICOMWEB_URL, DICOMWEB_AUTH, DEFAULT_DESTINATION, ...;
PUBSUB_EMULATOR_HOST and STORAGE_EMULATOR_HOST locally); a few flags override them. Every request is built
and checked by the worker's own parser (`worker.request.parse_request`) before anything is published, so a
request the function would reject is refused here, with the same reason.

Exit status: 0 done; 1 failed (a failed event, a failed publish, search or pull); 2 bad arguments or
settings (one line on stderr says why); 3 `run` reached its deadline and handed the rest on to
REQUEST_TOPIC; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

from worker.errors import PermanentError, RetryableError
from worker.models import DicomStore, SeriesRef, check_uid
from worker.ports import DicomWebSource
from worker.request import Action, Message, SeriesRequest, parse_request
from worker.settings import Settings, SettingsError

if TYPE_CHECKING:
    from worker.delivery import Worker
    from worker.dicomweb import DicomWebClient

_T = TypeVar("_T")
PROG = "python -m worker"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_HANDED_ON = 3
EXIT_INTERRUPTED = 130

PUBLISH_TIMEOUT_SECONDS = 60.0  # per future, once every message of a fan-out is handed to the client
PUBLISH_IN_FLIGHT = 1000  # fan-out: publish() blocks while this many messages are unconfirmed
PULL_BATCH = 100
FOLLOW_PULL_SECONDS = 30.0
VALIDATION_MESSAGE_ID = "cli-validation"  # stands in for the message id while a request is checked

_SUBSCRIPTION = re.compile(r"projects/[^/\s]+/subscriptions/[^/\s]+")
_MODALITY = re.compile(r"[A-Z0-9_ ]{1,16}")  # a DICOM CS value
_DATE = "%Y%m%d"


class UsageError(Exception):
    """Bad arguments or settings: the command stops with exit status 2 and this one-line reason."""

    def __init__(self, message: str, prog: str | None = None, *, hint: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.prog = prog
        self.hint = hint


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the reason and where to look), not the whole usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog, hint=True)


# --------------------------------------------------------------------------------------------------
# Clients: the real ones by default; unit tests pass fakes
# --------------------------------------------------------------------------------------------------


def _credentials_boundary() -> Any:
    """google-auth's "no credentials" error, which is a configuration problem (exit 2), not a failure."""
    from google.auth.exceptions import DefaultCredentialsError

    return DefaultCredentialsError


def _publisher_client() -> Any:
    from google.cloud import pubsub_v1
    from google.cloud.pubsub_v1 import types

    flow = types.PublishFlowControl(
        message_limit=PUBLISH_IN_FLIGHT, limit_exceeded_behavior=types.LimitExceededBehavior.BLOCK
    )
    return pubsub_v1.PublisherClient(publisher_options=types.PublisherOptions(flow_control=flow))


def _subscriber_client() -> Any:
    from google.cloud import pubsub_v1

    return pubsub_v1.SubscriberClient()


def _dicomweb_client(settings: Settings) -> DicomWebClient:
    from worker.dicomweb import DicomWebClient, build_session

    return DicomWebClient(settings, build_session(settings))


def _worker(settings: Settings) -> Worker:
    from worker.wiring import build_worker

    return build_worker(settings)


@dataclass(frozen=True)
class Clients:
    """Where the commands get their clients (made only when a command needs them)."""

    publisher: Callable[[], Any] = _publisher_client  # a google.cloud.pubsub_v1.PublisherClient
    subscriber: Callable[[], Any] = _subscriber_client  # a google.cloud.pubsub_v1.SubscriberClient
    dicomweb: Callable[[Settings], DicomWebClient] = _dicomweb_client
    worker: Callable[[Settings], Worker] = _worker


def _make(factory: Callable[..., _T], *args: Any) -> _T:
    """A client from its factory; missing Google credentials are a usage error, named in one line."""
    try:
        return factory(*args)
    except _credentials_boundary() as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"no Google credentials: {first}") from None


def _stop_publisher(client: Any) -> None:
    """Flush and stop the publisher's batch threads (quietly: the outcome is already known)."""
    stop = getattr(client, "stop", None)
    if callable(stop):
        with contextlib.suppress(Exception):
            stop()


# --------------------------------------------------------------------------------------------------
# Output: a progress line on stderr, and errors
# --------------------------------------------------------------------------------------------------


class ProgressLine:
    """One status line on stderr: redrawn in place on a terminal; elsewhere (a pipe, a log file) written
    as a line at most every `interval` seconds, and once more, with the final state, on `close`."""

    def __init__(
        self,
        stream: TextIO,
        *,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._tty = _isatty(stream)
        self._interval = interval if interval is not None else (0.1 if self._tty else 2.0)
        self._clock = clock
        self._lock = threading.Lock()
        self._text = ""
        self._drawn = ""
        self._last = float("-inf")
        self._width = 0

    def update(self, text: str) -> None:
        with self._lock:
            self._text = text
            now = self._clock()
            if now - self._last >= self._interval:
                self._last = now
                self._draw()

    def close(self) -> None:
        """Show the final state (if there ever was one) and end the line."""
        with self._lock:
            if not self._text:
                return
            if self._text != self._drawn:
                self._draw()
            if self._tty:
                self._stream.write("\n")
                self._stream.flush()
            self._text = self._drawn = ""

    def _draw(self) -> None:
        if self._tty:
            self._stream.write("\r" + self._text.ljust(self._width))
            self._width = len(self._text)
        else:
            self._stream.write(self._text + "\n")
        self._stream.flush()
        self._drawn = self._text


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _error(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _reason(error: BaseException) -> str:
    """One line naming a library failure (google.api_core errors can span lines)."""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    name = type(error).__name__
    return f"{name}: {first[:200]}" if first else name


# --------------------------------------------------------------------------------------------------
# Argument types and shared validation
# --------------------------------------------------------------------------------------------------


def _option(text: str) -> tuple[str, object]:
    """`--option key=value`; `true`/`false` become booleans (includeMetadata), the rest stays text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    parsed: object = {"true": True, "false": False}.get(value.strip().lower(), value.strip())
    return key.strip(), parsed


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return number


def _positive_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return number


def _modality(text: str) -> str:
    value = text.strip().upper()
    if not _MODALITY.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a modality code (letters, digits, _ and space, at most 16; e.g. CT, MR)"
        )
    return value


def _date(text: str) -> datetime:
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        return datetime.strptime(text, _DATE)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYYMMDD") from None


def _study_date(text: str) -> str:
    """A DICOM date or date range: `20240101`, `20240101-20241231`, `20240101-` or `-20241231`."""
    low, sep, high = text.strip().partition("-")
    if not low and not high:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    start = _date(low) if low else None
    end = _date(high) if high else None
    if start is not None and end is not None and start > end:
        raise argparse.ArgumentTypeError(f"the range {text!r} ends before it starts")
    return f"{low}{sep}{high}"


def _request(
    action: str,
    series: str,
    *,
    destination: str | None,
    request_id: str | None,
    options: Sequence[tuple[str, object]],
    message_id: str = VALIDATION_MESSAGE_ID,
) -> SeriesRequest:
    """The request as the function will see it, checked by its own parser: bad fields are usage errors."""
    body: dict[str, Any] = {"action": action, "series": series}
    if destination is not None:
        body["destination"] = destination
    if request_id is not None:
        body["requestId"] = request_id
    if options:
        body["options"] = dict(options)
    data = json.dumps(body).encode("utf-8")
    try:
        return parse_request(Message(data, {"action": action}, message_id))
    except PermanentError as error:
        raise UsageError(error.message) from None


def message_data(request: SeriesRequest, *, keep_request_id: bool) -> bytes:
    """The message for a request (`SeriesRequest.as_json`). Without an explicit request id the message
    carries none, and the worker takes the Pub/Sub message id: the id `submit` prints."""
    body = request.as_json()
    if not keep_request_id:
        body.pop("requestId", None)
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _settings(env: Mapping[str, str], overrides: Mapping[str, str | None]) -> Settings:
    merged = dict(env)
    merged.update({name: value for name, value in overrides.items() if value is not None})
    try:
        return Settings.from_env(merged)
    except SettingsError as error:
        raise UsageError(str(error)) from None


def _request_topic(settings: Settings) -> str:
    if settings.request_topic is None:
        raise UsageError("REQUEST_TOPIC is not set (set it, or give --request-topic projects/P/topics/T)")
    return settings.request_topic


def parse_target(value: str, settings: Settings) -> tuple[DicomStore | None, str | None]:
    """A fan-out target: (store, study). `projects/.../dicomStores/s[/dicomWeb/studies/X]`, or with
    DICOMWEB_URL `studies/X` or `-` (`all`): every series of the server."""
    path = value.strip().strip("/")
    if path in ("-", "all"):
        if settings.dicomweb_url is None:
            raise UsageError(
                f"{value!r} (every series of the server) needs DICOMWEB_URL;"
                " for the Healthcare API give projects/{p}/locations/{l}/datasets/{d}/dicomStores/{s}"
            )
        return None, None
    parts = path.split("/")
    try:
        if parts[0] == "projects":
            store = DicomStore.parse("/".join(parts[:8]))
            rest = parts[8:]
            if not rest:
                return store, None
            if len(rest) != 3 or rest[:2] != ["dicomWeb", "studies"]:
                raise UsageError(
                    "a study is projects/.../dicomStores/{s}/dicomWeb/studies/{study}; a store is"
                    " projects/.../dicomStores/{s}"
                )
            return store, check_uid(rest[2], "StudyInstanceUID")
        if len(parts) == 2 and parts[0] == "studies":
            return None, check_uid(parts[1], "StudyInstanceUID")
    except PermanentError as error:
        raise UsageError(error.message) from None
    raise UsageError(
        "the target is a study (projects/.../dicomStores/{s}/dicomWeb/studies/{study}, or studies/{study}"
        " with DICOMWEB_URL) or a store (projects/.../dicomStores/{s}, or - with DICOMWEB_URL)"
    )


def _check_root(dicomweb: DicomWebSource, series: SeriesRef) -> None:
    """The configured server must be the kind the path names (a Healthcare store, or DICOMWEB_URL)."""
    try:
        dicomweb.root(series)
    except PermanentError as error:
        raise UsageError(error.message) from None


# --------------------------------------------------------------------------------------------------
# submit
# --------------------------------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace, env: Mapping[str, str], clients: Clients) -> int:
    request = _request(
        args.action,
        args.series,
        destination=args.destination,
        request_id=args.request_id,
        options=args.option,
    )
    topic = _request_topic(_settings(env, {"REQUEST_TOPIC": args.request_topic}))
    from worker.pubsub import Publisher

    client = _make(clients.publisher)
    try:
        data = message_data(request, keep_request_id=args.request_id is not None)
        message_id = Publisher(client).publish(topic, data, {"action": str(request.action)})
    except RetryableError as error:
        _error(str(error))
        return EXIT_FAILED
    finally:
        _stop_publisher(client)
    print(message_id, flush=True)
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# fan-out
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishOutcome:
    published: int
    failures: list[tuple[SeriesRef, str]]


def publish_all(
    client: Any, topic: str, requests: Sequence[SeriesRequest], progress: ProgressLine
) -> PublishOutcome:
    """Publish every request at once (the client batches them; its flow control bounds what is in
    flight), then wait on every future. A failure is counted, never raised."""
    total = len(requests)
    counts = {"published": 0, "failed": 0}
    lock = threading.Lock()

    def settled(failed: bool) -> None:
        with lock:
            counts["failed" if failed else "published"] += 1
            text = f"published {counts['published']}/{total}" + (
                f", {counts['failed']} failed" if counts["failed"] else ""
            )
        progress.update(text)

    def on_done(future: Any) -> None:
        settled(future.cancelled() or future.exception() is not None)

    failures: list[tuple[SeriesRef, str]] = []
    pending: list[tuple[SeriesRequest, Any]] = []
    for request in requests:
        data = message_data(request, keep_request_id=False)
        try:
            future = client.publish(topic, data, action=str(request.action))
        except Exception as error:  # the library refuses synchronously (bad arguments, a stopped client)
            failures.append((request.series, _reason(error)))
            settled(True)
            continue
        future.add_done_callback(on_done)
        pending.append((request, future))
    for request, future in pending:
        try:
            future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
        except Exception as error:  # google.api_core errors, TimeoutError, CancelledError
            failures.append((request.series, _reason(error)))
    progress.close()
    return PublishOutcome(total - len(failures), failures)


def cmd_fan_out(args: argparse.Namespace, env: Mapping[str, str], clients: Clients) -> int:
    settings = _settings(env, {"REQUEST_TOPIC": args.request_topic})
    store, study = parse_target(args.target, settings)
    probe = SeriesRef(store, study or "1", "1")
    template = _request(
        args.action, probe.source, destination=args.destination, request_id=None, options=args.option
    )
    topic = None if args.dry_run else _request_topic(settings)
    filters = {}
    if args.modality:
        filters["Modality"] = args.modality
    if args.study_date:
        filters["StudyDate"] = args.study_date
    from worker.errors import SourceGone

    dicomweb = _make(clients.dicomweb, settings)
    _check_root(dicomweb, probe)
    try:
        found = dicomweb.search_series(store, study, filters, args.page_size or settings.search_page_size)
    except SourceGone:
        _error(f"the series search failed: {args.target} is not found (404)")
        return EXIT_FAILED
    except (PermanentError, RetryableError) as error:
        _error(f"the series search failed: {error}")
        return EXIT_FAILED
    if args.dry_run:
        for series in found:
            print(series.source)
        sys.stdout.flush()
        _error(f"series found: {len(found)}; dry run: nothing published")
        return EXIT_OK
    assert topic is not None
    requests = [replace(template, series=series) for series in found]
    outcome = PublishOutcome(0, [])
    if requests:
        client = _make(clients.publisher)
        try:
            outcome = publish_all(client, topic, requests, ProgressLine(sys.stderr))
        finally:
            _stop_publisher(client)
    for series, reason in outcome.failures:
        _error(f"not published: {series.source}: {reason}")
    print(
        f"series found: {len(found)}; requests published: {outcome.published};"
        f" failures: {len(outcome.failures)}",
        flush=True,
    )
    return EXIT_FAILED if outcome.failures else EXIT_OK


# --------------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------------


class CopyProgress:
    """The worker's `progress` callback for `run`: adds up (instances, bytes) and redraws the line."""

    def __init__(self, line: ProgressLine, clock: Callable[[], float] = time.monotonic) -> None:
        self._line = line
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self.instances = 0
        self.bytes = 0

    def __call__(self, instances: int, size: int) -> None:
        with self._lock:
            self.instances += instances
            self.bytes += size
            elapsed = max(self._clock() - self._started, 1e-6)
            text = (
                f"copied {self.instances} instance{'s' if self.instances != 1 else ''},"
                f" {human_size(self.bytes)} ({human_size(self.bytes / elapsed)}/s)"
            )
        self._line.update(text)


def cmd_run(args: argparse.Namespace, env: Mapping[str, str], clients: Clients) -> int:
    message_id = f"cli-{uuid.uuid4().hex}"
    request = _request(
        args.action,
        args.series,
        destination=args.destination,
        request_id=args.request_id,
        options=args.option,
        message_id=message_id,
    )
    overrides = {
        "REQUEST_TOPIC": args.request_topic,
        "COMPLETION_TOPIC": args.completion_topic,
        "DEADLINE_SECONDS": None if args.deadline is None else str(args.deadline),
    }
    settings = _settings(env, overrides)
    try:
        settings.require_continuation_keys()
    except SettingsError as error:
        raise UsageError(str(error)) from None
    worker = _make(clients.worker, settings)
    _check_root(worker.ports.dicomweb, request.series)
    line = ProgressLine(sys.stderr)
    worker.progress = CopyProgress(line)
    data = message_data(request, keep_request_id=args.request_id is not None)
    try:
        event = worker.handle(Message(data, {"action": str(request.action)}, message_id))
    except RetryableError as error:
        line.close()
        _error(f"{request.action} did not finish: {error} (a transient failure: run it again)")
        return EXIT_FAILED
    line.close()
    if event is None:
        _error(
            "the deadline came first: the rest was handed on to REQUEST_TOPIC, and the function will"
            " publish the completion event (give --deadline to allow more time here)"
        )
        return EXIT_HANDED_ON
    print(json.dumps(event.as_json(), separators=(",", ":")), flush=True)
    return EXIT_OK if event.status == "succeeded" else EXIT_FAILED


# --------------------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------------------

_COLUMNS = "{:<20} {:<8} {:<9} {:<29} {:>9}  {}"
TABLE_HEADER = _COLUMNS.format("REQUEST ID", "ACTION", "STATUS", "STUDY/SERIES", "INSTANCES", "ERROR")


def short_uid(uid: object) -> str:
    """The tail of a UID (the head is the organisation's root, the same for all)."""
    if not isinstance(uid, str) or not uid:
        return "-"
    return uid if len(uid) <= 14 else "..." + uid[-11:]


def event_body(data: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def table_row(data: bytes, attributes: Mapping[str, str]) -> str:
    """One event as a table row; the message attributes stand in for data that is not an event."""
    body = event_body(data) or {}

    def field(name: str) -> str:
        value = body.get(name, attributes.get(name))
        return str(value) if value not in (None, "") else "-"

    study, series = field("studyInstanceUID"), field("seriesInstanceUID")
    uids = "-" if study == series == "-" else f"{short_uid(study)}/{short_uid(series)}"
    count = body.get("instanceCount")
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else attributes.get("errorCode")
    return _COLUMNS.format(
        field("requestId"),
        field("action"),
        field("status"),
        uids,
        str(count) if isinstance(count, int) else "-",
        code or "",
    ).rstrip()


def json_line(data: bytes, attributes: Mapping[str, str], message_id: str) -> str:
    body = event_body(data)
    if body is None:  # not an event: show what came, so that nothing is acked unseen
        body = {
            "messageId": message_id,
            "attributes": dict(attributes),
            "data": data.decode("utf-8", "replace"),
        }
    return json.dumps(body, separators=(",", ":"))


def cmd_events(args: argparse.Namespace, env: Mapping[str, str], clients: Clients) -> int:
    subscription = args.subscription
    if not _SUBSCRIPTION.fullmatch(subscription):
        raise UsageError("--subscription must be projects/{project}/subscriptions/{subscription}")
    from google.api_core import exceptions as api_exceptions

    client = _make(clients.subscriber)
    shown = 0
    header = args.format == "table"
    try:
        while args.max is None or shown < args.max:
            want = PULL_BATCH if args.max is None else min(PULL_BATCH, args.max - shown)
            try:
                response = client.pull(
                    request={"subscription": subscription, "max_messages": want},
                    timeout=FOLLOW_PULL_SECONDS if args.follow else args.wait,
                )
                received = list(response.received_messages)[:want]
            except api_exceptions.DeadlineExceeded:
                received = []
            if not received:
                if args.follow:
                    continue
                break
            for item in received:
                message = item.message
                attributes = dict(message.attributes)
                if args.format == "json":
                    print(json_line(message.data, attributes, message.message_id))
                else:
                    if header:
                        print(TABLE_HEADER)
                        header = False
                    print(table_row(message.data, attributes))
            sys.stdout.flush()
            client.acknowledge(
                request={"subscription": subscription, "ack_ids": [item.ack_id for item in received]}
            )
            shown += len(received)
    except api_exceptions.GoogleAPICallError as error:
        _error(f"pulling from {subscription} failed: {_reason(error)}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        if not args.follow:
            raise
    finally:
        with contextlib.suppress(Exception):
            client.close()
    _error(f"events: {shown}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# The parser and main
# --------------------------------------------------------------------------------------------------

_EPILOG_SUBMIT = """\
examples:
  python -m worker submit retrieve \\
      projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb/studies/1.2.3/series/1.2.3.4 \\
      --destination gs://bucket/copies --option mode=series
  python -m worker submit search studies/1.2.3/series/1.2.3.4      (a DICOMWEB_URL server)
"""

_EPILOG_FAN_OUT = """\
TARGET is a study, projects/.../dicomStores/s/dicomWeb/studies/X (studies/X with DICOMWEB_URL), or a
whole store, projects/.../dicomStores/s (- or all with DICOMWEB_URL). The progress line goes to stderr;
the summary (series found, requests published, failures) to stdout; --dry-run lists the series instead.

examples:
  python -m worker fan-out archive projects/p/locations/l/datasets/d/dicomStores/s \\
      --modality CT --study-date 20240101-20241231 --dry-run
  python -m worker fan-out retrieve projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb/studies/1.2.3
"""

_EPILOG_RUN = """\
Runs the worker's own code in this process with the clients it builds from the environment (search,
retrieve and Cloud Storage; delete and archive need DELETE_ENABLED=true). The completion event is
printed on stdout, and also published when COMPLETION_TOPIC is set. Exit status: 0 succeeded, 1 failed,
2 bad arguments, 3 handed on at the deadline (DEADLINE_SECONDS, or --deadline; needs REQUEST_TOPIC).
"""

_EPILOG_EVENTS = """\
The table shows requestId, action, status, the study and series UIDs (shortened), instanceCount and the
error code; --format json prints each event's data as one JSON line. Events are acked once printed.
"""


def _request_arguments(parser: argparse.ArgumentParser, *, request_id: bool = True) -> None:
    parser.add_argument("--destination", metavar="gs://BUCKET/PREFIX", help="default: DEFAULT_DESTINATION")
    if request_id:
        parser.add_argument(
            "--request-id", metavar="ID", help="correlates the completion event (default: the message id)"
        )
    parser.add_argument(
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a request option: transferSyntax=..., includeMetadata=true, mode=instances|series",
    )


def _action_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", metavar="ACTION", choices=[str(a) for a in Action], help=_ACTIONS)


_ACTIONS = "one of " + ", ".join(str(a) for a in Action)
_SERIES_HELP = (
    "projects/{p}/locations/{l}/datasets/{d}/dicomStores/{s}/dicomWeb/studies/{study}/series/{series},"
    " or studies/{study}/series/{series} for a DICOMWEB_URL server"
)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", help="log the worker's progress (JSON on stderr)"
    )
    topic = _Parser(add_help=False)
    topic.add_argument("--request-topic", metavar="projects/P/topics/T", help="overrides REQUEST_TOPIC")

    parser = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    submit = commands.add_parser(
        "submit",
        parents=[common, topic],
        help="publish one request to REQUEST_TOPIC",
        description="Validate one request and publish it to REQUEST_TOPIC; print the message id.",
        epilog=_EPILOG_SUBMIT,
        formatter_class=raw,
    )
    _action_argument(submit)
    submit.add_argument("series", metavar="SERIES", help=_SERIES_HELP)
    _request_arguments(submit)
    submit.set_defaults(handler=cmd_submit)

    fan_out = commands.add_parser(
        "fan-out",
        parents=[common, topic],
        help="search a study or a store and publish one request per series",
        description="Search the series of a study or a store and publish one request per series.",
        epilog=_EPILOG_FAN_OUT,
        formatter_class=raw,
    )
    _action_argument(fan_out)
    fan_out.add_argument("target", metavar="TARGET", help="STUDY_PATH or STORE_PATH (see below)")
    fan_out.add_argument("--modality", type=_modality, help="only series of this modality (e.g. CT)")
    fan_out.add_argument(
        "--study-date",
        type=_study_date,
        metavar="DATE[-DATE]",
        help="only studies of this date or range: 20240101, 20240101-20241231, 20240101-, -20241231",
    )
    _request_arguments(fan_out, request_id=False)
    fan_out.add_argument("--dry-run", action="store_true", help="list the series; publish nothing")
    fan_out.add_argument(
        "--page-size", type=_positive_int, metavar="N", help="search page size (default: SEARCH_PAGE_SIZE)"
    )
    fan_out.set_defaults(handler=cmd_fan_out)

    run = commands.add_parser(
        "run",
        parents=[common, topic],
        help="run one request here, without Pub/Sub",
        description="Run one request in this process, without Pub/Sub; print the completion event.",
        epilog=_EPILOG_RUN,
        formatter_class=raw,
    )
    _action_argument(run)
    run.add_argument("series", metavar="SERIES", help=_SERIES_HELP)
    _request_arguments(run)
    run.add_argument(
        "--completion-topic", metavar="projects/P/topics/T", help="overrides COMPLETION_TOPIC (optional)"
    )
    run.add_argument(
        "--deadline", type=_positive_int, metavar="SECONDS", help="overrides DEADLINE_SECONDS (1 to 3600)"
    )
    run.set_defaults(handler=cmd_run)

    events = commands.add_parser(
        "events",
        parents=[common],
        help="pull, print and ack completion events",
        description="Pull completion events from a subscription, print them and ack them.",
        epilog=_EPILOG_EVENTS,
        formatter_class=raw,
    )
    events.add_argument(
        "--subscription", required=True, metavar="projects/P/subscriptions/S", help="a pull subscription"
    )
    events.add_argument("--follow", action="store_true", help="keep pulling until Ctrl-C")
    events.add_argument("--format", choices=("table", "json"), default="table", help="default: table")
    events.add_argument("--max", type=_positive_int, metavar="N", help="stop after N events")
    events.add_argument(
        "--wait",
        type=_positive_float,
        default=5.0,
        metavar="SECONDS",
        help="without --follow: stop when a pull brings nothing for this long (default: 5)",
    )
    events.set_defaults(handler=cmd_events)
    return parser


@contextlib.contextmanager
def _worker_logs_to_stderr(verbose: bool) -> Iterator[None]:
    """The worker's JSON log lines go to stderr (warnings, or everything with --verbose) while a
    command runs; the logger is put back as it was afterwards."""
    from worker.logs import JsonFormatter

    class StderrHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                sys.stderr.write(self.format(record) + "\n")
            except Exception:
                self.handleError(record)

    logger = logging.getLogger("worker")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter())
    logger.handlers = [handler]
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]


def _usage(error: UsageError, prog: str) -> int:
    where = error.prog or prog
    message = " ".join(error.message.split())
    hint = f" (see {where} --help)" if error.hint else ""
    _error(f"{where}: error: {message}{hint}")
    return EXIT_USAGE


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    clients: Clients | None = None,
) -> int:
    """Run one command; returns the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        return _usage(error, PROG)
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else EXIT_OK
    handler: Callable[[argparse.Namespace, Mapping[str, str], Clients], int] = args.handler
    try:
        with _worker_logs_to_stderr(args.verbose):
            return handler(args, os.environ if env is None else env, clients or Clients())
    except UsageError as error:
        return _usage(error, f"{PROG} {args.command}")
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (`| head`): stop quietly
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
