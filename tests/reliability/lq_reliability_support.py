"""Helpers of the reliability tests (a module, not conftest, so tests can import them by name)."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable

from lq_test_support import Pool

from lightning_queue import RedisLightningStore
from tests.conftest import RedisServerProcess

PoolFactory = Callable[..., Pool]
ServerFactory = Callable[..., RedisServerProcess]
ObserverFactory = Callable[[str], Awaitable[RedisLightningStore]]


def crash(server: RedisServerProcess) -> None:
    """SIGKILL a redis-server: no shutdown save, no final AOF flush, like a crashed process."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    server.proc = None
