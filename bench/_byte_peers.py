"""The byte-level peers of the tunnel benchmark, each a child process that prints its address and serves until
SIGTERM.

    python -m bench._byte_peers relay unix:///tmp/raw.sock 127.0.0.1 8443
    python -m bench._byte_peers answer

``relay``: the least a byte relay can be, in asyncio. It accepts on the Unix socket, connects each connection to
HOST:PORT and copies bytes both ways until either side closes: no limits, no resolution cache, no log. It is
what ``nitrokit parent --mode tunnel`` does minus everything that makes it safe to run.

``answer``: a stand-in for KMS that costs next to nothing, so that a relay in front of it is what is measured.
On a loopback TCP port, it reads requests of :data:`REQUEST_BYTES` and answers each with :data:`ANSWER_BYTES`:
the sizes of a GenerateRandom call with a Recipient inside TLS (the attestation document in base64 up, the
CMS envelope in base64 down, with HTTP headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

_CHUNK = 65536
#: one GenerateRandom request with a Recipient, as TLS records (a 4.6 KB document in base64, JSON, HTTP, SigV4)
REQUEST_BYTES = 7000
#: its answer (a 500-byte envelope in base64, JSON, HTTP headers)
ANSWER_BYTES = 1100


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


async def _relay(listen: str, host: str, port: int) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, target_writer), _pump(target_reader, writer))

    await _serve(await asyncio.start_unix_server(relay, listen.removeprefix("unix://")), listen)


async def _answer() -> None:
    answer = b"a" * ANSWER_BYTES

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                await reader.readexactly(REQUEST_BYTES)
                writer.write(answer)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    await _serve(server, f"{host}:{port}")


async def _serve(server: asyncio.Server, address: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(address, flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    if sys.argv[1] == "relay":
        listen, host, port = sys.argv[2:5]
        asyncio.run(_relay(listen, host, int(port)))
    else:
        asyncio.run(_answer())


if __name__ == "__main__":
    main()
