"""Redis commands a worker issues per no-op rollout, counted with `INFO commandstats` on a redis-server of its own.

A count, not a timing: it catches a per-rollout round trip or script call coming back (a resources read per
rollout, a MULTI/INCR reservation, a separate lease check, a "keep busy" call after every end).
"""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio as aioredis

from bench.noop_agent import noop
from lightning_queue import RedisLightningStore
from lightning_queue.types import EnqueueRolloutRequest
from tests.support.redis_servers import RedisServerProcess
from workers import Worker

ROLLOUTS = 200


async def _calls(client: aioredis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def test_a_noop_rollout_costs_a_bounded_number_of_redis_commands(spare_redis: RedisServerProcess) -> None:
    namespace = f"cmds-{uuid.uuid4().hex[:8]}"
    algorithm = RedisLightningStore(spare_redis.url, namespace=namespace)
    store = RedisLightningStore(spare_redis.url, namespace=namespace, lease_seconds=30, scan_debounce_seconds=5)
    client = aioredis.Redis.from_url(spare_redis.url)
    try:
        await algorithm.enqueue_many_rollouts([EnqueueRolloutRequest(input={"i": i}) for i in range(ROLLOUTS)])
        # Long periods: in a run of seconds, telemetry and lease renewals are a handful of commands, not per rollout.
        worker = Worker(noop, store, concurrency=8, max_rollouts=ROLLOUTS, heartbeat_seconds=10, claim_block_ms=100)
        before = await _calls(client)
        totals = await worker.run()
        after = await _calls(client)
        stats = await algorithm.statistics()
    finally:
        await client.aclose()
        await store.aclose()
        await algorithm.purge()
        await algorithm.aclose()

    assert totals.succeeded == ROLLOUTS
    assert stats["total_spans"] == 3 * ROLLOUTS
    calls = {name: after[name] - before.get(name, 0) for name in after if after[name] > before.get(name, 0)}
    claims = calls["xreadgroup"]
    per_rollout = sum(calls.values()) / ROLLOUTS
    # Per rollout: add_spans and the end, one EVALSHA each; per claim call the claim script. "Still busy"
    # updates come only when the rollout the store shows the worker busy with ends before the others (a
    # few per claim call, 0.15-0.3 per rollout), not after every end (0.9 per rollout when they did).
    assert calls["evalsha"] <= 2 * ROLLOUTS + claims + ROLLOUTS // 2, calls
    # Sequence ids: one INCRBY per rollout, in the lease check's round trip; no MULTI/INCR per rollout.
    assert calls.get("incrby", 0) <= ROLLOUTS, calls
    assert calls.get("incr", 0) == 0, calls
    assert calls.get("multi", 0) <= 5, calls
    # The resources (none here: the latest is looked up) are read once per claim call, not per rollout.
    assert calls.get("zrevrange", 0) <= claims, calls
    # The claim, add_spans and the lease check each XCLAIM once; renewals every 10 s add a few.
    assert calls["xclaim"] <= 3 * ROLLOUTS + 10, calls
    # 85 before the worker runtime's round trips were cut, 71 after.
    assert per_rollout <= 78, (per_rollout, calls)
