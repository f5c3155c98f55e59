"""A transition resent after its reply was lost does what it did once.

redis-py resends a command whose connection dropped before the reply came (a Redis crash, a network
cut), so every script may run twice with the same arguments. Ids are fresh per call, which is how a
script tells its own second run from new work.
"""

from __future__ import annotations

import asyncio

from lightning_queue import RolloutConfig
from lightning_queue.store import codec
from lightning_queue.store.transitions import StreamEntry
from tests.support.stores import StoreFactory

RETRY_UNRESPONSIVE = RolloutConfig(max_attempts=2, retry_condition=["unresponsive"])


async def test_a_claim_sent_twice_hands_back_the_same_attempt_and_keeps_its_lease(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=0.2)
    rollout = await store.enqueue_rollout("task", config=RETRY_UNRESPONSIVE)
    [[_stream, [(entry, _fields)]]] = await store._redis.xreadgroup("workers", "w1", {store.keys.queue: ">"}, count=1)
    read = StreamEntry(entry_id=entry.decode(), rollout_id=rollout.rollout_id, attempt_id="at-once")
    first = await store.transitions.claim(consumer="w1", worker_id="w1", entries=[read])
    again = await store.transitions.claim(consumer="w1", worker_id="w1", entries=[read])

    # Before: the second run found the rollout `preparing`, acked and deleted the entry and returned
    # nothing, leaving an attempt no worker ran, renewed or could lose.
    assert len(first) == len(again) == 1
    assert codec.pairs(again[0][1])["attempt_id"] == b"at-once"
    assert codec.pairs(again[0][1])["entry"] == entry
    assert [a.attempt_id for a in await store.query_attempts(rollout.rollout_id)] == ["at-once"]
    assert await store.renew_leases("w1", [entry.decode()]) == {entry.decode()}
    # Its lease can lapse, so a worker that dies holding it does not strand it.
    await asyncio.sleep(0.3)
    assert await store.sweep() == (1, 1)
    refreshed = await store.get_rollout_by_id(rollout.rollout_id)
    assert refreshed is not None and refreshed.status == "requeuing"


async def test_a_claim_sent_again_after_its_attempt_ended_claims_nothing(make_store: StoreFactory) -> None:
    store = make_store()
    rollout = await store.enqueue_rollout("task", config=RETRY_UNRESPONSIVE)
    [[_stream, [(entry, _fields)]]] = await store._redis.xreadgroup("workers", "w1", {store.keys.queue: ">"}, count=1)
    read = StreamEntry(entry_id=entry.decode(), rollout_id=rollout.rollout_id, attempt_id="at-once")
    assert len(await store.transitions.claim(consumer="w1", worker_id="w1", entries=[read])) == 1
    await store.update_attempt(rollout.rollout_id, "at-once", status="succeeded")
    assert await store.transitions.claim(consumer="w1", worker_id="w1", entries=[read]) == []
    refreshed = await store.get_rollout_by_id(rollout.rollout_id)
    assert refreshed is not None and refreshed.status == "succeeded"
