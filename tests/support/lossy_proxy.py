"""A loopback TCP proxy in front of a Redis that can lose the reply to one command.

It forwards bytes both ways; once armed with a marker, the first command carrying it reaches Redis and
runs, and then its connection is cut before the reply gets back, as when Redis crashes (or the network
drops) right after running a command. The client sees a dropped connection and, like redis-py, resends.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class LossyProxy:
    """`await start()`, point a client at `url`, `drop_reply_to(marker)`; `dropped` counts lost replies."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.db = parts.path or "/0"
        self.dropped = 0
        self._marker: bytes | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}{self.db}"

    def drop_reply_to(self, marker: bytes) -> None:
        """Lose the reply to the next command whose bytes contain `marker` (once)."""
        self._marker = marker

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            self._tasks.discard(task)
            return
        cut = asyncio.Event()  # set: the reply now on its way is the one to lose
        try:
            await asyncio.gather(self._requests(client_r, server_w, cut), self._replies(server_r, client_w, cut))
        finally:
            for writer in (client_w, server_w):
                writer.transport.abort()
            self._tasks.discard(task)

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut: asyncio.Event) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if self._marker is not None and self._marker in data:
                    self._marker = None
                    cut.set()  # before forwarding, so the reply cannot slip through first
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    async def _replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut: asyncio.Event) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if cut.is_set():
                    self.dropped += 1
                    break
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
