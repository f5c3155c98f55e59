"""`lq metrics`: store gauges read on scrape match what the namespace holds."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from click.testing import CliRunner

from lightning_queue import RedisLightningStore
from lightning_queue.cli import main
from lightning_queue.store.metrics import metrics_app
from tests.support.metrics import scrape, value


@pytest.fixture
async def metrics_url(store: RedisLightningStore) -> AsyncIterator[str]:
    runner = web.AppRunner(metrics_app(store))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/metrics"
    await runner.cleanup()


async def test_gauges_match_the_queued_and_running_rollouts(store: RedisLightningStore, metrics_url: str) -> None:
    for i in range(3):
        await store.enqueue_rollout(input={"i": i})
    await store.start_rollout(input={"direct": True})
    await store.update_worker("w-1", {"host": "here"})

    samples = await scrape(metrics_url)

    assert value(samples, "lq_queue_depth") == 3
    assert value(samples, "lq_store_rollouts", status="queuing") == 3
    assert value(samples, "lq_store_rollouts", status="preparing") == 1
    assert value(samples, "lq_store_rollouts", status="succeeded") == 0
    assert value(samples, "lq_queue_oldest_age_seconds") >= 0
    assert value(samples, "lq_store_retries") == 0
    assert sum(v for (n, _), v in samples.items() if n == "lq_store_workers") == 1
    if (await store.memory()).used_bytes is not None:
        assert value(samples, "lq_redis_used_memory_bytes") > 0

    [claimed] = await store.dequeue_many_rollouts(limit=1)
    assert claimed is not None
    samples = await scrape(metrics_url)
    assert value(samples, "lq_queue_depth") == 2


def test_lq_metrics_refuses_a_port_in_use_naming_it(redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main, ["metrics", "--redis-url", redis_url, "--namespace", f"m-{uuid.uuid4().hex[:8]}", "--port", str(port)]
        )
    assert result.exit_code == 1
    assert f"metrics port {port} on 127.0.0.1 is already in use" in result.output
