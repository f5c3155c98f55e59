"""Running `lq store-server`: one process, or N forked processes accepting on one pre-bound socket.

The parent binds the port before forking, so every child accepts on the same listening socket and the
kernel spreads connections; no child holds state of its own (the store is in Redis), so any of them
can answer any request. The parent only supervises: it restarts a child that dies and stops them all
on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from types import FrameType

from aiohttp import web

from ..store import RedisLightningStore
from ..store.settings import RedisSettings
from .app import create_app
from .settings import StoreServerSettings

logger = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"lq store-server cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def make_store(redis: RedisSettings, *, shared: bool) -> RedisLightningStore:
    # Several processes must meet in one Redis: never each in an embedded server of its own.
    url = redis.url if redis.url or not shared else redis.shared_url()
    return RedisLightningStore(url, namespace=redis.namespace)


async def _app(settings: StoreServerSettings, redis: RedisSettings) -> web.Application:
    store = make_store(redis, shared=settings.workers > 1)
    app = create_app(store, settings)

    async def close_store(_: web.Application) -> AsyncIterator[None]:
        yield
        await store.aclose()

    app.cleanup_ctx.append(close_store)
    return app


def serve_socket(sock: socket.socket, settings: StoreServerSettings, redis: RedisSettings) -> None:
    """Serve on `sock` in this process until SIGINT/SIGTERM."""
    web.run_app(_app(settings, redis), sock=sock, print=None, access_log=None, handle_signals=True)


def _spawn(sock: socket.socket, settings: StoreServerSettings, redis: RedisSettings) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            serve_socket(sock, settings, redis)
        except BaseException:
            logger.exception("store-server process %d failed", os.getpid())
            code = 1
        finally:
            os._exit(code)
    return pid


def run(settings: StoreServerSettings, redis: RedisSettings) -> None:
    """Bind, then serve in this process (`workers == 1`) or supervise `workers` forked processes."""
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    where = f"{redis.url or 'the default Redis'} namespace {redis.namespace!r}"
    print(f"lq store-server: http://{host}:{port} ({settings.workers} process(es)) over {where}", file=sys.stderr)
    if settings.workers == 1:
        serve_socket(sock, settings, redis)
        return
    children = {_spawn(sock, settings, redis) for _ in range(settings.workers)}
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        children.discard(pid)
        if not stopping:
            logger.warning("store-server process %d exited (status %d); starting another", pid, status)
            time.sleep(0.5)  # a child that cannot start must not spin the parent
            children.add(_spawn(sock, settings, redis))
    sock.close()
