"""A TCP proxy on 127.0.0.1 that adds a fixed one-way delay to every byte, both ways (like ``tc netem
delay``, but for one port and without root or a network namespace).

The loopback stack answers in microseconds; the real services take tens of milliseconds per request,
which is what concurrency hides and a sequential client pays in full. Each chunk read from one side is
written to the other ``delay`` seconds after it was read, in order, so a request/response exchange takes
at least two delays longer while a long body streams at full speed (the delay is latency, not a
bandwidth cap).

Run: ``python -m bench.latency --delay-ms D UPSTREAM_PORT [UPSTREAM_PORT ...]``. It listens on a free
loopback port per upstream, prints one JSON line ``{"UPSTREAM_PORT": LISTEN_PORT, ...}`` when ready and
serves until it is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

LOOPBACK = "127.0.0.1"
READ_BYTES = 256 * 1024
QUEUED_CHUNKS = 64  # per direction: at most 16 MiB waiting out its delay


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each chunk held until `delay` after it was read; EOF is passed on too."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUED_CHUNKS)

    async def forward() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    forwarding = asyncio.create_task(forward())
    try:
        while True:
            data = await reader.read(READ_BYTES)
            await queue.put((loop.time() + delay, data))
            if not data:
                break
        await forwarding
    finally:
        forwarding.cancel()


async def relay(
    client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, upstream: int, delay: float
) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(LOOPBACK, upstream)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            pump(client_reader, server_writer, delay), pump(server_reader, client_writer, delay)
        )
    except (ConnectionError, OSError):
        pass  # one side went away: drop both, as a network would
    finally:
        for writer in (client_writer, server_writer):
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def serve(upstreams: list[int], delay: float) -> None:
    servers = []
    ports: dict[str, int] = {}
    for upstream in upstreams:

        async def handle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: int = upstream
        ) -> None:
            await relay(reader, writer, upstream, delay)

        server = await asyncio.start_server(handle, LOOPBACK, 0, backlog=256)
        servers.append(server)
        ports[str(upstream)] = server.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay, each direction")
    parser.add_argument("upstreams", type=int, nargs="+", help="loopback ports to put behind the delay")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.upstreams, args.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
