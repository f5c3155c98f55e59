"""The worker path of the store: leased claims, renewal, reclaim of lapsed leases, release."""

from __future__ import annotations

import asyncio

from lightning_queue import RolloutConfig
from lightning_queue.store.transitions import StreamEntry
from tests.support.stores import StoreFactory

RETRY_UNRESPONSIVE = RolloutConfig(max_attempts=2, retry_condition=["unresponsive"])


async def test_claim_keeps_the_entry_pending_until_the_attempt_ends(make_store: StoreFactory) -> None:
    store = make_store()
    rollout = await store.enqueue_rollout("task")
    claims = await store.claim(consumer="w1", worker_id="w1", count=5, block_ms=10)
    assert [c.rollout.rollout_id for c in claims] == [rollout.rollout_id]
    assert claims[0].rollout.attempt.worker_id == "w1"
    assert await store.pending_entries() == 1 and await store.queue_depth() == 0
    await store.update_attempt(rollout.rollout_id, claims[0].rollout.attempt.attempt_id, status="succeeded")
    assert await store.pending_entries() == 0


async def test_dequeue_rollout_holds_no_lease(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=0.05)
    await store.enqueue_rollout("task")
    claimed = await store.dequeue_rollout(worker_id="w1")
    assert claimed is not None and await store.pending_entries() == 0
    await asyncio.sleep(0.1)
    assert await store.sweep() == (0, 0)
    latest = await store.get_latest_attempt(claimed.rollout_id)
    assert latest is not None and latest.status == "preparing"


async def test_claim_blocks_until_an_entry_arrives(make_store: StoreFactory) -> None:
    store, producer = make_store(), make_store()

    async def enqueue_later() -> str:
        await asyncio.sleep(0.2)
        return (await producer.enqueue_rollout("late")).rollout_id

    waiting = asyncio.create_task(store.claim(consumer="w1", count=1, block_ms=3000))
    rollout_id = await enqueue_later()
    claims = await asyncio.wait_for(waiting, 5)
    assert [c.rollout.rollout_id for c in claims] == [rollout_id]


async def test_claim_skips_entries_of_rollouts_that_left_the_queue(make_store: StoreFactory) -> None:
    store = make_store()
    cancelled = await store.enqueue_rollout("cancel me")
    kept = await store.enqueue_rollout("keep me")
    await store.update_rollout(cancelled.rollout_id, status="cancelled")
    claims = await store.claim(consumer="w1", count=5, block_ms=10)
    assert [c.rollout.rollout_id for c in claims] == [kept.rollout_id]
    assert await store.pending_entries() == 1


async def test_lapsed_lease_marks_attempt_unresponsive_and_requeues(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=0.2)
    rollout = await store.enqueue_rollout("task", config=RETRY_UNRESPONSIVE)
    [claim] = await store.claim(consumer="dead-worker", worker_id="dead-worker", count=1, block_ms=10)
    await asyncio.sleep(0.3)
    verdicts, reclaimed = await store.sweep()
    assert (verdicts, reclaimed) == (1, 1)
    attempt = await store.get_latest_attempt(rollout.rollout_id)
    assert attempt is not None and attempt.attempt_id == claim.rollout.attempt.attempt_id
    assert attempt.status == "unresponsive"
    refreshed = await store.get_rollout_by_id(rollout.rollout_id)
    assert refreshed is not None and refreshed.status == "requeuing"
    worker = await store.get_worker_by_id("dead-worker")
    assert worker is not None and worker.status == "unknown"
    [retry] = await store.claim(consumer="w2", worker_id="w2", count=1, block_ms=10)
    assert retry.rollout.rollout_id == rollout.rollout_id and retry.rollout.attempt.sequence_id == 2


async def test_lapsed_lease_fails_rollout_when_retry_is_not_allowed(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=0.2)
    rollout = await store.enqueue_rollout("task")
    await store.claim(consumer="dead-worker", count=1, block_ms=10)
    await asyncio.sleep(0.3)
    await store.sweep()
    [done] = await store.wait_for_rollouts(rollout_ids=[rollout.rollout_id], timeout=1)
    assert done.status == "failed"
    assert await store.pending_entries() == 0


async def test_renewed_lease_is_not_reclaimed(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=0.3)
    rollout = await store.enqueue_rollout("task")
    [claim] = await store.claim(consumer="w1", count=1, block_ms=10)
    for _ in range(4):
        await asyncio.sleep(0.15)
        assert await store.renew_leases("w1", [claim.entry_id]) == {claim.entry_id}
        await store.sweep()
    attempt = await store.get_latest_attempt(rollout.rollout_id)
    assert attempt is not None and attempt.status == "preparing"


async def test_renewal_reports_entries_lost_to_reclaim(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=0.1)
    await store.enqueue_rollout("task")
    [claim] = await store.claim(consumer="zombie", count=1, block_ms=10)
    await asyncio.sleep(0.2)
    await store.sweep()
    assert await store.renew_leases("zombie", [claim.entry_id]) == set()


async def test_zombie_writes_after_reclaim_cannot_move_the_rollout(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=0.1)
    rollout = await store.enqueue_rollout("task", config=RETRY_UNRESPONSIVE)
    [old] = await store.claim(consumer="zombie", count=1, block_ms=10)
    await asyncio.sleep(0.2)
    await store.sweep()
    [new] = await store.claim(consumer="w2", count=1, block_ms=10)
    await store.update_attempt(rollout.rollout_id, new.rollout.attempt.attempt_id, status="succeeded")

    # The zombie wakes up and finishes its old attempt as failed.
    await store.update_attempt(rollout.rollout_id, old.rollout.attempt.attempt_id, status="failed")
    refreshed = await store.get_rollout_by_id(rollout.rollout_id)
    assert refreshed is not None and refreshed.status == "succeeded"
    latest = await store.get_latest_attempt(rollout.rollout_id)
    assert latest is not None and latest.attempt_id == new.rollout.attempt.attempt_id
    assert latest.status == "succeeded"


async def test_entry_read_but_never_claimed_is_queued_again(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=0.1)
    rollout = await store.enqueue_rollout("task")
    # A worker that dies between XREADGROUP and the claim script leaves a pending entry behind.
    redis = store._redis
    await redis.xreadgroup("workers", "crashed", {store.keys.queue: ">"}, count=1)
    await asyncio.sleep(0.2)
    assert (await store.sweep())[1] == 1
    claimed = await store.dequeue_rollout()
    assert claimed is not None and claimed.rollout_id == rollout.rollout_id


async def test_release_requeues_whatever_the_retry_rule_says(make_store: StoreFactory) -> None:
    store = make_store()
    rollout = await store.enqueue_rollout("task")  # max_attempts=1: a failure would be final
    [claim] = await store.claim(consumer="w1", worker_id="w1", count=1, block_ms=10)
    assert await store.release(rollout.rollout_id, claim.rollout.attempt.attempt_id, {"reason": "shutdown"})
    refreshed = await store.get_rollout_by_id(rollout.rollout_id)
    assert refreshed is not None and refreshed.status == "requeuing"
    assert await store.pending_entries() == 0
    attempt = await store.get_latest_attempt(rollout.rollout_id)
    assert attempt is not None and attempt.status == "unresponsive" and attempt.metadata == {"reason": "shutdown"}
    again = await store.dequeue_rollout()
    assert again is not None and again.attempt.sequence_id == 2
    assert not await store.release(rollout.rollout_id, claim.rollout.attempt.attempt_id)


async def test_idle_claim_waits_its_block_time_instead_of_spinning(make_store: StoreFactory) -> None:
    store = make_store()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await store.claim(consumer="idle", count=1, block_ms=300) == []
    assert loop.time() - started >= 0.25


async def test_claim_recreates_the_group_after_redis_lost_it(make_store: StoreFactory) -> None:
    store = make_store()
    assert await store.claim(consumer="w1", count=1, block_ms=10) == []
    await store.purge()  # as after a restart without persistence: stream and group are gone
    assert await store.claim(consumer="w1", count=1, block_ms=10) == []
    rollout = await make_store().enqueue_rollout("after the restart")
    [claim] = await store.claim(consumer="w1", count=1, block_ms=100)
    assert claim.rollout.rollout_id == rollout.rollout_id


async def test_a_long_debounce_does_not_silence_other_sweepers(make_store: StoreFactory) -> None:
    reader = make_store(scan_debounce_seconds=3600)
    await reader.get_rollout_by_id("ro-none")  # its lazy sweep takes the cross-process lock
    ttl_ms = await reader._redis.pttl(reader.keys.prefix + "lock:sweep")
    assert 0 < ttl_ms <= 10_000


async def test_entry_reclaimed_while_its_reader_was_frozen_is_not_claimed_by_it(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=0.1)
    rollout = await store.enqueue_rollout("task", config=RETRY_UNRESPONSIVE)
    # The worker reads the entry, then freezes (SIGSTOP) before its claim script runs.
    [[_stream, [(entry, _fields)]]] = await store._redis.xreadgroup(
        "workers", "frozen", {store.keys.queue: ">"}, count=1
    )
    await asyncio.sleep(0.2)
    assert (await store.sweep())[1] == 1  # reclaimed: the rollout is queued afresh

    # It resumes and claims what it read: nothing, since that entry is no longer its own.
    stale = StreamEntry(entry_id=entry.decode(), rollout_id=rollout.rollout_id, attempt_id="at-stale")
    reply = await store.transitions.claim(consumer="frozen", worker_id="frozen", entries=[stale])
    assert reply.claims == []

    assert await store.query_attempts(rollout.rollout_id) == []
    [claim] = await store.claim(consumer="w2", count=1, block_ms=10)
    assert claim.rollout.rollout_id == rollout.rollout_id and claim.rollout.attempt.sequence_id == 1
    assert await store.renew_leases("w2", [claim.entry_id]) == {claim.entry_id}


async def test_a_leased_attempt_whose_entry_is_gone_is_ended_by_the_sweep(make_store: StoreFactory) -> None:
    # The state a resent claim used to leave: attempt live and naming its entry, the entry acked and deleted.
    # Nobody renews it and XAUTOCLAIM never meets it, so only this rule ends it.
    store = make_store(lease_seconds=0.2)
    rollout = await store.enqueue_rollout("task", config=RETRY_UNRESPONSIVE)
    [claim] = await store.claim(consumer="w1", worker_id="w1", count=1, block_ms=10)
    await store._redis.xack(store.keys.queue, "workers", claim.entry_id)
    await store._redis.xdel(store.keys.queue, claim.entry_id)
    assert await store.sweep() == (0, 0)  # within a lease of its start: maybe still running somewhere

    await asyncio.sleep(0.3)
    assert await store.sweep() == (1, 0)
    attempt = await store.get_latest_attempt(rollout.rollout_id)
    assert attempt is not None and attempt.status == "unresponsive"
    [retry] = await store.claim(consumer="w2", worker_id="w2", count=1, block_ms=10)
    assert retry.rollout.rollout_id == rollout.rollout_id and retry.rollout.attempt.sequence_id == 2
    await store.update_attempt(rollout.rollout_id, retry.rollout.attempt.attempt_id, status="succeeded")
    assert await store.pending_entries() == 0


async def test_a_leased_attempt_whose_entry_is_still_pending_is_left_to_its_lease(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=0.3)
    rollout = await store.enqueue_rollout("task", config=RETRY_UNRESPONSIVE)
    [claim] = await store.claim(consumer="w1", worker_id="w1", count=1, block_ms=10)
    for _ in range(3):
        await asyncio.sleep(0.15)
        assert await store.renew_leases("w1", [claim.entry_id]) == {claim.entry_id}
        assert await store.sweep() == (0, 0)  # older than a lease and silent, but its entry is held
    attempt = await store.get_latest_attempt(rollout.rollout_id)
    assert attempt is not None and attempt.status == "preparing"


async def test_a_claim_names_the_resources_snapshot_each_rollout_runs_with(make_store: StoreFactory) -> None:
    from lightning_queue.store.leases import ResourcesRef
    from lightning_queue.types import PromptTemplate

    store = make_store(lease_seconds=30)
    await store.enqueue_rollout("before any resources")
    [none] = await store.claim(consumer="w1", count=1, block_ms=10)
    assert none.resources == ResourcesRef("", "", "")

    old = await store.add_resources({"p": PromptTemplate(template="a", engine="f-string")})
    latest = await store.update_resources("rs-latest", {"p": PromptTemplate(template="b", engine="f-string")})
    latest = await store.update_resources("rs-latest", {"p": PromptTemplate(template="c", engine="f-string")})
    await store.enqueue_rollout("pinned", resources_id=old.resources_id)
    await store.enqueue_rollout("latest")
    await store.enqueue_rollout("gone", resources_id="rs-gone")
    pinned, at_latest, gone = await store.claim(consumer="w1", count=3, block_ms=10)

    assert pinned.resources is not None and at_latest.resources is not None
    assert (pinned.resources.resources_id, pinned.resources.version) == (old.resources_id, "1")
    assert float(pinned.resources.update_time) == old.update_time
    assert (at_latest.resources.resources_id, at_latest.resources.version) == ("rs-latest", "2")
    assert float(at_latest.resources.update_time) == latest.update_time
    assert gone.resources == ResourcesRef("rs-gone", "", "")
