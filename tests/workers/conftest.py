"""Fixtures of the worker tests: a namespace of their own, an observer store and real `lq worker` pools.

Every pool is a real supervisor process with real worker processes on the session's redis-server.
Teardown SIGKILLs every process a test started (workers run in their own sessions, so each is
killed by pid, found through psutil while its supervisor is still alive).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from lightning_queue import RedisLightningStore
from tests.support.pools import PoolFactory, pool_starter
from tests.support.redis_servers import RedisServerProcess


@pytest.fixture
def namespace() -> str:
    return f"w-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def observer(redis_url: str, namespace: str) -> AsyncIterator[RedisLightningStore]:
    """The test's view of the namespace. It never reclaims leases (lease_seconds=None) and, after one
    lock-free sweep now, never sweeps again (a huge debounce): what tests see is the workers' doing."""
    store = RedisLightningStore(redis_url, namespace=namespace, lease_seconds=None, scan_debounce_seconds=3600)
    await store.sweep(force=True)
    yield store
    await store.purge()
    await store.aclose()


@pytest.fixture
def start_pool(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[PoolFactory]:
    """Start `lq worker` pools on this test's namespace; all their processes die at teardown."""
    with pool_starter(namespace, tmp_path) as start:
        yield functools.partial(start, redis_url)


@pytest.fixture
def spare_redis(redis_server: RedisServerProcess, tmp_path: Path) -> Iterator[RedisServerProcess]:
    """A redis-server of this test alone (one it may stop and restart); skipped, like the session's, without
    a redis-server binary."""
    server = RedisServerProcess(tmp_path / "spare-redis")
    server.start()
    yield server
    server.stop()
