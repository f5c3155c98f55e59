"""Fixtures of the reliability suite: redis-servers a test may crash, real `lq worker` pools on any URL,
and an observer store.

Every process a test starts is stopped by pid at teardown (SIGKILL where SIGTERM is not enough).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# The worker suite's helpers (Pool, eventually) and agents (lq_test_agents) are reused, not copied; the
# repository root comes first so `workers` is the package, not the test folder of that name.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workers"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lq_reliability_support import ObserverFactory, PoolFactory, ServerFactory
from lq_test_support import Pool

from lightning_queue import RedisLightningStore
from tests.conftest import REDIS_SERVER, RedisServerProcess

HERE = Path(__file__).resolve().parent
WORKER_TESTS = HERE.parent / "workers"


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
    pools: list[Pool] = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(WORKER_TESTS), *filter(None, [env.get("PYTHONPATH")])])
    for name in ("LQ_REDIS_URL", "REDIS_URL", "LQ_NAMESPACE"):
        env.pop(name, None)

    def factory(
        url: str,
        agent: str = "lq_test_agents:scripted",
        *,
        processes: int = 1,
        concurrency: int = 1,
        lease: float = 1.0,
        grace: float = 5.0,
        heartbeat: float = 0.5,
        extra: tuple[str, ...] = (),
        url_in_env: bool = False,
    ) -> Pool:
        # A URL with a password belongs in the environment, where `ps` does not show it.
        where = [] if url_in_env else ["--redis-url", url]
        args = [
            "--agent", agent,
            "-n", str(processes),
            "--concurrency", str(concurrency),
            *where,
            "--namespace", namespace,
            "--lease-seconds", str(lease),
            "--grace-seconds", str(grace),
            "--heartbeat-seconds", str(heartbeat),
            *extra,
        ]  # fmt: skip
        pool = Pool(args, tmp_path / f"pool{len(pools)}.log", {**env, "LQ_REDIS_URL": url} if url_in_env else env)
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        pool.kill()
