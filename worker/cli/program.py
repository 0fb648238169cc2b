"""The operator's command line: `python -m worker COMMAND ...` (every command has --help).

    submit ACTION SERIES       validate one request and publish it to REQUEST_TOPIC; print the message id
    fan-out ACTION TARGET      search the series of a study or a store; publish one request per series
    run ACTION SERIES          run one request in this process, without Pub/Sub; print its completion event
    events --subscription S    pull completion events, print them (a table or JSON lines) and ack them
    report --file F | --subscription S
                               summarise completion events (events, BigQuery audit rows): per action and
                               status, failures by code, the largest series; --format json, --chart PNG

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
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from worker.cli import events, fan_out, report, run, submit
from worker.cli.arguments import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROG, Parser, UsageError
from worker.cli.clients import Clients
from worker.cli.output import print_error
from worker.cli.stderr_logs import worker_logs_to_stderr


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", help="log the worker's progress (JSON on stderr)"
    )
    topic = Parser(add_help=False)
    topic.add_argument("--request-topic", metavar="projects/P/topics/T", help="overrides REQUEST_TOPIC")

    parser = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    submit.add_parser(commands, [common, topic])
    fan_out.add_parser(commands, [common, topic])
    run.add_parser(commands, [common, topic])
    events.add_parser(commands, [common])
    report.add_parser(commands, [common])
    return parser


def _usage(error: UsageError, prog: str) -> int:
    where = error.prog or prog
    message = " ".join(error.message.split())
    hint = f" (see {where} --help)" if error.hint else ""
    print_error(f"{where}: error: {message}{hint}")
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
        with worker_logs_to_stderr(args.verbose):
            return handler(args, os.environ if env is None else env, clients or Clients())
    except UsageError as error:
        return _usage(error, f"{PROG} {args.command}")
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (`| head`): stop quietly
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
