"""Redis commands a worker issues per no-op rollout, counted with `INFO commandstats` on a redis-server of its own.

A count, not a timing: it catches a per-rollout round trip or script call coming back (a resources read per
rollout, a sequence-id reservation, a separate lease check or span write, a "keep busy" call after every end,
ends no longer sent together).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from bench.noop_agent import noop
from lightning_queue import RedisLightningStore
from lightning_queue.types import EnqueueRolloutRequest
from tests.support.redis_servers import RedisServerProcess
from tests.support.round_trips import RoundTrips
from workers import Worker

ROLLOUTS = 200


async def _calls(client: aioredis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def test_a_noop_rollout_costs_a_bounded_number_of_redis_commands(
    spare_redis: RedisServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = f"cmds-{uuid.uuid4().hex[:8]}"
    algorithm = RedisLightningStore(spare_redis.url, namespace=namespace)
    store = RedisLightningStore(spare_redis.url, namespace=namespace, lease_seconds=30, scan_debounce_seconds=5)
    client = aioredis.Redis.from_url(spare_redis.url)
    try:
        await algorithm.enqueue_many_rollouts([EnqueueRolloutRequest(input={"i": i}) for i in range(ROLLOUTS)])
        # Long periods: in a run of seconds, telemetry and lease renewals are a handful of commands, not per rollout.
        worker = Worker(noop, store, concurrency=8, max_rollouts=ROLLOUTS, heartbeat_seconds=10, claim_block_ms=100)
        before = await _calls(client)
        trips = RoundTrips(monkeypatch)
        totals = await worker.run()
        sends = trips.count
        monkeypatch.undo()
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
    # Per rollout one finish script (lease check, spans, end); per claim call the claim script. "Still busy"
    # updates come only when the rollout the store shows the worker busy with ends while others still run.
    assert calls["evalsha"] <= ROLLOUTS + 2 * claims + 10, calls
    # Sequence ids are assigned inside the finish script: one INCRBY there per rollout, no INCR or MULTI.
    assert calls.get("incrby", 0) <= ROLLOUTS and calls.get("incr", 0) == 0, calls
    assert calls.get("multi", 0) <= 5, calls
    # The resources (none here: the latest is looked up) are read once per claim call, not per rollout.
    assert calls.get("zrevrange", 0) <= claims, calls
    # The claim, the finish's lease check and its spans' renewal each XCLAIM once; renewals add a few.
    assert calls["xclaim"] <= 3 * ROLLOUTS + 10, calls
    # 85 with a call per step, 71 with the lease check beside the sequence ids, 62 with the finish script
    # (which skips the move to running its end overrides).
    assert per_rollout <= 66, (per_rollout, calls)
    # Round trips per rollout: ~4 with the lease check beside the sequence ids (795 sends for 200 rollouts),
    # ~0.5 (101) with one finish script per rollout, the ends of rollouts claimed together sent as one
    # pipeline and no resources read per claim.
    # Unbatched ends would make it 1 or more.
    assert sends <= 0.9 * ROLLOUTS, (sends, calls)
