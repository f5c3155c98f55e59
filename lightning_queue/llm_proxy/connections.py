"""Client connections: a cap on how many are open, a deadline for the first request head, and quiet
logs when the process runs out of descriptors.

Every accepted socket is wrapped before aiohttp's protocol sees it, so the gate knows which connections
are open and which of them have a request in progress. At the cap, the oldest connection with no request
in progress (a slow or silent client, or an idle keep-alive one) is closed to make room; when every
connection is busy, the newcomer gets a 503 at once. A connection that has not delivered its first
request head within `header_timeout` is closed; between requests, aiohttp's keep-alive timeout
(`idle_timeout`) bounds the wait for the next head.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler

from .limits import ServerLimits

logger = logging.getLogger(__name__)

_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s"
)
_BUSY_BODY = (
    b'{"error": {"message": "the proxy is at its connection limit and every connection is busy; retry later", '
    b'"type": "server_busy", "code": 503}}'
)
_ACCEPT_ERROR = "socket.accept() out of system resource"
# asyncio.constants.ACCEPT_RETRY_DELAY: how long after EMFILE the loop tries accept() again.
_ACCEPT_RETRY_SECONDS = 1.0
_PENDING_SECONDS = 10.0


class LogLimiter:
    """At most one record per `interval` seconds for each kind; the next one tells how many were skipped."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def allow(self, kind: str) -> int | None:
        """None: stay quiet; else the number of records of this kind skipped since the last one."""
        now = time.monotonic()
        if now - self._last.get(kind, -self.interval) < self.interval:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return None
        self._last[kind] = now
        return self._skipped.pop(kind, 0)


class _Connection(asyncio.Protocol):
    """Stands between the transport and aiohttp's handler, reporting to the gate."""

    def __init__(self, gate: ConnectionGate, handler: RequestHandler) -> None:
        self.gate = gate
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.requests = 0
        self.busy = 0
        self.head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.gate.opened(self)
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        self.handler.eof_received()
        return None

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.closed(self)
        self.handler.connection_lost(exc)

    def close(self) -> None:
        self.handler.force_close()


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_BUSY_RESPONSE % (len(_BUSY_BODY), _BUSY_BODY))
        transport.close()


class ConnectionGate:
    """The protocol factory of the listening socket: wraps aiohttp's, enforcing `limits`."""

    def __init__(self, limits: ServerLimits) -> None:
        self.server: web.Server | None = None  # aiohttp's protocol factory, set once its runner is set up
        self.limits = limits
        self.refused = 0
        self.evicted = 0
        self.head_timeouts = 0
        # Insertion order is age order: the first idle one is the oldest.
        self._open: dict[asyncio.Transport, _Connection] = {}
        # Accepted, connection_made not run yet (it runs a loop turn later); dropped after a while in
        # case the transport never came up.
        self._pending: dict[_Connection, float] = {}
        self._logs = LogLimiter()

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def __call__(self) -> asyncio.Protocol:
        if self.server is None:
            raise RuntimeError("ConnectionGate.server must be set before connections arrive")
        if self._pending:
            stale = time.monotonic() - _PENDING_SECONDS
            for connection in [c for c, at in self._pending.items() if at < stale]:
                del self._pending[connection]
        if len(self._open) + len(self._pending) >= self.limits.max_connections and not self._make_room():
            self.refused += 1
            skipped = self._logs.allow("refused")
            if skipped is not None:
                logger.warning(
                    "connection limit of %d reached and every connection is busy: refusing new ones with 503 "
                    "(%d more refused since the last warning)",
                    self.limits.max_connections,
                    skipped,
                )
            return _Refused()
        connection = _Connection(self, self.server())
        self._pending[connection] = time.monotonic()
        return connection

    def _make_room(self) -> bool:
        for connection in self._open.values():
            if connection.busy == 0:
                self.evicted += 1
                self._forget(connection)
                connection.close()
                return True
        return False

    def opened(self, connection: _Connection) -> None:
        self._pending.pop(connection, None)
        assert connection.transport is not None
        self._open[connection.transport] = connection
        loop = asyncio.get_running_loop()
        connection.head_deadline = loop.call_later(self.limits.header_timeout, self._head_late, connection)

    def closed(self, connection: _Connection) -> None:
        self._forget(connection)

    def _forget(self, connection: _Connection) -> None:
        if connection.head_deadline is not None:
            connection.head_deadline.cancel()
            connection.head_deadline = None
        if connection.transport is not None:
            self._open.pop(connection.transport, None)

    def _head_late(self, connection: _Connection) -> None:
        connection.head_deadline = None
        if connection.requests == 0:
            self.head_timeouts += 1
            self._forget(connection)
            connection.close()

    def track(self) -> Middleware:
        """A middleware marking connections busy while one of their requests is in progress."""

        @web.middleware
        async def busy_while_served(request: web.Request, handler: Handler) -> web.StreamResponse:
            connection = self._open.get(request.transport) if request.transport is not None else None
            if connection is None:
                return await handler(request)
            connection.requests += 1
            connection.busy += 1
            if connection.head_deadline is not None:
                connection.head_deadline.cancel()
                connection.head_deadline = None
            try:
                return await handler(request)
            finally:
                connection.busy -= 1

        return busy_while_served

    def quiet_accept_errors(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Rate-limit the loop's 'out of descriptors' accept errors; returns the undo."""
        previous = loop.get_exception_handler()

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if str(context.get("message", "")).startswith(_ACCEPT_ERROR):
                skipped = self._logs.allow("accept")
                if skipped is not None:
                    logger.error(
                        "cannot accept connections: %s (%d more since the last report); raise the descriptor limit "
                        "(ulimit -n) or lower max_connections (now %d)",
                        context.get("exception"),
                        skipped,
                        self.limits.max_connections,
                    )
                return
            if _late_accept_retry(context):
                # asyncio retries accept() 1 s after EMFILE; a site stopped meanwhile leaves that retry a
                # closed socket (fd -1). Nothing is lost: the server is gone on purpose.
                logger.debug("accept retry after the site stopped: %s", context.get("exception"))
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handle)

        def restore() -> None:
            if loop.get_exception_handler() is handle:
                loop.set_exception_handler(previous)

        def undo() -> None:
            # After asyncio's pending accept retry (ACCEPT_RETRY_DELAY, 1 s) could have fired.
            loop.call_later(_ACCEPT_RETRY_SECONDS + 0.5, restore)

        return undo


def _late_accept_retry(context: dict[str, Any]) -> bool:
    exception = context.get("exception")
    return isinstance(exception, ValueError) and "_start_serving" in str(context.get("message", ""))


class GatedSite(web.BaseSite):
    """A TCP site whose connections pass through a ConnectionGate."""

    def __init__(self, runner: web.AppRunner, gate: ConnectionGate, host: str, port: int, backlog: int) -> None:
        super().__init__(runner, backlog=backlog)
        self.gate = gate
        self.host = host
        self.port = port

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.gate, self.host, self.port, backlog=self._backlog, reuse_address=True
        )
