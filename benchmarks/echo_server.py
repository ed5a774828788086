"""The echo server the benchmarks talk to, in a process of its own on 127.0.0.1.

A separate process, so that the server's work is not billed to the client
under test and the two can use both cores. It prints ``PORT <n>`` once it
listens, then echoes every message until its standard input (a pipe) closes (the
runner exiting closes it, so no server outlives its run) or ``--max-seconds``
pass, whichever comes first.

``--handshake-delay`` makes every opening handshake wait that many seconds
before it is answered, as a distant server would: workload 4 uses 20 ms.
``--json-rpc`` answers JSON-RPC 2.0 requests instead of echoing them, for M1:
it is the test suite's :class:`~aio_websocket_pool.testing.JsonRpcServer`,
whose ``echo`` method answers its params.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from aio_websocket_pool.testing import JsonRpcServer

#: Pending TCP connections the listening socket queues: enough for 1,000 parallel connects,
#: which asyncio's default of 100 is not (dropped SYNs come back a whole second later).
BACKLOG = 4096


async def _echo(websocket: ServerConnection) -> None:
    with contextlib.suppress(Exception):  # a client that goes away mid-reply is not an error here
        async for message in websocket:
            await websocket.send(message)


async def _stdin_closed() -> None:
    """Return when standard input reaches end of file: the parent has gone."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def serve_until_told(handshake_delay: float, max_seconds: float) -> None:
    """Echo on an ephemeral port of 127.0.0.1 until stdin closes or ``max_seconds`` pass."""

    async def delay_handshake(_conn: ServerConnection, _request: Request) -> Response | None:
        await asyncio.sleep(handshake_delay)
        return None

    async with serve(
        _echo,
        "127.0.0.1",
        0,
        process_request=delay_handshake if handshake_delay > 0 else None,
        backlog=BACKLOG,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await _until_told(max_seconds)


async def serve_json_rpc_until_told(max_seconds: float) -> None:
    """Answer JSON-RPC 2.0 on an ephemeral port of 127.0.0.1 until stdin closes or time is up."""
    async with JsonRpcServer().running() as server:
        print(f"PORT {urlsplit(server.uri).port}", flush=True)
        await _until_told(max_seconds)


async def _until_told(max_seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_stdin_closed(), max_seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshake-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--max-seconds", type=float, default=3600.0, metavar="SECONDS")
    parser.add_argument("--json-rpc", action="store_true", help="answer JSON-RPC 2.0 (M1)")
    args = parser.parse_args(argv)
    if args.json_rpc:
        if args.handshake_delay:
            parser.error("--json-rpc answers every handshake at once")
        asyncio.run(serve_json_rpc_until_told(args.max_seconds))
    else:
        asyncio.run(serve_until_told(args.handshake_delay, args.max_seconds))


if __name__ == "__main__":
    main()
