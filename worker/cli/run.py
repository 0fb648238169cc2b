"""`run ACTION SERIES`: run one request in this process, without Pub/Sub; print its completion event."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

from worker.cli.arguments import (
    EXIT_FAILED,
    EXIT_HANDED_ON,
    EXIT_OK,
    Parser,
    add_command,
    one_request_arguments,
    positive_int,
)
from worker.cli.checks import check_root, message_data, request_from_arguments, settings_from, usage_errors
from worker.cli.clients import Clients, make
from worker.cli.output import ProgressLine, human_size, print_error
from worker.errors import RetryableError
from worker.request import Message

_EPILOG = """\
Runs the worker's own code in this process with the clients it builds from the environment (search,
retrieve and Cloud Storage; delete and archive need DELETE_ENABLED=true). The completion event is
printed on stdout, and also published when COMPLETION_TOPIC is set. Exit status: 0 succeeded, 1 failed,
2 bad arguments, 3 handed on at the deadline (DEADLINE_SECONDS, or --deadline; needs REQUEST_TOPIC).
"""


def add_parser(commands: argparse._SubParsersAction[Parser], parents: Sequence[Parser]) -> None:
    run = add_command(
        commands,
        "run",
        parents,
        summary="run one request here, without Pub/Sub",
        description="Run one request in this process, without Pub/Sub; print the completion event.",
        epilog=_EPILOG,
    )
    one_request_arguments(run)
    run.add_argument(
        "--completion-topic", metavar="projects/P/topics/T", help="overrides COMPLETION_TOPIC (optional)"
    )
    run.add_argument(
        "--deadline", type=positive_int, metavar="SECONDS", help="overrides DEADLINE_SECONDS (1 to 3600)"
    )
    run.set_defaults(handler=cmd_run)


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
    request = request_from_arguments(args, message_id)
    overrides = {
        "REQUEST_TOPIC": args.request_topic,
        "COMPLETION_TOPIC": args.completion_topic,
        "DEADLINE_SECONDS": None if args.deadline is None else str(args.deadline),
    }
    settings = settings_from(env, overrides)
    with usage_errors():
        settings.require_continuation_keys()
    worker = make(clients.worker, settings)
    check_root(worker.ports.dicomweb, request.series)
    line = ProgressLine(sys.stderr)
    worker.progress = CopyProgress(line)
    data = message_data(request, keep_request_id=args.request_id is not None)
    try:
        event = worker.handle(Message(data, {"action": str(request.action)}, message_id))
    except RetryableError as error:
        line.close()
        print_error(f"{request.action} did not finish: {error} (a transient failure: run it again)")
        return EXIT_FAILED
    line.close()
    if event is None:
        print_error(
            "the deadline came first: the rest was handed on to REQUEST_TOPIC, and the function will"
            " publish the completion event (give --deadline to allow more time here)"
        )
        return EXIT_HANDED_ON
    print(json.dumps(event.as_json(), separators=(",", ":")), flush=True)
    return EXIT_OK if event.status == "succeeded" else EXIT_FAILED
