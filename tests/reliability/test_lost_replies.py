"""Replies lost on the wire after Redis ran the command: redis-py resends it, and nothing is stranded.

A Redis crash (or a cut connection) right after a script ran loses its reply but, with AOF, keeps its
effect; the client's retry then runs it again. Seen in the AOF-everysec crash test as rollouts left
`preparing` forever. The proxy here loses exactly one reply, deterministically.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from lightning_queue import RedisLightningStore, RolloutConfig
from lightning_queue.store.scripts import script_source
from tests.support.lossy_proxy import LossyProxy
from tests.support.stranded import describe_rollouts

RETRY_UNRESPONSIVE = RolloutConfig(max_attempts=2, retry_condition=["unresponsive"])


@pytest.fixture
async def lossy(redis_url: str, namespace: str) -> AsyncIterator[tuple[LossyProxy, RedisLightningStore]]:
    proxy = LossyProxy(redis_url)
    await proxy.start()
    store = RedisLightningStore(proxy.url, namespace=namespace, lease_seconds=30.0, scan_debounce_seconds=3600)
    yield proxy, store
    await store.purge()
    await store.aclose()
    await proxy.close()


async def loaded_sha(store: RedisLightningStore, name: str) -> bytes:
    # Loaded first, so the reply lost is the script's own and not a NOSCRIPT error.
    return str(await store._redis.script_load(script_source(name))).encode()


async def test_a_claim_whose_reply_was_lost_is_handed_to_the_worker_that_sent_it(
    lossy: tuple[LossyProxy, RedisLightningStore],
) -> None:
    proxy, store = lossy
    rollouts = [await store.enqueue_rollout(f"task {i}", config=RETRY_UNRESPONSIVE) for i in range(2)]
    proxy.drop_reply_to(await loaded_sha(store, "claim"))

    claims = await store.claim(consumer="w1", worker_id="w1", count=2, block_ms=100)

    assert proxy.dropped == 1, "the proxy lost no reply: the test proves nothing"
    ids = [r.rollout_id for r in rollouts]
    assert sorted(c.rollout.rollout_id for c in claims) == sorted(ids), await describe_rollouts(store, ids)
    entries = [c.entry_id for c in claims]
    assert await store.renew_leases("w1", entries) == set(entries)
    for claim in claims:
        attempts = await store.query_attempts(claim.rollout.rollout_id)
        assert [a.attempt_id for a in attempts] == [claim.rollout.attempt.attempt_id]
        await store.update_attempt(claim.rollout.rollout_id, claim.rollout.attempt.attempt_id, status="succeeded")
    assert await store.pending_entries() == 0 and await store.queue_depth() == 0


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("create", lambda s, rid: s.enqueue_rollout("task", config=RETRY_UNRESPONSIVE)),
        ("update_attempt", lambda s, rid: s.update_attempt(rid, "latest", status="succeeded")),
    ],
    ids=["enqueue", "end-attempt"],
)
async def test_other_transitions_whose_reply_was_lost_take_effect_once(
    lossy: tuple[LossyProxy, RedisLightningStore], name: str, call: Callable[..., object]
) -> None:
    proxy, store = lossy
    before = await store.enqueue_rollout("first", config=RETRY_UNRESPONSIVE)
    [claim] = await store.claim(consumer="w1", worker_id="w1", count=1, block_ms=100)
    proxy.drop_reply_to(await loaded_sha(store, name))

    await call(store, before.rollout_id)  # type: ignore[misc]

    assert proxy.dropped == 1
    rollouts = await store.query_rollouts()
    if name == "create":
        assert len(rollouts) == 2 and await store.queue_depth() == 1
        assert {r.status for r in rollouts} == {"preparing", "queuing"}
    else:
        assert [r.status for r in rollouts] == ["succeeded"]
        assert await store.pending_entries() == 0
    assert len(await store.query_attempts(claim.rollout.rollout_id)) == 1
