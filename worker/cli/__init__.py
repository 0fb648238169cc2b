"""The operator's command line, `python -m worker COMMAND ...` (usage: `program.py`). The function never
imports it: nothing main.py imports may import this package.

    program      the usage text, the parser and `main` (dispatch; a usage error printed as one line)
    submit, fan_out, run, events, report   one module per command: its arguments and its handler
    arguments    exit statuses, `UsageError`, the argument types and the arguments commands share
    checks       the worker's own checks (settings, request, server kind) as usage errors
    clients      the Pub/Sub, DICOMweb and worker clients, made only when a command needs one
    output       one-line messages and the progress line on stderr
    table        the events table and JSON lines
    stderr_logs  the worker's log lines on stderr while a command runs
"""

from worker.cli.arguments import (
    EXIT_FAILED,
    EXIT_HANDED_ON,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
)
from worker.cli.clients import Clients
from worker.cli.program import main

__all__ = [
    "EXIT_FAILED",
    "EXIT_HANDED_ON",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Clients",
    "UsageError",
    "main",
]
