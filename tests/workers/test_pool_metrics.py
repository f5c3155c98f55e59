"""`lq worker --metrics-port`: one endpoint adds up the metrics of all the pool's processes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from typing import Any

from lightning_queue import EnqueueRolloutRequest, RedisLightningStore
from tests.support.metrics import free_port, scrape, value
from tests.support.pools import eventually


async def test_pool_endpoint_counts_the_rollouts_of_all_its_processes(
    start_pool: Any, observer: RedisLightningStore
) -> None:
    port = free_port()
    pool = start_pool(processes=2, concurrency=2, extra=("--metrics-port", str(port)))
    url = f"http://127.0.0.1:{port}/metrics"
    requests = [EnqueueRolloutRequest(input={"sleep": 0.01, "mark": str(i)}) for i in range(6)]
    requests += [EnqueueRolloutRequest(input={"raise": "scripted failure"}) for _ in range(2)]
    ids = [r.rollout_id for r in await observer.enqueue_many_rollouts(requests)]
    done = await observer.wait_for_rollouts(rollout_ids=ids, timeout=30)
    assert sorted(r.status for r in done) == ["failed"] * 2 + ["succeeded"] * 6

    async def all_counted() -> Any:
        samples = await scrape(url)
        ended = sum(value(samples, "lq_rollouts_total", outcome=o) for o in ("succeeded", "failed"))
        return samples if ended == 8 and value(samples, "lq_worker_rollouts_in_flight") == 0 else None

    samples = await eventually(all_counted, 20, "8 finished rollouts on /metrics")
    assert value(samples, "lq_rollouts_total", outcome="succeeded") == 6
    assert value(samples, "lq_rollouts_total", outcome="failed") == 2
    assert value(samples, "lq_rollouts_total", outcome="lost") == 0
    assert value(samples, "lq_rollouts_claimed_total") == 8
    assert value(samples, "lq_agent_duration_seconds_count") == 8
    assert value(samples, "lq_worker_redis_errors_total", operation="claim") == 0
    # Both processes took part, and the sum is what the pool serves.
    assert len(pool.children()) == 2
    # No series is keyed by a rollout id.
    assert not any(rid in str(labels) for rid in ids for (_, labels) in samples)

    directory = re.search(r"\(files in (\S+)\)", pool.log()).group(1)
    assert await asyncio.to_thread(os.path.isdir, directory)
    pool.signal(signal.SIGINT)
    assert await pool.wait(20) == 0
    assert not await asyncio.to_thread(os.path.exists, directory), "the pool removes its multiprocess directory on exit"


async def test_metrics_port_in_use_is_refused_naming_the_port(start_pool: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        pool = start_pool(extra=("--metrics-port", str(port)))
        code = await pool.wait(20)
    assert code == 1
    assert f"metrics port {port} on 127.0.0.1 is already in use" in pool.log()
    assert "worker process #0" not in pool.log(), "no process starts"
