"""Many concurrent calls on one store and event loop: waiters share one reader, calls queue for connections."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.stores import StoreFactory


@pytest.fixture(autouse=True)
def _url_clients_only(backend: str) -> None:
    # The pool under test is the one the store builds from a URL; the fakeredis test double brings its own.
    if backend in ("fakeredis", "in_memory"):
        pytest.skip("fakeredis clients (the in-memory store's too) come with their own connection pool")


async def test_150_concurrent_waiters_all_return_their_rollout(make_store: StoreFactory) -> None:
    store, finisher = make_store(), make_store()
    started = [await finisher.start_rollout({"i": i}) for i in range(150)]
    waits = [asyncio.create_task(store.wait_for_rollouts(rollout_ids=[r.rollout_id], timeout=30)) for r in started]
    await asyncio.sleep(0.2)
    for rollout in started:
        await finisher.update_attempt(rollout.rollout_id, rollout.attempt.attempt_id, status="succeeded")
    results = await asyncio.wait_for(asyncio.gather(*waits), 30)
    assert [[r.rollout_id for r in result] for result in results] == [[r.rollout_id] for r in started]


async def test_more_concurrent_calls_than_redis_pys_default_pool_holds(make_store: StoreFactory) -> None:
    store = make_store()
    rollout = await store.enqueue_rollout("x")
    # 300 at once: redis-py's default pool would raise MaxConnectionsError past 100.
    found = await asyncio.gather(*(store.get_rollout_by_id(rollout.rollout_id) for _ in range(300)))
    assert all(r is not None and r.rollout_id == rollout.rollout_id for r in found)
