"""Fixtures of the worker tests: a namespace of their own, an observer store and real `lq worker` pools.

Every pool is a real supervisor process with real worker processes on the session's redis-server.
Teardown SIGKILLs every process a test started (workers run in their own sessions, so each is
killed by pid, found through psutil while its supervisor is still alive).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# pytest puts `tests/` on sys.path, where this directory passes for a namespace package named
# `workers` that hides the real one; the repository root must come first (`python -m pytest` does it).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lq_test_support import Pool

from lightning_queue import RedisLightningStore

AGENTS_DIR = Path(__file__).parent


PoolFactory = Callable[..., Pool]


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
    pools: list[Pool] = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(AGENTS_DIR), *filter(None, [env.get("PYTHONPATH")])])
    for name in ("LQ_REDIS_URL", "REDIS_URL", "LQ_NAMESPACE"):
        env.pop(name, None)

    def factory(
        agent: str = "lq_test_agents:scripted",
        *,
        processes: int = 1,
        concurrency: int = 1,
        lease: float = 1.0,
        grace: float = 5.0,
        heartbeat: float = 0.5,
        extra: tuple[str, ...] = (),
    ) -> Pool:
        args = [
            "--agent", agent,
            "-n", str(processes),
            "--concurrency", str(concurrency),
            "--redis-url", redis_url,
            "--namespace", namespace,
            "--lease-seconds", str(lease),
            "--grace-seconds", str(grace),
            "--heartbeat-seconds", str(heartbeat),
            *extra,
        ]  # fmt: skip
        pool = Pool(args, tmp_path / f"pool{len(pools)}.log", env)
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        pool.kill()


@pytest.fixture
def spare_redis(redis_server: Any, tmp_path: Path) -> Iterator[Any]:
    """A redis-server of this test alone (one it may stop and restart), of the session server's class."""
    server = type(redis_server)(tmp_path / "spare-redis")
    server.start()
    yield server
    server.stop()
