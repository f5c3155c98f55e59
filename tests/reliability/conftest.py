"""Fixtures of the reliability suite: redis-servers a test may crash, real `lq worker` pools on any URL,
and an observer store.

Every process a test starts is stopped by pid at teardown (SIGKILL where SIGTERM is not enough).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from lightning_queue import RedisLightningStore
from tests.support.pools import PoolFactory, pool_starter
from tests.support.redis_servers import REDIS_SERVER, RedisServerProcess, ServerFactory
from tests.support.stores import ObserverFactory


@pytest.fixture
def namespace() -> str:
    return f"rel-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start redis-servers of this test's own (`factory(*extra_args)`, or `start=False` to start one later);
    all are stopped at teardown."""
    if REDIS_SERVER is None:
        pytest.skip("no redis-server binary on PATH")
    started: list[RedisServerProcess] = []

    def factory(*extra_args: str, start: bool = True) -> RedisServerProcess:
        server = RedisServerProcess(tmp_path / f"redis{len(started)}", *extra_args)
        started.append(server)
        if start:
            server.start()
        return server

    yield factory
    for server in started:
        server.stop()  # SIGTERM by pid, SIGKILL after 10 s


@pytest.fixture
async def observer_of(namespace: str) -> AsyncIterator[ObserverFactory]:
    """The test's view of the namespace on a URL: it never reclaims leases and sweeps only once, so what
    the test sees is the workers' doing."""
    made: list[RedisLightningStore] = []

    async def factory(url: str) -> RedisLightningStore:
        store = RedisLightningStore(url, namespace=namespace, lease_seconds=None, scan_debounce_seconds=3600)
        made.append(store)
        await store.sweep(force=True)
        return store

    yield factory
    for store in made:
        try:
            await store.purge()
        except Exception:  # the test may have left its server stopped
            pass
        await store.aclose()


@pytest.fixture
async def observer(redis_url: str, observer_of: ObserverFactory) -> RedisLightningStore:
    return await observer_of(redis_url)


@pytest.fixture
def start_pool(namespace: str, tmp_path: Path) -> Iterator[PoolFactory]:
    """Start `lq worker` pools on this test's namespace at any URL; all their processes die at teardown."""
    with pool_starter(namespace, tmp_path) as start:
        yield start
