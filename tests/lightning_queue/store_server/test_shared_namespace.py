"""Several `lq store-server` processes over one Redis namespace behave as one store."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from lightning_queue import LightningStoreClient
from tests.lightning_queue.store.conftest import make_span
from tests.lightning_queue.store_server import processes

__all__ = ["make_span"]


@pytest.fixture
def servers(redis_url: str) -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    namespace = processes.unique_namespace("shared")
    with processes.running(redis_url, namespace) as a, processes.running(redis_url, namespace) as b:
        yield [a, b]


@pytest.mark.slow
async def test_two_servers_over_one_namespace_are_one_store(servers, make_span) -> None:
    (proc_a, url_a), (proc_b, url_b) = servers
    assert processes.health(url_a)["pid"] == proc_a.pid and processes.health(url_b)["pid"] == proc_b.pid
    a = LightningStoreClient(url_a, connect_retries=())
    b = LightningStoreClient(url_b, connect_retries=())

    async def scenario() -> None:
        queued = await a.enqueue_rollout({"q": 1})
        claimed = await b.dequeue_rollout(worker_id="w-b")
        assert claimed is not None and claimed.rollout_id == queued.rollout_id
        assert await a.dequeue_rollout(worker_id="w-a") is None, "a claimed rollout left the queue for all"
        attempt_id = claimed.attempt.attempt_id
        await a.add_span(make_span(queued.rollout_id, attempt_id, name="via-a"))
        spans = await b.query_spans(queued.rollout_id)
        assert [s.name for s in spans] == ["via-a"]
        waiting = asyncio.create_task(b.wait_for_rollouts(rollout_ids=[queued.rollout_id], timeout=20))
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the wait on B returned before the rollout finished"
        await a.update_attempt(queued.rollout_id, attempt_id, status="succeeded")
        done = await waiting
        assert [r.rollout_id for r in done] == [queued.rollout_id] and done[0].status == "succeeded"

    try:
        await asyncio.wait_for(scenario(), timeout=30)
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.slow
def test_every_worker_process_answers(redis_url: str) -> None:
    with processes.running(redis_url, processes.unique_namespace("workers"), workers=2) as (proc, url):
        pids: set[object] = set()
        deadline = time.monotonic() + 15
        with ThreadPoolExecutor(8) as pool:
            while len(pids) < 2 and time.monotonic() < deadline:
                pids |= {body["pid"] for body in pool.map(processes.health, [url] * 32)}
        assert len(pids) == 2 and proc.pid not in pids, f"answering processes: {pids}"
