"""`fan-out ACTION TARGET`: search the series of a study or a store; publish one request per series."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from worker.cli.arguments import (
    EXIT_FAILED,
    EXIT_OK,
    Parser,
    UsageError,
    action_argument,
    add_command,
    modality,
    positive_int,
    request_arguments,
    study_date,
)
from worker.cli.checks import (
    check_root,
    checked_request,
    message_data,
    parse_target,
    request_topic,
    settings_from,
    usage_errors,
)
from worker.cli.clients import Clients, make, stop_publisher
from worker.cli.output import ProgressLine, print_error, reason
from worker.enumeration import Enumeration, SearchLimits
from worker.errors import PermanentError, RetryableError, SourceGone
from worker.models import DicomStore, GcsLocation, SeriesRef, is_uid
from worker.request import SeriesRequest
from worker.settings import Settings

PUBLISH_TIMEOUT_SECONDS = 60.0  # per future, once every message of a fan-out is handed to the client

_EPILOG = """\
TARGET is a study, projects/.../dicomStores/s/dicomWeb/studies/X (studies/X with DICOMWEB_URL), or a
whole store, projects/.../dicomStores/s (- or all with DICOMWEB_URL). For restore and verify, TARGET is
an archive, gs://bucket/prefix: one request per series folder under it ({prefix}/{study}/{series}), for
the store given with --store (left out with DICOMWEB_URL). The progress line goes to stderr; the summary
(series found, requests published, failures) to stdout; --dry-run lists the series instead.

examples:
  python -m worker fan-out archive projects/p/locations/l/datasets/d/dicomStores/s \\
      --modality CT --study-date 20240101-20241231 --dry-run
  python -m worker fan-out retrieve projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb/studies/1.2.3
  python -m worker fan-out restore gs://my-archive/dicom \\
      --store projects/p/locations/l/datasets/d/dicomStores/s
"""


def add_parser(commands: argparse._SubParsersAction[Parser], parents: Sequence[Parser]) -> None:
    fan_out = add_command(
        commands,
        "fan-out",
        parents,
        summary="search a study or a store and publish one request per series",
        description="Search the series of a study or a store and publish one request per series.",
        epilog=_EPILOG,
    )
    action_argument(fan_out)
    fan_out.add_argument("target", metavar="TARGET", help="STUDY_PATH or STORE_PATH (see below)")
    fan_out.add_argument("--modality", type=modality, help="only series of this modality (e.g. CT)")
    fan_out.add_argument(
        "--study-date",
        type=study_date,
        metavar="DATE[-DATE]",
        help="only studies of this date or range: 20240101, 20240101-20241231, 20240101-, -20241231",
    )
    request_arguments(fan_out, request_id=False)
    fan_out.add_argument(
        "--store",
        metavar="STORE_PATH",
        help="restore, verify: the store of the series (projects/.../dicomStores/s)",
    )
    fan_out.add_argument("--dry-run", action="store_true", help="list the series; publish nothing")
    fan_out.add_argument(
        "--page-size", type=positive_int, metavar="N", help="search page size (default: SEARCH_PAGE_SIZE)"
    )
    fan_out.set_defaults(handler=cmd_fan_out)


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
            failures.append((request.series, reason(error)))
            settled(True)
            continue
        future.add_done_callback(on_done)
        pending.append((request, future))
    for request, future in pending:
        try:
            future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
        except Exception as error:  # google.api_core errors, TimeoutError, CancelledError
            failures.append((request.series, reason(error)))
    progress.close()
    return PublishOutcome(total - len(failures), failures)


ARCHIVE_ACTIONS = frozenset({"restore", "verify"})  # their TARGET is an archive, not a store


def archived_series(
    args: argparse.Namespace, settings: Settings, clients: Clients
) -> tuple[SeriesRequest, list[SeriesRef]]:
    """restore and verify: the series folders of the archive TARGET, as series of the --store."""
    if args.modality or args.study_date:
        raise UsageError("--modality and --study-date filter a store's search, not an archive")
    with usage_errors():
        archive = GcsLocation.parse(args.target, "TARGET")
        store = DicomStore.parse(args.store) if args.store else None
    if (store is None) != (settings.dicomweb_url is not None):
        raise UsageError("give --store projects/.../dicomStores/s (left out only with DICOMWEB_URL)")
    probe = SeriesRef(store, "1", "1")
    template = checked_request(
        args.action, probe.source, destination=archive.uri(), request_id=None, options=args.option
    )
    storage = make(clients.storage, settings)
    found: list[SeriesRef] = []
    for study in storage.subfolders(archive):
        if not is_uid(study):
            continue  # not a study folder of this layout
        for series in storage.subfolders(GcsLocation(archive.bucket, archive.object_name(study))):
            if is_uid(series):
                found.append(SeriesRef(store, study, series))
    return template, found


def cmd_fan_out(args: argparse.Namespace, env: Mapping[str, str], clients: Clients) -> int:
    settings = settings_from(env, {"REQUEST_TOPIC": args.request_topic})
    topic = None if args.dry_run else request_topic(settings)
    if args.action in ARCHIVE_ACTIONS:
        try:
            template, found = archived_series(args, settings, clients)
        except (PermanentError, RetryableError) as error:
            print_error(f"the archive listing failed: {error}")
            return EXIT_FAILED
        return publish_found(args, template, found, topic, clients)
    if args.store:
        raise UsageError("--store goes with restore and verify (their TARGET is an archive)")
    store, study = parse_target(args.target, settings)
    probe = SeriesRef(store, study or "1", "1")
    template = checked_request(
        args.action, probe.source, destination=args.destination, request_id=None, options=args.option
    )
    filters = {}
    if args.modality:
        filters["Modality"] = args.modality
    if args.study_date:
        filters["StudyDate"] = args.study_date
    dicomweb = make(clients.dicomweb, settings)
    check_root(dicomweb, probe)
    try:
        page_size = args.page_size or settings.search_page_size
        if study is None:  # a whole store: partitioned past the paging limits, as a sweep lists it
            limits = SearchLimits(page_size, settings.search_max_offset)
            found = Enumeration(dicomweb, store, filters, limits).all()
        else:
            found = dicomweb.search_series(store, study, filters, page_size)
    except SourceGone:
        print_error(f"the series search failed: {args.target} is not found (404)")
        return EXIT_FAILED
    except (PermanentError, RetryableError) as error:
        print_error(f"the series search failed: {error}")
        return EXIT_FAILED
    return publish_found(args, template, found, topic, clients)


def publish_found(
    args: argparse.Namespace,
    template: SeriesRequest,
    found: list[SeriesRef],
    topic: str | None,
    clients: Clients,
) -> int:
    """Publish one request per series found (or list them with --dry-run); the summary on stdout."""
    if args.dry_run:
        for series in found:
            print(series.source)
        sys.stdout.flush()
        print_error(f"series found: {len(found)}; dry run: nothing published")
        return EXIT_OK
    assert topic is not None
    requests = [replace(template, series=series) for series in found]
    outcome = PublishOutcome(0, [])
    if requests:
        client = make(clients.publisher)
        try:
            outcome = publish_all(client, topic, requests, ProgressLine(sys.stderr))
        finally:
            stop_publisher(client)
    for series, why in outcome.failures:
        print_error(f"not published: {series.source}: {why}")
    print(
        f"series found: {len(found)}; requests published: {outcome.published};"
        f" failures: {len(outcome.failures)}",
        flush=True,
    )
    return EXIT_FAILED if outcome.failures else EXIT_OK
