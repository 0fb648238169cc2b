"""`submit ACTION SERIES`: validate one request and publish it to REQUEST_TOPIC; print the message id."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from worker.cli.arguments import EXIT_FAILED, EXIT_OK, Parser, add_command, one_request_arguments
from worker.cli.checks import message_data, request_from_arguments, request_topic, settings_from
from worker.cli.clients import Clients, make, stop_publisher
from worker.cli.output import print_error
from worker.errors import RetryableError

_EPILOG = """\
examples:
  python -m worker submit retrieve \\
      projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb/studies/1.2.3/series/1.2.3.4 \\
      --destination gs://bucket/copies --option mode=series
  python -m worker submit search studies/1.2.3/series/1.2.3.4      (a DICOMWEB_URL server)
"""


def add_parser(commands: argparse._SubParsersAction[Parser], parents: Sequence[Parser]) -> None:
    submit = add_command(
        commands,
        "submit",
        parents,
        summary="publish one request to REQUEST_TOPIC",
        description="Validate one request and publish it to REQUEST_TOPIC; print the message id.",
        epilog=_EPILOG,
    )
    one_request_arguments(submit)
    submit.set_defaults(handler=cmd_submit)


def cmd_submit(args: argparse.Namespace, env: Mapping[str, str], clients: Clients) -> int:
    request = request_from_arguments(args)
    topic = request_topic(settings_from(env, {"REQUEST_TOPIC": args.request_topic}))
    from worker.pubsub import Publisher

    client = make(clients.publisher)
    try:
        data = message_data(request, keep_request_id=args.request_id is not None)
        message_id = Publisher(client).publish(topic, data, {"action": str(request.action)})
    except RetryableError as error:
        print_error(str(error))
        return EXIT_FAILED
    finally:
        stop_publisher(client)
    print(message_id, flush=True)
    return EXIT_OK
