"""`events --subscription S`: pull completion events, print them (a table or JSON lines), ack them."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from worker.cli.arguments import (
    EXIT_FAILED,
    EXIT_OK,
    Parser,
    UsageError,
    add_command,
    positive_float,
    positive_int,
)
from worker.cli.clients import Clients, make
from worker.cli.output import print_error, reason
from worker.cli.table import TABLE_HEADER, json_line, table_row

PULL_BATCH = 100
FOLLOW_PULL_SECONDS = 30.0

_SUBSCRIPTION = re.compile(r"projects/[^/\s]+/subscriptions/[^/\s]+")

_EPILOG = """\
The table shows requestId, action, status, the study and series UIDs (shortened), instanceCount and the
error code; --format json prints each event's data as one JSON line. Events are acked once printed.
"""


def add_parser(commands: argparse._SubParsersAction[Parser], parents: Sequence[Parser]) -> None:
    events = add_command(
        commands,
        "events",
        parents,
        summary="pull, print and ack completion events",
        description="Pull completion events from a subscription, print them and ack them.",
        epilog=_EPILOG,
    )
    events.add_argument(
        "--subscription", required=True, metavar="projects/P/subscriptions/S", help="a pull subscription"
    )
    events.add_argument("--follow", action="store_true", help="keep pulling until Ctrl-C")
    events.add_argument("--format", choices=("table", "json"), default="table", help="default: table")
    pull_arguments(events, "without --follow")
    events.set_defaults(handler=cmd_events)


def pull_arguments(parser: argparse.ArgumentParser, when: str) -> None:
    """--max and --wait: when pulling from a subscription stops (`events`, `report`)."""
    parser.add_argument("--max", type=positive_int, metavar="N", help="stop after N messages")
    parser.add_argument(
        "--wait",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help=f"{when}: stop when a pull brings nothing for this long (default: 5)",
    )


def check_subscription(subscription: str) -> None:
    if not _SUBSCRIPTION.fullmatch(subscription):
        raise UsageError("--subscription must be projects/{project}/subscriptions/{subscription}")


def pull_batches(
    client: Any, subscription: str, *, limit: int | None, wait: float, follow: bool
) -> Iterator[list[Any]]:
    """The received messages, a batch at a time, until a pull brings nothing (or `limit`; with `follow`,
    until Ctrl-C). A batch is acked once the caller asks for the next one: what was shown is acked."""
    from google.api_core import exceptions as api_exceptions

    taken = 0
    while limit is None or taken < limit:
        want = PULL_BATCH if limit is None else min(PULL_BATCH, limit - taken)
        try:
            response = client.pull(
                request={"subscription": subscription, "max_messages": want},
                timeout=FOLLOW_PULL_SECONDS if follow else wait,
            )
            received = list(response.received_messages)[:want]
        except api_exceptions.DeadlineExceeded:
            received = []
        if not received:
            if follow:
                continue
            return
        yield received
        client.acknowledge(
            request={"subscription": subscription, "ack_ids": [item.ack_id for item in received]}
        )
        taken += len(received)


def cmd_events(args: argparse.Namespace, env: Mapping[str, str], clients: Clients) -> int:
    subscription = args.subscription
    check_subscription(subscription)
    from google.api_core import exceptions as api_exceptions

    client = make(clients.subscriber)
    shown = 0
    header = args.format == "table"
    try:
        for received in pull_batches(
            client, subscription, limit=args.max, wait=args.wait, follow=args.follow
        ):
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
            shown += len(received)
    except api_exceptions.GoogleAPICallError as error:
        print_error(f"pulling from {subscription} failed: {reason(error)}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        if not args.follow:
            raise
    finally:
        with contextlib.suppress(Exception):
            client.close()
    print_error(f"events: {shown}")
    return EXIT_OK
