"""Namespaces isolate stores on one Redis; `purge` empties exactly one namespace."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.types import PromptTemplate, Span

StoreFactory = Callable[..., RedisLightningStore]
SpanFactory = Callable[..., Span]


@pytest.fixture
async def neighbour(make_store: StoreFactory) -> AsyncIterator[RedisLightningStore]:
    """A store on the same backend under another namespace (purged here: the factory purges only its own)."""
    other = make_store(namespace=f"n-{uuid.uuid4().hex[:10]}")
    yield other
    await other.purge()


async def fill(store: RedisLightningStore, make_span: SpanFactory) -> str:
    """One record of every kind plus one queued rollout; returns the started rollout's id."""
    started = await store.start_rollout("task", worker_id="worker-1")
    await store.add_span(make_span(started.rollout_id, started.attempt.attempt_id))
    await store.add_resources({"prompt": PromptTemplate(template="x")})
    await store.enqueue_rollout("queued")
    return started.rollout_id


async def test_stores_in_different_namespaces_see_nothing_of_each_other(
    store: RedisLightningStore, neighbour: RedisLightningStore, make_span: SpanFactory
) -> None:
    rollout_id = await fill(store, make_span)

    assert await neighbour.get_rollout_by_id(rollout_id) is None
    assert (await neighbour.query_rollouts()).total == 0
    assert await neighbour.query_spans(rollout_id) == []
    assert await neighbour.get_latest_resources() is None
    assert await neighbour.get_worker_by_id("worker-1") is None
    assert await neighbour.queue_depth() == 0
    assert await neighbour.dequeue_rollout() is None
    assert await store.queue_depth() == 1


async def test_span_counters_are_per_namespace(store: RedisLightningStore, neighbour: RedisLightningStore) -> None:
    here = await store.start_rollout("task")
    there = await neighbour.start_rollout("task")
    await store.get_next_span_sequence_id(here.rollout_id, here.attempt.attempt_id)

    assert await neighbour.get_next_span_sequence_id(there.rollout_id, there.attempt.attempt_id) == 1


async def test_purge_empties_its_own_namespace(store: RedisLightningStore, make_span: SpanFactory) -> None:
    rollout_id = await fill(store, make_span)

    await store.purge()

    assert await store.get_rollout_by_id(rollout_id) is None
    assert await store.queue_depth() == 0
    assert await store.dequeue_rollout() is None
    stats = await store.statistics()
    for name in ["total_rollouts", "total_attempts", "total_spans", "total_resources", "total_workers"]:
        assert stats[name] == 0, name


async def test_store_is_usable_after_purge(store: RedisLightningStore) -> None:
    await store.enqueue_rollout("before")
    await store.purge()

    queued = await store.enqueue_rollout("after")
    claimed = await store.dequeue_rollout()

    assert claimed is not None and claimed.rollout_id == queued.rollout_id


async def test_purge_leaves_other_namespaces_alone(
    store: RedisLightningStore, neighbour: RedisLightningStore, make_span: SpanFactory
) -> None:
    kept = await fill(neighbour, make_span)
    await fill(store, make_span)

    await store.purge()

    assert await neighbour.get_rollout_by_id(kept) is not None
    assert await neighbour.queue_depth() == 1
    assert len(await neighbour.query_spans(kept)) == 1
    assert await neighbour.get_latest_resources() is not None
