"""Issue 17: the staleness bound at claim time (AReaL's count rule), and the re-pin / fail policies."""

from __future__ import annotations

import asyncio
import time

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.types import PromptTemplate, RolloutConfig


def prompt(text: str) -> dict[str, PromptTemplate]:
    return {"prompt": PromptTemplate(template=text)}


async def enqueue(store: RedisLightningStore, n: int, mode: str = "train", **kwargs: object) -> list[str]:
    return [(await store.enqueue_rollout({"i": i}, mode=mode, **kwargs)).rollout_id for i in range(n)]  # type: ignore[arg-type]


async def drain(store: RedisLightningStore) -> list[str]:
    return [r.rollout_id for r in await store.dequeue_many_rollouts(limit=100)]


async def test_no_bound_by_default(store: RedisLightningStore) -> None:
    assert await store.get_staleness() is None
    await enqueue(store, 5)
    assert len(await drain(store)) == 5


async def test_the_count_rule_admits_s_plus_v_plus_one_batches(store: RedisLightningStore) -> None:
    await store.update_resources("main", prompt("v1"))  # version 1: the bound counts from here
    bound = await store.set_staleness(1, 3)
    assert bound is not None and (bound.base_version, bound.limit, bound.capacity) == (1, 6, 6)
    ids = await enqueue(store, 12, resources_id="main")

    assert await drain(store) == ids[:6]  # (S + 0 + 1) * B = 6, in FIFO order
    assert await drain(store) == []
    await store.update_resources("main", prompt("v2"))
    assert await drain(store) == ids[6:9]  # one version more: one batch more
    bound = await store.get_staleness()
    assert bound is not None and (bound.admitted, bound.limit, bound.capacity) == (9, 9, 0)


async def test_modes_outside_the_bound_pass_a_full_bound(store: RedisLightningStore) -> None:
    await store.set_staleness(0, 1)
    train = await enqueue(store, 3)
    val = await enqueue(store, 2, mode="val")

    assert await drain(store) == [train[0], *val]
    bound = await store.get_staleness()
    assert bound is not None and bound.admitted == 1


async def test_rollouts_without_a_mode_can_be_bounded(store: RedisLightningStore) -> None:
    await store.set_staleness(0, 1, modes=[None])
    first, _second = [(await store.enqueue_rollout({"i": i})).rollout_id for i in range(2)]
    val = await enqueue(store, 1, mode="train")

    assert await drain(store) == [first, *val]


async def test_a_retry_is_not_counted_again(store: RedisLightningStore) -> None:
    await store.set_staleness(0, 1)
    retry = RolloutConfig(max_attempts=3, retry_condition=["failed"])
    first, _second = await enqueue(store, 2, config=retry)
    [claimed] = await store.dequeue_many_rollouts(limit=5)
    assert claimed.rollout_id == first

    await store.update_attempt(first, claimed.attempt.attempt_id, status="failed")  # requeued by the retry rule

    [again] = await store.dequeue_many_rollouts(limit=5)
    assert (again.rollout_id, again.attempt.sequence_id) == (first, 2)
    assert await drain(store) == []
    bound = await store.get_staleness()
    assert bound is not None and bound.admitted == 1


async def test_a_rollout_ending_without_a_result_gives_its_slot_back(store: RedisLightningStore) -> None:
    await store.set_staleness(0, 1)
    first, second = await enqueue(store, 2)
    [claimed] = await store.dequeue_many_rollouts(limit=5)
    assert await drain(store) == []

    await store.update_attempt(first, claimed.attempt.attempt_id, status="failed")  # no retries: rollout failed

    assert await drain(store) == [second]
    # A success keeps its slot.
    await store.update_attempt(second, "latest", status="succeeded")
    bound = await store.get_staleness()
    assert bound is not None and bound.admitted == 1


async def test_a_cancelled_queued_rollout_took_no_slot(store: RedisLightningStore) -> None:
    await store.set_staleness(0, 1)
    first, second = await enqueue(store, 2)
    await store.update_rollout(first, status="cancelled")

    assert await drain(store) == [second]


async def test_repin_moves_a_stale_rollout_to_the_latest_resources(store: RedisLightningStore) -> None:
    old = await store.update_resources("old", prompt("v1"))
    rollout = await store.enqueue_rollout({"i": 0}, mode="train", resources_id=old.resources_id)
    fresh = await store.enqueue_rollout({"i": 1}, mode="train", resources_id=old.resources_id)
    await store.set_staleness(1, 10)
    for i in range(2):
        await store.update_resources("new", prompt(f"v{i + 2}"))  # latest is version 3; old (1) < 3 - 1

    claimed = await store.dequeue_rollout()

    assert claimed is not None and claimed.rollout_id == rollout.rollout_id
    assert claimed.resources_id == "new" and claimed.attempt.policy_version == 3
    raw = await store._redis.hget(store.keys.rollout(rollout.rollout_id), "repinned_from")
    assert raw == b"old"
    assert fresh.resources_id == "old"


async def test_within_s_versions_a_pin_is_kept(store: RedisLightningStore) -> None:
    old = await store.update_resources("old", prompt("v1"))
    rollout = await store.enqueue_rollout({"i": 0}, mode="train", resources_id=old.resources_id)
    await store.set_staleness(1, 10)
    await store.update_resources("new", prompt("v2"))  # old (1) == 2 - 1: not stale

    claimed = await store.dequeue_rollout()

    assert claimed is not None and claimed.rollout_id == rollout.rollout_id
    assert claimed.resources_id == "old" and claimed.attempt.policy_version == 1


async def test_fail_policy_fails_a_stale_rollout_and_takes_no_slot(store: RedisLightningStore) -> None:
    old = await store.update_resources("old", prompt("v1"))
    stale = await store.enqueue_rollout({"i": 0}, mode="train", resources_id=old.resources_id)
    await store.set_staleness(0, 1, stale_policy="fail")
    await store.update_resources("new", prompt("v2"))
    ok = await store.enqueue_rollout({"i": 1}, mode="train")  # pinned to the latest at creation

    claimed = await store.dequeue_rollout()

    assert claimed is not None and claimed.rollout_id == ok.rollout_id
    [ended] = await store.wait_for_rollouts(rollout_ids=[stale.rollout_id], timeout=5)
    assert ended.status == "failed"
    assert await store.pending_entries() == 0


async def test_a_worker_waits_on_a_full_bound_and_wakes_at_a_version_bump(store: RedisLightningStore) -> None:
    await store.update_resources("main", prompt("v1"))
    await store.set_staleness(0, 1)
    first, second = await enqueue(store, 2, resources_id="main")
    [claim] = await store.claim(consumer="w1", worker_id="w1", count=1, block_ms=100)
    assert claim.rollout.rollout_id == first

    waiting = asyncio.create_task(store.claim(consumer="w1", worker_id="w1", count=1, block_ms=5000))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    started = time.monotonic()
    await store.update_resources("main", prompt("v2"))
    got = await waiting
    if not got:  # woken by the bump: the next call claims
        got = await store.claim(consumer="w1", worker_id="w1", count=1, block_ms=500)
    assert [c.rollout.rollout_id for c in got] == [second]
    assert time.monotonic() - started < 2.0
    assert got[0].rollout.attempt.policy_version == 2


async def test_setting_again_keeps_the_count_and_clear_restores_todays_behaviour(store: RedisLightningStore) -> None:
    await store.set_staleness(0, 2)
    ids = await enqueue(store, 6)
    assert await drain(store) == ids[:2]

    bound = await store.set_staleness(1, 2, stale_policy="fail")
    assert bound is not None and (bound.admitted, bound.limit, bound.stale_policy) == (2, 4, "fail")
    assert await drain(store) == ids[2:4]

    assert await store.set_staleness(None) is None
    assert await store.get_staleness() is None
    assert await drain(store) == ids[4:]


async def test_a_new_window_does_not_take_back_slots_of_the_old_one(store: RedisLightningStore) -> None:
    await store.set_staleness(0, 1)
    first, second, _third = await enqueue(store, 3)
    [claimed] = await store.dequeue_many_rollouts(limit=5)
    await store.set_staleness(None)
    await store.set_staleness(0, 1)  # a fresh window: 0 admitted
    assert await drain(store) == [second]

    await store.update_attempt(first, claimed.attempt.attempt_id, status="failed")  # a slot of the old window

    assert await drain(store) == []
    bound = await store.get_staleness()
    assert bound is not None and bound.admitted == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((-1, 1), {}, ValueError, "max_staleness must be an integer >= 0, got -1"),
        ((1.5, 1), {}, ValueError, "max_staleness must be an integer >= 0, got 1.5"),
        ((True, 1), {}, ValueError, "max_staleness must be an integer >= 0, got True"),
        ((1, 0), {}, ValueError, "batch_size must be an integer >= 1, got 0"),
        ((1,), {}, ValueError, "batch_size must be an integer >= 1, got None"),
        ((1, 4), {"modes": "train"}, TypeError, "modes must be a sequence of rollout modes"),
        ((1, 4), {"modes": []}, ValueError, "modes must name at least one rollout mode"),
        ((1, 4), {"modes": ["training"]}, ValueError, "invalid mode 'training'"),
        ((1, 4), {"stale_policy": "drop"}, ValueError, "stale_policy must be one of repin, fail, got 'drop'"),
    ],
)
async def test_bad_settings_are_refused_naming_the_value(
    store: RedisLightningStore, args: tuple[object, ...], kwargs: dict[str, object], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        await store.set_staleness(*args, **kwargs)  # type: ignore[arg-type]
    assert await store.get_staleness() is None
