"""Late spans: a span that arrives after its attempt lost its lease (a worker killed or frozen while its
agent's LLM call was in flight, the proxy recording the call when it returns) never strands a rollout.

A leased attempt (claimed by a worker) that left preparing/running stays where it is on a late span,
and its rollout follows the retry rule alone; attempts without a lease (the contract's `dequeue_rollout`,
`start_rollout`) keep the contract's revival, and the watchdog's heartbeat rule still watches them.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from lightning_queue import RedisLightningStore, RolloutConfig
from lightning_queue.store.leases import Claim
from lightning_queue.types import Span
from tests.support.stores import StoreFactory

LEASE = 0.2
PAST_LEASE = 0.35
RETRY = RolloutConfig(max_attempts=3, retry_condition=["unresponsive", "failed", "timeout"])


def late_span(rollout_id: str, attempt_id: str, name: str = "openai.chat.completion", sequence_id: int = 0) -> Span:
    return Span.from_attributes(
        attributes={}, rollout_id=rollout_id, attempt_id=attempt_id, sequence_id=sequence_id, name=name
    )


async def reclaimed(store: RedisLightningStore, consumer: str = "w1") -> Claim:
    """A rollout claimed by `consumer`, whose lease then lapsed and was reclaimed by the watchdog."""
    await store.enqueue_rollout("task", config=RETRY)
    [claim] = await store.claim(consumer=consumer, worker_id=consumer, count=1, block_ms=10)
    await asyncio.sleep(PAST_LEASE)
    assert await store.sweep() == (1, 1)
    return claim


async def statuses(store: RedisLightningStore, rollout_id: str) -> tuple[str, list[str]]:
    rollout = await store.get_rollout_by_id(rollout_id)
    assert rollout is not None
    return rollout.status, [a.status for a in await store.query_attempts(rollout_id)]


async def test_rollout_whose_worker_died_mid_llm_call_is_retried_not_stranded(make_store: StoreFactory) -> None:
    # The run: w1 dies while its agent's LLM call is in flight, the watchdog reclaims the
    # attempt, the call returns and the proxy records it, and other workers keep claiming and sweeping.
    store = make_store(lease_seconds=LEASE)
    claim = await reclaimed(store)
    rid = claim.rollout.rollout_id
    await store.add_span(late_span(rid, claim.rollout.attempt.attempt_id))

    retried = None
    for _ in range(10):  # about six leases
        retried = retried or next(iter(await store.claim(consumer="w2", count=1, block_ms=10)), None)
        if retried is not None:
            break
        await asyncio.sleep(LEASE / 2)
        await store.sweep()
    assert retried is not None, f"stranded: {await statuses(store, rid)}"
    assert retried.rollout.rollout_id == rid and retried.rollout.attempt.sequence_id == 2


async def test_late_span_after_a_lapsed_lease_leaves_the_rollout_to_its_retry(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=LEASE)
    claim = await reclaimed(store)
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    assert await statuses(store, rid) == ("requeuing", ["unresponsive"])
    before = time.time()

    # The dead worker's LLM call returns; the proxy records it on the attempt it was made for.
    assert await store.add_span(late_span(rid, aid)) is not None

    assert await statuses(store, rid) == ("requeuing", ["unresponsive"])
    attempt = await store.get_latest_attempt(rid)
    assert attempt is not None and attempt.last_heartbeat_time is not None and attempt.last_heartbeat_time >= before
    assert [s.attempt_id for s in await store.query_spans(rid)] == [aid]
    # The queued retry is still there: the next claim runs attempt 2.
    assert await store.queue_depth() == 1
    [retry] = await store.claim(consumer="w2", worker_id="w2", count=1, block_ms=10)
    assert retry.rollout.rollout_id == rid and retry.rollout.attempt.sequence_id == 2
    await store.update_attempt(rid, retry.rollout.attempt.attempt_id, status="succeeded")
    [done] = await store.wait_for_rollouts(rollout_ids=[rid], timeout=5)
    assert done.status == "succeeded"
    assert await store.pending_entries() == 0 and await store.queue_depth() == 0


async def test_late_span_of_a_superseded_attempt_changes_neither_the_rollout_nor_the_retry(
    make_store: StoreFactory,
) -> None:
    store = make_store(lease_seconds=LEASE)
    claim = await reclaimed(store)
    rid, old = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    [retry] = await store.claim(consumer="w2", worker_id="w2", count=1, block_ms=10)
    new = retry.rollout.attempt.attempt_id

    await store.add_span(late_span(rid, old))

    assert await statuses(store, rid) == ("preparing", ["unresponsive", "preparing"])
    latest = await store.get_latest_attempt(rid)
    assert latest is not None and latest.attempt_id == new
    assert await store.renew_leases("w2", [retry.entry_id]) == {retry.entry_id}
    assert [s.attempt_id for s in await store.query_spans(rid, "latest")] == []


@pytest.mark.parametrize("ending", ["failed", "timeout"])
async def test_late_span_after_a_leased_attempt_ended_does_not_revive_its_requeued_rollout(
    make_store: StoreFactory, ending: str
) -> None:
    # The worker cancelled the agent's call (timeout) or saw it fail, and ended the attempt; the proxy
    # records the call a moment later.
    store = make_store(lease_seconds=30)
    await store.enqueue_rollout("task", config=RETRY)
    [claim] = await store.claim(consumer="w1", worker_id="w1", count=1, block_ms=10)
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    await store.update_attempt(rid, aid, status=ending)  # type: ignore[arg-type]

    await store.add_span(late_span(rid, aid))

    assert await statuses(store, rid) == ("requeuing", [ending])
    [retry] = await store.claim(consumer="w2", worker_id="w2", count=1, block_ms=10)
    assert retry.rollout.rollout_id == rid and retry.rollout.attempt.sequence_id == 2


async def test_late_span_after_a_release_does_not_revive_the_released_attempt(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30)
    await store.enqueue_rollout("task", config=RETRY)
    [claim] = await store.claim(consumer="w1", worker_id="w1", count=1, block_ms=10)
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    assert await store.release(rid, aid, {"reason": "shutdown"})

    await store.add_span(late_span(rid, aid))

    assert await statuses(store, rid) == ("requeuing", ["unresponsive"])
    [retry] = await store.claim(consumer="w2", count=1, block_ms=10)
    assert retry.rollout.attempt.sequence_id == 2


async def test_a_lost_lease_attempt_set_live_again_by_hand_is_reclaimed_one_lease_later(
    make_store: StoreFactory,
) -> None:
    # Whatever makes a leased attempt live again after its lease is gone, nobody renews it: the watchdog
    # treats its last heartbeat as the lease it can lose.
    store = make_store(lease_seconds=LEASE)
    claim = await reclaimed(store)
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    await store.add_span(late_span(rid, aid))
    await store.update_attempt(rid, aid, status="running")
    assert await statuses(store, rid) == ("running", ["running"])

    await asyncio.sleep(PAST_LEASE)
    verdicts, _ = await store.sweep()

    assert verdicts == 1
    assert await statuses(store, rid) == ("requeuing", ["unresponsive"])
    [retry] = await store.claim(consumer="w2", count=1, block_ms=10)
    assert retry.rollout.rollout_id == rid and retry.rollout.attempt.sequence_id == 2


async def test_a_leased_attempt_that_keeps_its_lease_is_renewed_by_its_spans(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=0.5)
    await store.enqueue_rollout("task", config=RETRY)
    [claim] = await store.claim(consumer="w1", worker_id="w1", count=1, block_ms=10)
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    for _ in range(3):
        await asyncio.sleep(0.3)
        await store.add_span(late_span(rid, aid, name=f"call-{_}"))
        assert (await store.sweep())[0] == 0
    assert await statuses(store, rid) == ("running", ["running"])


async def test_contract_path_keeps_the_revival_and_the_heartbeat_rule_catches_it_again(
    store: RedisLightningStore,
) -> None:
    # No lease here (`start_rollout`): the contract's quirk stands, and `unresponsive_seconds` is what
    # watches the revived attempt, counted from its late span.
    config = RolloutConfig(max_attempts=3, retry_condition=["unresponsive"], unresponsive_seconds=LEASE)
    started = await store.start_rollout("task", config=config)
    rid, aid = started.rollout_id, started.attempt.attempt_id
    await asyncio.sleep(PAST_LEASE)
    assert await statuses(store, rid) == ("requeuing", ["unresponsive"])

    await store.add_span(late_span(rid, aid))
    assert await statuses(store, rid) == ("running", ["running"])
    assert await store.dequeue_rollout() is None

    await asyncio.sleep(PAST_LEASE)
    assert await statuses(store, rid) == ("requeuing", ["unresponsive"])
    retry = await store.dequeue_rollout()
    assert retry is not None and retry.rollout_id == rid and retry.attempt.sequence_id == 2


async def test_frozen_worker_that_ends_its_reclaimed_latest_attempt_ends_the_rollout_once(
    make_store: StoreFactory,
) -> None:
    # SIGCONT after its pre-finish lease check: its spans and its success still land. On the latest
    # attempt that is the contract's late success; the queued retry is then dropped, not run.
    store = make_store(lease_seconds=LEASE)
    claim = await reclaimed(store)
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    # Distinct sequence ids: spans of one sequence id have no defined order.
    await store.add_many_spans([late_span(rid, aid, "call", 1), late_span(rid, aid, "reward", 2)])
    await store.update_attempt(rid, aid, status="succeeded")

    assert await statuses(store, rid) == ("succeeded", ["succeeded"])
    assert await store.claim(consumer="w2", count=1, block_ms=10) == []
    assert len(await store.query_attempts(rid)) == 1
    assert [s.name for s in await store.query_spans(rid, "latest")] == ["call", "reward"]
    assert await store.pending_entries() == 0 and await store.queue_depth() == 0
    done = await store._redis.xrange(store.keys.done)
    assert [fields[b"rid"].decode() for _id, fields in done] == [rid]
