"""A TCP proxy that can cut a connection at a chosen instant of a command's round trip.

It makes the ambiguous-reply window deterministic: the command reaches Redis (or not) and the
client sees the connection drop either way.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class CuttingProxy:
    upstream_port: int
    # "request": cut before forwarding the matching command; "reply": forward it, cut the reply
    cut: str | None = None
    marker: bytes = b"EVALSHA"
    cuts_done: int = 0
    _listener: socket.socket = field(init=False)
    _closing: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    def close(self) -> None:
        self._closing = True
        self._listener.close()

    def _take_cut(self, kind: str) -> bool:
        with self._lock:
            if self.cut != kind:
                return False
            self.cut = None
            self.cuts_done += 1
            return True

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            pending = threading.Event()  # a matching request went through: cut its reply
            threading.Thread(
                target=self._upstream, args=(client, server, pending), daemon=True
            ).start()
            threading.Thread(
                target=self._downstream, args=(client, server, pending), daemon=True
            ).start()

    def _upstream(
        self, client: socket.socket, server: socket.socket, pending: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(1 << 16):
                if self.marker in data:
                    if self._take_cut("request"):
                        break
                    if self.cut == "reply":
                        pending.set()
                server.sendall(data)
        _close(client, server)

    def _downstream(
        self, client: socket.socket, server: socket.socket, pending: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(1 << 16):
                if pending.is_set() and self._take_cut("reply"):
                    break  # Redis has run the command; the client never hears of it
                client.sendall(data)
        _close(client, server)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
