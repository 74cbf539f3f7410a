"""socketTextStream's source: a reader thread buffers UTF-8 lines from a TCP server.

Like Spark's SocketReceiver it reconnects after the server closes or fails; lines read before a
batch time belong to that batch. Nothing is acknowledged to the server, so nothing is replayed.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

log = logging.getLogger(__name__)

_RECONNECT_DELAY_S = 0.5


class SocketTextSource:
    """One connection at a time to ``hostname:port``, read line by line."""

    def __init__(self, hostname: str, port: int) -> None:
        self._addr = (hostname, port)
        self._buffer: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="socket-source", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with socket.create_connection(self._addr, timeout=1.0) as sock:
                    self._sock = sock
                    sock.settimeout(0.2)
                    self._read(sock)
            except OSError as exc:
                log.debug("socket source %s:%d: %s", *self._addr, exc)
            finally:
                self._sock = None
            self._stop.wait(_RECONNECT_DELAY_S)

    def _read(self, sock: socket.socket) -> None:
        pending = b""
        while not self._stop.is_set():
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if lines:
                decoded = [ln.decode("utf-8", "replace").rstrip("\r") for ln in lines]
                with self._lock:
                    self._buffer.extend(decoded)
        if pending:
            with self._lock:
                self._buffer.append(pending.decode("utf-8", "replace").rstrip("\r"))

    def fill(self, deadline: float) -> None:
        return None

    def take_batch(self, batch_time_ms: int) -> list[Any]:
        with self._lock:
            batch, self._buffer = self._buffer, []
        return batch

    def on_batch_persisted(self, batch_time_ms: int) -> None:
        return None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
