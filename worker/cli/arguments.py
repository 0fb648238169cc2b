"""The command line's grammar: exit statuses, the one-line usage error, the argument types and the
arguments the commands share. Nothing here talks to a server or reads a setting."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import datetime
from typing import NoReturn

from worker.request import Action

PROG = "python -m worker"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_HANDED_ON = 3
EXIT_INTERRUPTED = 130

_MODALITY = re.compile(r"[A-Z0-9_ ]{1,16}")  # a DICOM CS value
_DATE = "%Y%m%d"
_SERIES_ACTIONS = [str(a) for a in Action if a is not Action.SWEEP]  # a sweep is a rule, not a series
_ACTIONS = "one of " + ", ".join(_SERIES_ACTIONS)
_SERIES_HELP = (
    "projects/{p}/locations/{l}/datasets/{d}/dicomStores/{s}/dicomWeb/studies/{study}/series/{series},"
    " or studies/{study}/series/{series} for a DICOMWEB_URL server"
)


class UsageError(Exception):
    """Bad arguments or settings: the command stops with exit status 2 and this one-line reason."""

    def __init__(self, message: str, prog: str | None = None, *, hint: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.prog = prog
        self.hint = hint


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the reason and where to look), not the whole usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog, hint=True)


def add_command(
    commands: argparse._SubParsersAction[Parser],
    name: str,
    parents: Sequence[Parser],
    *,
    summary: str,
    description: str,
    epilog: str,
) -> Parser:
    """A command's subparser, its epilog printed as written."""
    return commands.add_parser(
        name,
        parents=parents,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# --------------------------------------------------------------------------------------------------
# Argument types
# --------------------------------------------------------------------------------------------------


def option(text: str) -> tuple[str, object]:
    """`--option key=value`; `true`/`false` become booleans (includeMetadata), the rest stays text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    parsed: object = {"true": True, "false": False}.get(value.strip().lower(), value.strip())
    return key.strip(), parsed


def positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return number


def positive_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return number


def modality(text: str) -> str:
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


def study_date(text: str) -> str:
    """A DICOM date or date range: `20240101`, `20240101-20241231`, `20240101-` or `-20241231`."""
    low, sep, high = text.strip().partition("-")
    if not low and not high:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    start = _date(low) if low else None
    end = _date(high) if high else None
    if start is not None and end is not None and start > end:
        raise argparse.ArgumentTypeError(f"the range {text!r} ends before it starts")
    return f"{low}{sep}{high}"


# --------------------------------------------------------------------------------------------------
# Arguments the commands share
# --------------------------------------------------------------------------------------------------


def action_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", metavar="ACTION", choices=_SERIES_ACTIONS, help=_ACTIONS)


def one_request_arguments(parser: argparse.ArgumentParser) -> None:
    """ACTION SERIES and the request's flags: what `submit` and `run` take."""
    action_argument(parser)
    parser.add_argument("series", metavar="SERIES", help=_SERIES_HELP)
    request_arguments(parser)


def request_arguments(parser: argparse.ArgumentParser, *, request_id: bool = True) -> None:
    parser.add_argument("--destination", metavar="gs://BUCKET/PREFIX", help="default: DEFAULT_DESTINATION")
    if request_id:
        parser.add_argument(
            "--request-id", metavar="ID", help="correlates the completion event (default: the message id)"
        )
    parser.add_argument(
        "--option",
        type=option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a request option: transferSyntax=..., includeMetadata=true, mode=instances|series",
    )
