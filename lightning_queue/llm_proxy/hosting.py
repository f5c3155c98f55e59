"""Where the proxy's server runs: in the caller's event loop, or in a thread with a loop of its own.

A thread keeps the proxy answering while the caller's loop is busy (a training step, blocking code).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

from ..store.redis import RedisLightningStore
from .app import build_app
from .connections import ConnectionGate, GatedSite
from .registry import ProxyRegistry
from .state import ProxyState

T = TypeVar("T")
# Spare connection slots for bursts of concurrent agents before the kernel refuses new ones.
_BACKLOG = 2048
# In-flight calls get this long to finish when the proxy stops; longer ones are cut.
_SHUTDOWN_SECONDS = 5.0


class ServerRunner:
    """Serve one ProxyState on host:port in the running loop, with its upstream client."""

    def __init__(self, state: ProxyState, host: str, port: int) -> None:
        self.state = state
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._undo_quiet_accepts: Callable[[], None] | None = None

    def _registry(self) -> ProxyRegistry | None:
        store = self.state.store
        if not isinstance(store, RedisLightningStore):
            return None  # other stores cannot hold the status; drain() still works in-process
        return ProxyRegistry(store, f"http://{self.host}:{self.port}", self.state.barrier.view.interval)

    async def setup(self) -> int:
        await self.state.upstream.start()
        registry = self._registry()
        # The pause is read before the first call is accepted: a proxy started during a sync refuses calls.
        await self.state.barrier.start(registry)
        gate = ConnectionGate(self.state.limits)
        self.state.gate = gate
        runner = web.AppRunner(
            build_app(self.state, gate),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=_SHUTDOWN_SECONDS,
            # aiohttp closes a connection idle this long between requests (and before the first one).
            keepalive_timeout=self.state.limits.idle_timeout,
        )
        await runner.setup()
        gate.server = runner.server
        try:
            site = GatedSite(runner, gate, self.host, self.port, backlog=_BACKLOG)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self.state.barrier.stop()
            await self.state.upstream.close()
            raise
        self._undo_quiet_accepts = gate.quiet_accept_errors(asyncio.get_running_loop())
        self._runner = runner
        port = int(runner.addresses[0][1])
        await self.state.barrier.announce(f"http://{self.host}:{port}")
        return port

    async def cleanup(self) -> None:
        if self._undo_quiet_accepts is not None:
            self._undo_quiet_accepts()
            self._undo_quiet_accepts = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.state.barrier.stop()
        await self.state.upstream.close()


class LoopHost:
    """Runs the server in the loop that calls start(); stop() must come from that loop too."""

    def __init__(self, runner: ServerRunner) -> None:
        self.runner = runner
        self.running = False

    async def start(self) -> int:
        port = await self.runner.setup()
        self.running = True
        return port

    async def stop(self) -> None:
        self.running = False
        await self.runner.cleanup()

    async def run(self, work: Awaitable[T]) -> T:
        """Run `work` in the server's loop (this one)."""
        return await work


class ThreadHost:
    """Runs the server in a daemon thread with its own event loop."""

    def __init__(self, runner: ServerRunner, on_loop_exit: Callable[[], Awaitable[None]] | None = None) -> None:
        self.runner = runner
        self.on_loop_exit = on_loop_exit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _main(self, loop: asyncio.AbstractEventLoop, ready: concurrent.futures.Future[int]) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                port = loop.run_until_complete(self.runner.setup())
            except BaseException as exc:
                ready.set_exception(exc)
                return
            ready.set_result(port)
            loop.run_forever()
            loop.run_until_complete(self.runner.cleanup())
            if self.on_loop_exit is not None:
                # Clients bound to this loop (e.g. the store's Redis client) must close with it.
                loop.run_until_complete(self.on_loop_exit())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    async def start(self) -> int:
        loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        thread = threading.Thread(target=self._main, args=(loop, ready), name="lq-llm-proxy", daemon=True)
        thread.start()
        try:
            port = await asyncio.wrap_future(ready)
        except BaseException:
            await asyncio.to_thread(thread.join)
            raise
        self._loop, self._thread = loop, thread
        return port

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` in the server's loop and await it from the caller's."""
        if self._loop is None:
            work.close()
            raise RuntimeError("the proxy's server thread is not running")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop = self._thread = None
