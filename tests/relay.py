"""A byte-recording relay: stands between two real peers and keeps every byte each side sent."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self

from nitrokit.wire.address import Address, bound_address, connect, listen, parse_address


class RecordingRelay:
    """Accepts on ``listen_at`` and forwards each connection to ``target``, recording both directions."""

    def __init__(self, listen_at: str, target: str) -> None:
        self._requested = parse_address(listen_at)
        self._target = parse_address(target)
        self._server = listen(self._requested)
        self._server.setblocking(True)
        self._server.settimeout(0.2)
        self.address: Address = bound_address(self._server, self._requested)
        self.upstream = bytearray()    # what the client sent towards the target
        self.downstream = bytearray()  # what the target sent back
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Self:
        thread = threading.Thread(target=self._accept_loop, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._server.close()

    def recorded(self) -> bytes:
        with self._lock:
            return bytes(self.upstream) + bytes(self.downstream)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return
            upstream = connect(self._target, timeout=5)
            for source, sink, record in ((client, upstream, self.upstream), (upstream, client, self.downstream)):
                thread = threading.Thread(target=self._pump, args=(source, sink, record), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, sink: socket.socket, record: bytearray) -> None:
        source.settimeout(0.2)
        try:
            while not self._stop.is_set():
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                with self._lock:
                    record.extend(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
