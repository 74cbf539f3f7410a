"""A TCP forwarder on a loopback port: what a Kubernetes Service or a failover-aware proxy
(HAProxy, Envoy) does in front of a Redis primary. ``retarget`` sends new connections to another
server and cuts the open ones, as a failover does to clients of the old primary.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self._host = host
        self._target = target_port
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://{self._host}:{self.port}/0"

    def retarget(self, target_port: int) -> None:
        """New connections go to ``target_port``; every open one is cut."""
        with self._lock:
            self._target = target_port
            doomed, self._open = self._open, []
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.retarget(self._target)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                target = self._target
            try:
                upstream = socket.create_connection((self._host, target), timeout=5)
            except OSError:
                client.close()  # the target is down: the client sees a refused connection
                continue
            upstream.settimeout(None)
            with self._lock:
                # a retarget or close meanwhile cut the open connections: this one too
                stale = self._closed or target != self._target
                if not stale:
                    self._open += [client, upstream]
            if stale:
                client.close()
                upstream.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # one side ended: end the other (shutdown wakes the pump blocked on it), and let
            # nothing wait for the garbage collector to close them
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
