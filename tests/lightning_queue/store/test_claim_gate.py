"""Issue 17: claims refused while paused, atomically in the claim scripts; refused entries held, not lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from lightning_queue import RedisLightningStore
from lightning_queue.store.schema import HELD_CONSUMER

StoreFactory = Callable[..., RedisLightningStore]


async def held_ids(store: RedisLightningStore) -> list[str]:
    pending = await store._redis.xpending_range(
        store.keys.queue, "workers", min="-", max="+", count=100, consumername=HELD_CONSUMER
    )
    return [p["message_id"].decode() for p in pending]


async def test_dequeue_claims_nothing_while_paused_and_the_queue_is_kept(store: RedisLightningStore) -> None:
    queued = [await store.enqueue_rollout({"i": i}) for i in range(3)]
    holder = await store.pause_claims(30)

    assert await store.dequeue_rollout() is None
    assert await store.dequeue_many_rollouts(limit=5) == []
    assert await store.queue_depth() == 3  # nothing was even read

    await store.resume_claims(holder)
    claimed = await store.dequeue_many_rollouts(limit=5)
    assert [r.rollout_id for r in claimed] == [r.rollout_id for r in queued]


async def test_a_worker_claim_while_paused_holds_what_it_read_and_it_goes_first_after_resume(
    store: RedisLightningStore,
) -> None:
    first = await store.enqueue_rollout({"i": 0})
    holder = await store.pause_claims(30)

    # The worker read the entry (its XREADGROUP was blocked when the pause began): refused, held.
    assert await store.claim(consumer="w1", worker_id="w1", count=1, block_ms=50) == []
    assert len(await held_ids(store)) == 1
    rollout = await store.get_rollout_by_id(first.rollout_id)
    assert rollout is not None and rollout.status == "queuing"

    second = await store.enqueue_rollout({"i": 1})
    await store.resume_claims(holder)
    # Another claimer, not the one that held it: the held entry is older, so it goes first.
    got = await store.dequeue_many_rollouts(limit=2)
    assert [r.rollout_id for r in got] == [first.rollout_id, second.rollout_id]
    assert await held_ids(store) == []


async def test_a_gated_worker_waits_on_the_gate_and_wakes_at_resume(store: RedisLightningStore) -> None:
    rollout = await store.enqueue_rollout({"i": 0})
    holder = await store.pause_claims(30)
    assert await store.claim(consumer="w1", worker_id="w1", count=1, block_ms=20) == []

    waiting = asyncio.create_task(store.claim(consumer="w1", worker_id="w1", count=1, block_ms=5000))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # blocked on the gate, not spinning
    started = time.monotonic()
    await store.resume_claims(holder)
    assert await waiting == []  # woken well before its block time ...
    assert time.monotonic() - started < 2.0
    [claim] = await store.claim(consumer="w1", worker_id="w1", count=1, block_ms=100)  # ... and claims now
    assert claim.rollout.rollout_id == rollout.rollout_id


async def test_a_gated_claim_sends_two_commands_per_block_time(store: RedisLightningStore) -> None:
    await store.enqueue_rollout({"i": 0})
    await store.pause_claims(30)
    assert await store.claim(consumer="w1", count=1, block_ms=20) == []
    sent: list[str] = []
    redis = store._redis
    original = redis.execute_command

    async def counting(*args: object, **kwargs: object) -> object:
        sent.append(str(args[0]))
        return await original(*args, **kwargs)

    redis.execute_command = counting
    started = time.monotonic()
    try:
        for _ in range(5):
            assert await store.claim(consumer="w1", count=1, block_ms=200) == []
    finally:
        redis.execute_command = original

    assert time.monotonic() - started >= 0.9  # each call waited out its block time: no busy loop
    # Per call: the claim script, then the wait on the gate (skipped if the script alone took the block
    # time, on a loaded machine); never a read of the queue while gated.
    assert sent.count("EVALSHA") == 5
    assert set(sent) <= {"EVALSHA", "XREAD"} and len(sent) <= 10


async def test_the_pause_expiry_lets_claims_go_on(store: RedisLightningStore) -> None:
    rollout = await store.enqueue_rollout({"i": 0})
    await store.pause_claims(0.2)
    assert await store.claim(consumer="w1", count=1, block_ms=20) == []

    await asyncio.sleep(0.3)

    [claim] = await store.claim(consumer="w1", count=1, block_ms=500)
    assert claim.rollout.rollout_id == rollout.rollout_id


async def test_start_rollout_and_start_attempt_are_not_gated(store: RedisLightningStore) -> None:
    await store.pause_claims(30)

    started = await store.start_rollout({"i": 0})
    again = await store.start_attempt(started.rollout_id)

    assert again.attempt.sequence_id == 2


async def test_a_held_rollout_cancelled_meanwhile_is_dropped_not_run(store: RedisLightningStore) -> None:
    rollout = await store.enqueue_rollout({"i": 0})
    holder = await store.pause_claims(30)
    assert await store.claim(consumer="w1", count=1, block_ms=20) == []
    await store.update_rollout(rollout.rollout_id, status="cancelled")
    await store.resume_claims(holder)

    assert await store.dequeue_rollout() is None
    assert await held_ids(store) == []
    assert await store.pending_entries() == 0


async def test_the_watchdog_gives_a_held_entry_back_to_the_held_consumer_while_paused(
    make_store: StoreFactory,
) -> None:
    store = make_store(lease_seconds=0.1)
    rollout = await store.enqueue_rollout({"i": 0})
    holder = await store.pause_claims(30)
    assert await store.claim(consumer="w1", count=1, block_ms=20) == []
    await asyncio.sleep(0.2)

    await store.sweep()

    assert len(await held_ids(store)) == 1  # still held, in its place: not requeued at the tail
    await store.resume_claims(holder)
    claimed = await store.dequeue_rollout()
    assert claimed is not None and claimed.rollout_id == rollout.rollout_id


async def test_an_orphaned_held_entry_is_queued_afresh_once_the_gate_is_open(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=0.1)
    rollout = await store.enqueue_rollout({"i": 0})
    holder = await store.pause_claims(30)
    assert await store.claim(consumer="w1", count=1, block_ms=20) == []
    await store.resume_claims(holder)
    await asyncio.sleep(0.2)  # nobody served it for a lease (its worker died)

    await store.sweep()

    assert await held_ids(store) == []
    [claim] = await store.claim(consumer="w2", count=1, block_ms=200)
    assert claim.rollout.rollout_id == rollout.rollout_id


async def test_a_gated_worker_survives_its_redis_coming_back_empty(store: RedisLightningStore) -> None:
    await store.enqueue_rollout({"i": 0})
    await store.pause_claims(30)
    assert await store.claim(consumer="w1", count=1, block_ms=20) == []  # w1 now serves held entries first

    await store.purge()  # as a Redis restarted without persistence: no stream, no group, no pause

    assert await store.claim(consumer="w1", count=1, block_ms=20) == []
    rollout = await store.enqueue_rollout({"i": 1})
    [claim] = await store.claim(consumer="w1", count=1, block_ms=500)
    assert claim.rollout.rollout_id == rollout.rollout_id
