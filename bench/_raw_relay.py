"""The baseline for the tunnel benchmark: the least a byte relay can be, in asyncio.

    python -m bench._raw_relay unix:///tmp/raw.sock 127.0.0.1 8443

Accepts on the Unix socket, connects each connection to HOST:PORT and copies bytes both ways until either side
closes. No limits, no resolution cache, no log: what ``nitrokit parent --mode tunnel`` does minus everything
that makes it safe to run. Prints the listening address, then serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

_CHUNK = 65536


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


async def _serve(path: str, host: str, port: int) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, target_writer), _pump(target_reader, writer))

    server = await asyncio.start_unix_server(relay, path)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"unix://{path}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    listen, host, port = sys.argv[1:4]
    asyncio.run(_serve(listen.removeprefix("unix://"), host, int(port)))


if __name__ == "__main__":
    main()
