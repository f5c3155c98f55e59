"""Serving Prometheus metrics: one HTTP endpoint per registry, and label values kept to a bounded set.

Shared by the worker pool (`lq worker --metrics-port`), the store gauges (`lq metrics`) and the proxy
(which serves `/metrics` on its own port and only uses `bounded`).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.registry import Collector

OTHER = "other"


class MetricsServeError(OSError):
    """The metrics endpoint cannot be served (bad address, no permission)."""


class MetricsPortInUse(MetricsServeError):
    """The metrics port is taken (by another pool, proxy or exporter on this machine)."""


def bounded(value: object, allowed: Iterable[str]) -> str:
    """`value` if it is one of `allowed`, else "other": a client cannot create series by sending names."""
    text = str(value)
    return text if text in set(allowed) else OTHER


class MetricsServer:
    """`GET /metrics` of one registry on host:port, from a daemon thread, until `stop()`."""

    def __init__(self, registry: Collector, port: int, host: str = "127.0.0.1") -> None:
        if not 0 <= port < 65536:
            raise ValueError(f"metrics port must be in 0..65535 (0 = a free one), got {port!r}")
        self.host = host
        try:
            self._server: WSGIServer
            self._thread: threading.Thread
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MetricsPortInUse(
                    exc.errno, f"metrics port {port} on {host} is already in use: pick another --metrics-port/--port"
                ) from exc
            raise MetricsServeError(exc.errno, f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
        self.port = int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
