"""ServerThread: a ModelServer on its own event loop in a daemon thread, for tests and synchronous code."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from .server import ModelServer


class ServerThread:
    """Run `server` until `stop()`; usable as a context manager that yields the base URL.

    with ServerThread(ModelServer(load_default_model())) as url:
        openai.OpenAI(base_url=url, api_key="unused")
    """

    def __init__(self, server: ModelServer, *, start_timeout: float = 300.0) -> None:
        self.server = server
        # The first start may convert the default model's GGUF, which takes about 20 s.
        self._start_timeout = start_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> str:
        if self._thread is not None:
            raise RuntimeError(f"ServerThread is already running {self.server.url}")
        started: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(started,), name="lq-model-server", daemon=True)
        self._thread.start()
        try:
            started.result(timeout=self._start_timeout)
        except BaseException:
            self._thread.join(timeout=5)
            self._thread = None
            raise
        return self.server.url

    def stop(self) -> None:
        thread, loop, stop_requested = self._thread, self._loop, self._stop_requested
        if thread is None or loop is None or stop_requested is None:
            return
        loop.call_soon_threadsafe(stop_requested.set)
        thread.join()
        self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, started: Future[None]) -> None:
        asyncio.run(self._serve(started))

    async def _serve(self, started: Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as error:
            # Hand the failure to the thread waiting in start(), which raises it there.
            started.set_exception(error)
            await self.server.stop()
            return
        started.set_result(None)
        try:
            await self._stop_requested.wait()
        finally:
            await self.server.stop()
