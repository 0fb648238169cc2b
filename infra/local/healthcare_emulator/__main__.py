"""Command line: ``python -m infra.local.healthcare_emulator --host 127.0.0.1 --port 0 --data-dir DIR
[--storage-url http://127.0.0.1:PORT]``."""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
from types import FrameType

from .server import HealthcareEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.healthcare_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument(
        "--data-dir", default=None, help="where STOW'd instances are kept (default: a temp dir)"
    )
    parser.add_argument("--operation-delay", type=float, default=0.5, help="seconds until a delete is done")
    parser.add_argument("--absent-delete", choices=("404", "operation"), default="404")
    parser.add_argument("--boundary-quoting", choices=("quoted", "unquoted", "random"), default="random")
    parser.add_argument(
        "--storage-url",
        default=None,
        help="the Cloud Storage JSON API that import reads (fake-gcs-server on 127.0.0.1, no credentials)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="healthcare-emulator-") as tmp:
        try:
            emulator = HealthcareEmulator(
                args.data_dir or tmp,
                args.host,
                args.port,
                operation_delay=args.operation_delay,
                absent_delete=args.absent_delete,
                boundary_quoting=args.boundary_quoting,
                storage_url=args.storage_url,
                verbose=args.verbose,
            ).start()
        except ValueError as error:  # a host or storage URL off loopback
            parser.error(str(error))
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        print(f"READY {emulator.url}", flush=True)
        while not stop.wait(0.5):
            pass
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
