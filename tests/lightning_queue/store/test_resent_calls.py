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


async def test_an_enqueue_sent_again_after_its_rollout_was_claimed_and_finished_changes_nothing(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    new = store._new_rollout("task", None, None, RETRY_UNRESPONSIVE, None)
    await store.transitions.create([new])
    [claim] = await store.claim(consumer="w1", worker_id="w1", count=1, block_ms=10)
    await store.update_attempt(new.rollout_id, claim.rollout.attempt.attempt_id, status="succeeded")

    [again] = await store.transitions.create([new])
    # Before: the rollout was written afresh, `queuing` again with its attempt count reset, and run twice.
    assert codec.pairs(again[0])["status"] == b"succeeded"
    refreshed = await store.get_rollout_by_id(new.rollout_id)
    assert refreshed is not None and refreshed.status == "succeeded"
    assert await store.query_rollouts(status_in=["queuing"]) == []
    assert await store.queue_depth() == 0 and await store.pending_entries() == 0


async def test_a_start_rollout_sent_again_makes_one_attempt(make_store: StoreFactory) -> None:
    store = make_store()
    new = store._new_rollout("task", None, None, None, None)
    [first] = await store.transitions.create([new], start=True, attempt_id="at-start", worker_id="w1")
    [again] = await store.transitions.create([new], start=True, attempt_id="at-start", worker_id="w1")
    assert codec.pairs(again[1]) == codec.pairs(first[1])
    assert [(a.attempt_id, a.sequence_id) for a in await store.query_attempts(new.rollout_id)] == [("at-start", 1)]


async def test_a_start_attempt_sent_again_makes_one_attempt(make_store: StoreFactory) -> None:
    store = make_store()
    rollout = await store.enqueue_rollout("task")
    first = await store.transitions.start_attempt(rollout.rollout_id, "at-extra", "w1")
    again = await store.transitions.start_attempt(rollout.rollout_id, "at-extra", "w1")
    assert codec.pairs(again[1]) == codec.pairs(first[1])
    assert [(a.attempt_id, a.sequence_id) for a in await store.query_attempts(rollout.rollout_id)] == [("at-extra", 1)]
    stats = await store._redis.hget(store.keys.meta, "attempts")
    assert int(stats) == 1
