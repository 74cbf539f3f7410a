"""The job's HTTP endpoints: /metrics, /livez and /readyz, on a daemon thread.

The stdlib server is enough for a probe every few seconds and a scrape every few more, and keeps
the endpoints up whatever the batch thread does, which is the point of a liveness probe.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from service.observability.health import Verdict

Probe = Callable[[], Verdict]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.server.registry))
        elif path == "/livez":
            self._verdict(self.server.liveness())
        elif path == "/readyz":
            self._verdict(self.server.readiness())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _verdict(self, verdict: Verdict) -> None:
        status = "fail" if not verdict.ok else "degraded" if verdict.degraded else "ok"
        body: dict[str, object] = {"status": status, "failed": dict(verdict.failed)}
        if verdict.degraded:
            body["degraded"] = dict(verdict.degraded)
        self._send(
            200 if verdict.ok else 503,
            "application/json",
            json.dumps(body).encode() + b"\n",
        )

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes arrive every few seconds; one stderr line each would drown the job's own logs.
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        registry: CollectorRegistry,
        liveness: Probe,
        readiness: Probe,
    ) -> None:
        self.registry = registry
        self.liveness = liveness
        self.readiness = readiness
        super().__init__(address, _Handler)


class ObservabilityServer:
    """Serves the endpoints on ``host:port`` (port 0: any free port, see ``port``)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        liveness: Probe,
        readiness: Probe,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._server = _Server((host, port), registry, liveness, readiness)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dstreams-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
