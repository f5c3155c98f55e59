"""Statistics, capabilities and the environment the store lives in: clocks, threads, event loops."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.types import PromptTemplate, Span

SpanFactory = Callable[..., Span]


async def test_statistics_count_every_kind_of_record(store: RedisLightningStore, make_span: SpanFactory) -> None:
    first = await store.start_rollout("one")
    await store.start_attempt(first.rollout_id)
    await store.enqueue_rollout("two")
    await store.add_span(make_span(first.rollout_id, first.attempt.attempt_id, 1))
    await store.add_span(make_span(first.rollout_id, first.attempt.attempt_id, 2))
    await store.add_resources({"prompt": PromptTemplate(template="x")})
    await store.update_worker("worker-1", heartbeat_stats={})

    stats = await store.statistics()

    assert {name: stats[name] for name in stats if name.startswith("total_")} == {
        "total_rollouts": 2,
        "total_attempts": 2,
        "total_spans": 2,
        "total_resources": 1,
        "total_workers": 1,
    }


async def test_statistics_of_an_empty_store_are_zero(store: RedisLightningStore) -> None:
    stats = await store.statistics()

    for name in ["total_rollouts", "total_attempts", "total_spans", "total_resources", "total_workers"]:
        assert stats[name] == 0


async def test_statistics_name_the_store_class(store: RedisLightningStore) -> None:
    name = (await store.statistics())["name"]
    assert name == type(store).__name__
    assert name in ("RedisLightningStore", "InMemoryLightningStore")


async def test_statistics_uptime_strictly_increases(store: RedisLightningStore) -> None:
    first = (await store.statistics())["uptime"]
    await asyncio.sleep(0.01)

    second = (await store.statistics())["uptime"]

    assert first >= 0
    assert second > first


async def test_store_is_thread_and_async_safe(store: RedisLightningStore) -> None:
    assert store.capabilities["thread_safe"] is True
    assert store.capabilities["async_safe"] is True


async def test_store_works_from_another_event_loop_in_another_thread(store: RedisLightningStore) -> None:
    from_main = await store.enqueue_rollout("from the main loop")
    outcome: dict[str, Any] = {}

    async def in_thread() -> None:
        seen = await store.get_rollout_by_id(from_main.rollout_id)
        created = await store.enqueue_rollout("from the thread loop")
        claimed = await store.dequeue_rollout(worker_id="thread-worker")
        outcome.update(seen=seen, created=created, claimed=claimed)

    def run_thread() -> None:
        try:
            asyncio.run(in_thread())
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run_thread, name="second-loop")
    thread.start()
    # Keep using the store from this loop while the other one runs.
    while thread.is_alive():
        assert await store.get_rollout_by_id(from_main.rollout_id) is not None
        await asyncio.sleep(0.005)

    assert "error" not in outcome, outcome.get("error")
    assert outcome["seen"].rollout_id == from_main.rollout_id
    assert outcome["claimed"].rollout_id == from_main.rollout_id
    created = await store.get_rollout_by_id(outcome["created"].rollout_id)
    assert created is not None and created.status == "queuing"
    claimed = await store.get_rollout_by_id(from_main.rollout_id)
    assert claimed.status == "preparing" and claimed.attempt.worker_id == "thread-worker"


@pytest.mark.parametrize("source", ["span", "worker heartbeat"])
async def test_heartbeat_times_come_from_time_time(
    store: RedisLightningStore, make_span: SpanFactory, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    started = await store.start_rollout("task")
    frozen = time.time() + 12345.5
    monkeypatch.setattr(time, "time", lambda: frozen)

    if source == "span":
        await store.add_span(make_span(started.rollout_id, started.attempt.attempt_id))
        heartbeat = (await store.get_latest_attempt(started.rollout_id)).last_heartbeat_time
    else:
        heartbeat = (await store.update_worker("worker-1", heartbeat_stats={})).last_heartbeat_time

    assert heartbeat == frozen
