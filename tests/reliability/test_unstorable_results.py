"""An agent's result the store cannot take (a span over the size limit, a Redis out of memory) fails
its attempt with the real error in the attempt's metadata; the worker goes on with the next rollout.

Real `lq worker` processes; the out-of-memory case runs on a redis-server of its own with a small
`maxmemory` under `noeviction`.
"""

from __future__ import annotations

import pytest

from lightning_queue import RedisLightningStore
from tests.support.pools import PoolFactory
from tests.support.redis_servers import ServerFactory
from tests.support.stores import ObserverFactory

AGENT = "tests.support.unstorable_agents:big_result"
NEVER_RETRIEVED = "Task exception was never retrieved"


async def _fails_with(observer: RedisLightningStore, size: int) -> str:
    """Run one rollout whose result is a span of `size` characters; return its attempt's error message."""
    rollout = await observer.enqueue_rollout({"bytes": size})
    [done] = await observer.wait_for_rollouts(rollout_ids=[rollout.rollout_id], timeout=60)
    [attempt] = (await observer.query_attempts(rollout.rollout_id)).items
    assert (done.status, attempt.status) == ("failed", "failed"), (done.status, attempt.status, attempt.metadata)
    assert attempt.metadata is not None and "error" in attempt.metadata, attempt.metadata
    message: str = attempt.metadata["error"]["message"]
    return message


async def _next_rollout_succeeds(observer: RedisLightningStore) -> None:
    small = await observer.enqueue_rollout({"bytes": 10})
    [done] = await observer.wait_for_rollouts(rollout_ids=[small.rollout_id], timeout=60)
    assert done.status == "succeeded"


@pytest.mark.slow
async def test_a_span_over_the_size_limit_fails_the_attempt_saying_so(
    observer: RedisLightningStore, start_pool: PoolFactory, redis_url: str
) -> None:
    pool = start_pool(redis_url, AGENT, lease=1.0)

    message = await _fails_with(observer, 5 << 20)  # the store's default max_span_bytes is 4 MiB

    assert "over the limit of 4194304 bytes" in message, message
    await _next_rollout_succeeds(observer)
    assert NEVER_RETRIEVED not in pool.log()


@pytest.mark.slow
async def test_a_result_redis_has_no_memory_for_fails_the_attempt_with_the_oom_error(
    redis_servers: ServerFactory, observer_of: ObserverFactory, start_pool: PoolFactory
) -> None:
    server = redis_servers("--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
    observer = await observer_of(server.url)
    pool = start_pool(server.url, AGENT, lease=1.0)

    # 2.5 MB of arguments on top of an empty server's ~1 MB: Redis refuses the spans' write (OOM).
    message = await _fails_with(observer, 2_500_000)

    assert "OOM" in message or "maxmemory" in message, message
    await _next_rollout_succeeds(observer)
    assert NEVER_RETRIEVED not in pool.log()
