"""A Redis that may evict keys is refused before the store writes anything; `lq status` shows memory."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lightning_queue import RedisLightningStore
from lightning_queue.cli import main
from lightning_queue.store import EvictingRedisError
from tests.support.redis_servers import REDIS_SERVER, RedisServerProcess

ServerFactory = Callable[..., RedisServerProcess]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[ServerFactory]:
    """redis-servers of this test's own, started with extra arguments, stopped at teardown."""
    if REDIS_SERVER is None:
        pytest.skip("no redis-server binary on PATH")
    started: list[RedisServerProcess] = []

    def factory(*extra_args: str) -> RedisServerProcess:
        server = RedisServerProcess(tmp_path / f"redis{len(started)}", *extra_args)
        started.append(server)
        server.start()
        return server

    yield factory
    for server in started:
        server.stop()


async def _keys(store: RedisLightningStore) -> list[Any]:
    return [k async for k in store._redis.scan_iter(match=f"lq:{{{store.namespace}}}:*")]


WRITES: dict[str, Callable[[RedisLightningStore], Any]] = {
    "enqueue_rollout": lambda s: s.enqueue_rollout({"task": 1}),
    "start_rollout": lambda s: s.start_rollout({"task": 1}),
    "update_worker": lambda s: s.update_worker("w-1", heartbeat_stats={}),
    "claim": lambda s: s.claim(consumer="w-1", block_ms=1),
    "statistics": lambda s: s.statistics(),
    "query_rollouts": lambda s: s.query_rollouts(),
}


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu", "allkeys-random"])
@pytest.mark.parametrize("call", WRITES)
async def test_a_store_on_an_evicting_redis_refuses_naming_the_policy_and_the_fix(
    own_redis: ServerFactory, policy: str, call: str
) -> None:
    server = own_redis("--maxmemory", "64mb", "--maxmemory-policy", policy)
    store = RedisLightningStore(server.url, namespace="evict")
    try:
        with pytest.raises(EvictingRedisError, match=f"maxmemory-policy {policy}") as raised:
            await WRITES[call](store)

        assert "CONFIG SET maxmemory-policy noeviction" in str(raised.value)
        assert await _keys(store) == []
    finally:
        await store.aclose()


@pytest.mark.parametrize("policy", ["noeviction", "volatile-lru", "volatile-ttl"])
async def test_a_store_works_on_a_redis_that_never_evicts_its_keys(own_redis: ServerFactory, policy: str) -> None:
    # volatile-* evict only keys with a TTL, and no record of the store has one.
    server = own_redis("--maxmemory", "64mb", "--maxmemory-policy", policy)
    store = RedisLightningStore(server.url, namespace="keep")
    try:
        rollout = await store.enqueue_rollout({"task": 1})

        assert (await store.get_rollout_by_id(rollout.rollout_id)) == rollout
        assert (await store.memory()).policy == policy
    finally:
        await store.aclose()


async def test_a_redis_that_refuses_config_is_still_checked_through_info(own_redis: ServerFactory) -> None:
    # Managed Redis often disables CONFIG; INFO memory still names the policy.
    server = own_redis("--maxmemory-policy", "allkeys-lru", "--rename-command", "CONFIG", "")
    store = RedisLightningStore(server.url, namespace="managed")
    try:
        with pytest.raises(EvictingRedisError, match="allkeys-lru"):
            await store.enqueue_rollout({"task": 1})
    finally:
        await store.aclose()


async def test_a_redis_that_refuses_config_and_info_still_works(make_store: Callable[..., RedisLightningStore]) -> None:
    # fakeredis answers neither CONFIG nor INFO, like the strictest managed Redis; the real one says noeviction.
    store = make_store()

    rollout = await store.enqueue_rollout({"task": 1})

    assert await store.get_rollout_by_id(rollout.rollout_id) == rollout
    assert (await store.memory()).policy in (None, "noeviction")


async def test_the_policy_is_checked_again_by_a_new_store(own_redis: ServerFactory) -> None:
    server = own_redis("--maxmemory-policy", "noeviction")
    store = RedisLightningStore(server.url, namespace="later")
    try:
        await store.enqueue_rollout({"task": 1})
        await store._redis.config_set("maxmemory-policy", "allkeys-lru")
        fresh = RedisLightningStore(server.url, namespace="later")
        with pytest.raises(EvictingRedisError, match="allkeys-lru"):
            await fresh.statistics()
        await fresh.aclose()
    finally:
        await store.aclose()


def test_lq_status_shows_memory_use_and_the_policy(own_redis: ServerFactory) -> None:
    server = own_redis("--maxmemory", "64mb", "--maxmemory-policy", "noeviction")
    args = ["status", "--redis-url", server.url, "--namespace", f"st-{uuid.uuid4().hex[:8]}"]

    text = CliRunner().invoke(main, args)
    report = CliRunner().invoke(main, [*args, "--json"])

    assert text.exit_code == 0, text.output
    assert "maxmemory 64.0 MiB, maxmemory-policy noeviction" in text.output
    assert '"maxmemory_policy": "noeviction"' in report.output


def test_lq_status_refuses_an_evicting_redis_naming_the_fix(own_redis: ServerFactory) -> None:
    server = own_redis("--maxmemory-policy", "allkeys-lru")

    result = CliRunner().invoke(main, ["status", "--redis-url", server.url])

    assert result.exit_code == 1
    assert "maxmemory-policy allkeys-lru" in result.output
    assert "CONFIG SET maxmemory-policy noeviction" in result.output


def test_lq_worker_refuses_an_evicting_redis_before_any_process_starts(
    own_redis: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = own_redis("--maxmemory-policy", "allkeys-lfu")

    def no_spawning(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a worker process was started")

    monkeypatch.setattr("workers.pool.subprocess.Popen", no_spawning)
    args = ["worker", "--agent", "workers.examples:echo", "--redis-url", server.url]

    result = CliRunner().invoke(main, args)

    assert result.exit_code == 1, result.output
    assert "maxmemory-policy allkeys-lfu" in result.output and "noeviction" in result.output
