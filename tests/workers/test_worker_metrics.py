"""A worker run in this process records into the default registry: outcomes, claims, agent time, renewals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from lightning_queue import RedisLightningStore
from lightning_queue.litagent import rollout
from lightning_queue.types import AttemptedRollout
from workers import Worker

LEASE = 0.6


def sample(name: str, **labels: str) -> float:
    found = REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


@pytest.fixture
async def wstore(redis_url: str, namespace: str) -> AsyncIterator[RedisLightningStore]:
    store = RedisLightningStore(redis_url, namespace=namespace, lease_seconds=LEASE, scan_debounce_seconds=LEASE / 2)
    yield store
    await store.purge()
    await store.aclose()


@rollout
async def blocks_the_loop(task: dict[str, Any], rollout: AttemptedRollout) -> None:
    time.sleep(float(task["block"]))  # noqa: ASYNC251 (blocking the loop is the point)


async def test_blocking_agent_keeps_its_lease_renewed_and_is_counted(wstore: RedisLightningStore) -> None:
    renewals, succeeded = sample("lq_lease_renewals_total"), sample("lq_rollouts_total", outcome="succeeded")
    claimed, agent_runs = sample("lq_rollouts_claimed_total"), sample("lq_agent_duration_seconds_count")
    worker = Worker(blocks_the_loop, wstore, heartbeat_seconds=0.2, claim_block_ms=100)
    task = asyncio.create_task(worker.run())
    try:
        [queued] = [await wstore.enqueue_rollout(input={"block": 1.2})]
        done = await wstore.wait_for_rollouts(rollout_ids=[queued.rollout_id], timeout=15)
        assert [r.status for r in done] == ["succeeded"]
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 10)

    assert sample("lq_rollouts_total", outcome="succeeded") == succeeded + 1
    assert sample("lq_rollouts_claimed_total") == claimed + 1
    assert sample("lq_agent_duration_seconds_count") == agent_runs + 1
    # A 1.2 s block with a 0.6 s lease: renewed from the lease thread meanwhile.
    assert sample("lq_lease_renewals_total") > renewals
    assert sample("lq_worker_rollouts_in_flight") == 0
