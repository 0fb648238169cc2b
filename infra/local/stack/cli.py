"""The local test/demo stack: real local components as managed processes, all on 127.0.0.1.

Command line (for ``make demo``)::

    python -m infra.local.stack up [--run-dir DIR] [--orthanc] [--no-healthcare] [--deploy] [--env K=V ...]
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
import types
from pathlib import Path

from .stack import Stack


def _raise_keyboard_interrupt(signum: int, frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt so teardown code (and atexit) runs."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_keyboard_interrupt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.stack", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack, print its URLs and wait for Ctrl-C")
    up.add_argument("--run-dir", help="directory for logs and data (default: a new temporary directory)")
    up.add_argument("--orthanc", action="store_true", help="also start Orthanc")
    up.add_argument("--no-healthcare", action="store_true", help="without the Healthcare API emulator")
    up.add_argument("--deploy", action="store_true", help="also deploy the worker function (main.py)")
    up.add_argument("--env", action="append", default=[], metavar="K=V", help="extra function environment")
    args = parser.parse_args(argv)

    install_signal_handlers()
    run_dir = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix="dicom-worker-stack-"))
    stack = Stack(run_dir, healthcare=not args.no_healthcare, orthanc=args.orthanc)
    try:
        stack.start()
        print(f"run directory: {run_dir}  (logs: *.log)")
        print(f"started in {stack.startup_seconds:.2f} s")
        for key, value in stack.client_env().items():
            print(f"export {key}={value}")
        if stack.orthanc is not None:
            print(f"orthanc: {stack.orthanc.url}  dicomweb: {stack.orthanc.dicomweb_url}")
        if args.deploy:
            env = dict(item.split("=", 1) for item in args.env)
            deployment = stack.deploy(env)
            print(f"function: {deployment.url}  (log: {deployment.function.log_path})")
            print(f"request topic: {deployment.request_topic}")
            print(f"completion subscription: {deployment.completion_subscription}")
            print(f"dead-letter subscription: {deployment.dead_letter_subscription}")
        print("running; Ctrl-C to stop", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        stack.stop()
    return 0
