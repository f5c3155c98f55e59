"""Query indexes: random transition sequences, then every index equals a full scan of the records, and
every indexed query equals the contract's sort-and-page over every record."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.store import codec, schema
from lightning_queue.store.leases import Claim, Finish
from lightning_queue.store.query import sort_and_page
from lightning_queue.types import (
    ATTEMPT_STATUSES,
    ROLLOUT_MODES,
    ROLLOUT_STATUSES,
    TERMINAL_STATUSES,
    AttemptedRollout,
    EnqueueRolloutRequest,
    Rollout,
    RolloutConfig,
    Span,
)
from tests.support.stores import StoreFactory

STEPS = 45
CHECK_EVERY = 15


async def _keys(store: RedisLightningStore, suffix: str) -> list[str]:
    pattern = store.keys.prefix + suffix + "*"
    return sorted([k.decode() async for k in store._redis.scan_iter(match=pattern, count=500)])


async def _zset(store: RedisLightningStore, key: str) -> dict[str, float]:
    return {m.decode(): score for m, score in await store._redis.zrange(key, 0, -1, withscores=True)}


async def _all_rollouts(store: RedisLightningStore) -> list[Rollout | AttemptedRollout]:
    """Every rollout from a scan of the hashes (not from an index), in creation order (start_time, id)."""
    cut = len(store.keys.rollout(""))
    ids = [k[cut:] for k in await _keys(store, schema.KEY_ROLLOUT)]
    # Read without the store's lazy sweep, which could move a rollout between two reads of the check.
    found = await store._read_rollouts(ids, listing=False)
    return sorted(found, key=lambda r: (r.start_time, r.rollout_id))


async def assert_indexes_match_records(store: RedisLightningStore) -> None:
    r, keys = store._redis, store.keys
    rollouts = await _all_rollouts(store)
    assert await _zset(store, keys.all_rollouts) == {x.rollout_id: x.start_time for x in rollouts}
    for status in ROLLOUT_STATUSES:
        expected = {x.rollout_id: x.start_time for x in rollouts if x.status == status}
        assert await _zset(store, keys.status_index(status)) == expected, status
    assert await _zset(store, keys.open_rollouts) == {
        x.rollout_id: x.start_time for x in rollouts if x.end_time is None
    }
    ended = {x.rollout_id: x.end_time for x in rollouts if x.end_time is not None}
    assert await _zset(store, keys.ended_rollouts) == ended
    for status in TERMINAL_STATUSES:
        in_status = {x.rollout_id: x.end_time for x in rollouts if x.status == status}
        assert await _zset(store, keys.end_index(status)) == in_status, status
    for mode in (None, *ROLLOUT_MODES):
        in_mode = {x.rollout_id: x.start_time for x in rollouts if x.mode == mode}
        assert await _zset(store, keys.mode_index(mode)) == in_mode, mode
    # The statistics counters agree with the records too (delete_rollouts decrements them).
    stats = await store.statistics()
    assert stats["total_attempts"] == len(await _keys(store, schema.KEY_ATTEMPT))
    assert stats["total_spans"] == sum([await r.hlen(keys.spans(x.rollout_id)) for x in rollouts])
    for x in rollouts:
        rid = x.rollout_id
        attempts = [await r.hgetall(k) for k in await _keys(store, f"{schema.KEY_ATTEMPT}{rid}:")]
        expected_attempts = {a[b"attempt_id"].decode(): float(a[b"sequence_id"]) for a in attempts}
        assert await _zset(store, keys.attempts(rid)) == expected_attempts
        stored = {f.decode(): codec.span_from_blob(b, key="") for f, b in (await r.hgetall(keys.spans(rid))).items()}
        for aid in expected_attempts:
            mine = {f.split(":", 1)[1]: float(s.sequence_id) for f, s in stored.items() if s.attempt_id == aid}
            assert await _zset(store, keys.span_order(rid, aid)) == mine


QUERIES: list[dict[str, Any]] = [
    {},
    {"sort_order": "desc"},
    {"sort_by": "start_time"},
    {"sort_by": "start_time", "sort_order": "desc"},
    {"sort_by": "end_time"},
    {"sort_by": "end_time", "sort_order": "desc"},
    {"status_in": ["queuing", "running", "failed"]},
    {"status_in": ["succeeded", "failed"], "sort_by": "end_time", "sort_order": "desc"},
    {"status_in": ["failed"], "sort_by": "end_time"},
    {"status_in": ["requeuing", "preparing"], "sort_by": "start_time", "sort_order": "desc"},
    {"rollout_id_contains": "a"},
    {"rollout_id_contains": "1", "status_in": ["succeeded", "queuing"], "sort_order": "desc"},
    {"status_in": []},
    {"sort_by": "mode"},
    {"sort_by": "mode", "sort_order": "desc"},
    {"status_in": ["failed", "failed", "cancelled"], "sort_by": "end_time"},
]


async def assert_queries_match_scan(store: RedisLightningStore, rng: random.Random) -> None:
    rollouts = await _all_rollouts(store)
    for query in QUERIES:
        wanted = query.get("status_in")
        contains = query.get("rollout_id_contains")
        candidates = [
            x
            for x in rollouts
            if (wanted is None or x.status in wanted) and (contains is None or contains in x.rollout_id)
        ]
        pages = [(-1, 0), (1, 0), (3, rng.randrange(0, 6)), (5, rng.randrange(0, 20)), (0, 0), (2, 10_000), (-1, 3)]
        for limit, offset in pages:
            expected = sort_and_page(
                candidates,
                sort_by=query.get("sort_by"),
                sort_order=query.get("sort_order", "asc"),
                limit=limit,
                offset=offset,
            )
            got = await store.query_rollouts(**query, limit=limit, offset=offset)
            assert got.total == expected.total, (query, limit, offset)
            assert [x.rollout_id for x in got.items] == [x.rollout_id for x in expected.items], (query, limit, offset)
    workers = (await store.query_workers(worker_id_contains="")).items  # the scanned path
    for order in ("asc", "desc"):
        for limit, offset in [(1, 0), (2, 1), (-1, 0), (1, 99)]:
            expected_workers = sort_and_page(workers, sort_by=None, sort_order=order, limit=limit, offset=offset)
            got_workers = await store.query_workers(sort_order=order, limit=limit, offset=offset)
            assert got_workers.total == expected_workers.total
            assert [w.worker_id for w in got_workers.items] == [w.worker_id for w in expected_workers.items]
    for x in rng.sample(rollouts, min(3, len(rollouts))):
        attempts = (await store.query_attempts(x.rollout_id, sort_by="start_time")).items  # the scanned path
        for order in ("asc", "desc"):
            expected_attempts = sort_and_page(attempts, sort_by="sequence_id", sort_order=order, limit=1, offset=1)
            got_attempts = await store.query_attempts(x.rollout_id, sort_order=order, limit=1, offset=1)
            assert got_attempts.total == len(attempts)
            assert got_attempts.items == expected_attempts.items
        full = (await store.query_spans(x.rollout_id, name_contains="")).items
        for order in ("asc", "desc"):
            every = await store.query_spans(x.rollout_id, sort_order=order)
            assert every.total == len(full)
            if order == "asc":
                assert [s.sequence_id for s in every.items] == sorted(s.sequence_id for s in full)
            page = await store.query_spans(x.rollout_id, sort_order=order, limit=2, offset=1)
            assert page.items == every.items[1:3]


async def _random_step(store: RedisLightningStore, rng: random.Random, seq: list[int], claims: list[Claim]) -> None:
    rollouts = await _all_rollouts(store)
    live = [x for x in rollouts if isinstance(x, AttemptedRollout)]
    step = rng.choice(
        ["enqueue", "enqueue_many", "start", "dequeue", "claim", "attempt", "rollout", "spans", "finish"] * 2
        + ["claim", "finish"] * 2  # the worker path: claims, then finishes of fresh or stale claims
        + ["sweep", "release", "start_attempt", "delete"]
    )
    retry = RolloutConfig(
        max_attempts=rng.choice([1, 3]),
        retry_condition=["failed", "timeout"],
        timeout_seconds=rng.choice([None, 0.001]),
    )
    if step == "enqueue" or not rollouts:
        mode: Any = rng.choice([None, *ROLLOUT_MODES])
        await store.enqueue_rollout({"i": len(rollouts)}, config=retry, mode=mode)
    elif step == "enqueue_many":
        # One script call: these share a start_time, the tie the indexes must order as the contract does.
        await store.enqueue_many_rollouts(
            [
                EnqueueRolloutRequest(input=i, config=retry, mode=rng.choice([None, "train"]))
                for i in range(rng.randint(2, 4))
            ]
        )
    elif step == "start":
        await store.start_rollout("s", config=retry, worker_id=rng.choice([None, "w-1", "w-2"]))
    elif step == "dequeue":
        await store.dequeue_many_rollouts(limit=rng.randint(1, 3), worker_id=rng.choice([None, "w-1"]))
    elif step == "claim":
        claims += await store.claim(consumer="c-1", worker_id="w-3", count=rng.randint(1, 2), block_ms=1)
    elif step == "attempt" and live:
        target = rng.choice(live)
        await store.update_attempt(target.rollout_id, "latest", status=rng.choice(ATTEMPT_STATUSES))
    elif step == "rollout":
        changes: dict[str, Any] = rng.choice([{"mode": rng.choice([None, *ROLLOUT_MODES])}, {}])
        await store.update_rollout(rng.choice(rollouts).rollout_id, status=rng.choice(ROLLOUT_STATUSES), **changes)
    elif step == "spans" and live:
        target = rng.choice(live)
        spans = []
        for _ in range(rng.randint(1, 3)):
            seq[0] += 1
            spans.append(
                Span.from_attributes(
                    attributes={},
                    rollout_id=target.rollout_id,
                    attempt_id=target.attempt.attempt_id,
                    sequence_id=rng.choice([seq[0], 1]),
                    name="step",
                )
            )
        await store.add_many_spans(spans)
    elif step == "finish" and claims:
        # A worker's end (finish.lua); the claim may be stale by now (lease lost, rollout deleted).
        claim = claims.pop(rng.randrange(len(claims)))
        ar = claim.rollout
        spans = [
            Span.from_attributes(
                attributes={},
                rollout_id=ar.rollout_id,
                attempt_id=ar.attempt.attempt_id,
                sequence_id=rng.choice([-1, 5]),  # -1: numbered by the script
                name="finish",
            )
            for _ in range(rng.randint(0, 2))
        ]
        finish = Finish("c-1", claim, rng.choice(["succeeded", "failed", "timeout"]), spans)
        await store.leases.finish_many([finish])
    elif step == "sweep":
        await asyncio.sleep(0.002)
        await store.sweep()
    elif step == "release" and live:
        target = rng.choice(live)
        await store.release(target.rollout_id, target.attempt.attempt_id)
    elif step == "start_attempt":
        await store.start_attempt(rng.choice(rollouts).rollout_id, worker_id="w-2")
    elif step == "delete":
        await store.delete_rollouts([x.rollout_id for x in rng.sample(rollouts, min(3, len(rollouts)))])


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_indexes_equal_a_full_scan_after_random_transitions(make_store: StoreFactory, seed: int) -> None:
    # Sweeps only when a step says so: a lazy one between the scan and the query would change the answer.
    store = make_store(lease_seconds=None, scan_debounce_seconds=3600)
    rng = random.Random(seed)
    seq = [10]
    claims: list[Claim] = []
    for step in range(1, STEPS + 1):
        await _random_step(store, rng, seq, claims)
        if step % CHECK_EVERY == 0:
            await assert_indexes_match_records(store)
            await assert_queries_match_scan(store, rng)
    await store.purge()
    assert await _keys(store, "") == []


async def test_a_namespace_without_end_time_indexes_still_sorts_by_end_time(store: RedisLightningStore) -> None:
    """Data written before the end_time indexes existed: the store notices and scans instead."""
    first = await store.start_rollout("a")
    await store.enqueue_rollout("b")
    await store.update_attempt(first.rollout_id, "latest", status="succeeded")
    await store._redis.delete(store.keys.open_rollouts, store.keys.ended_rollouts, store.keys.end_index("succeeded"))
    for query in ({"sort_by": "end_time"}, {"sort_by": "end_time", "status_in": ["succeeded"]}):
        got = await store.query_rollouts(**query, limit=1)
        expected = sort_and_page(await _all_rollouts(store), sort_by="end_time", sort_order="asc", limit=-1, offset=0)
        expected_items = [x for x in expected.items if "status_in" not in query or x.status == "succeeded"]
        assert got.total == len(expected_items)
        assert [x.rollout_id for x in got.items] == [x.rollout_id for x in expected_items[:1]]


async def test_a_trace_without_its_order_index_is_still_paged_in_sequence_order(
    store: RedisLightningStore,
) -> None:
    started = await store.start_rollout("a")
    rid, aid = started.rollout_id, started.attempt.attempt_id
    await store.add_many_spans(
        [
            Span.from_attributes(attributes={}, rollout_id=rid, attempt_id=aid, sequence_id=n, name="s")
            for n in (3, 1, 2)
        ]
    )
    await store._redis.delete(store.keys.span_order(rid, aid))
    page = await store.query_spans(rid, "latest", limit=2, offset=1)
    assert page.total == 3
    assert [s.sequence_id for s in page.items] == [2, 3]


async def test_a_page_reads_only_its_rollouts_and_spans(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O(page), not O(N): the records decoded for a page of 2 are those 2 (the catch of a scan coming back)."""
    await store.enqueue_many_rollouts([EnqueueRolloutRequest(input=i) for i in range(30)])
    started = await store.start_rollout("traced")
    rid, aid = started.rollout_id, started.attempt.attempt_id
    await store.add_many_spans(
        [
            Span.from_attributes(attributes={}, rollout_id=rid, attempt_id=aid, sequence_id=n, name="s")
            for n in range(40)
        ]
    )
    await store.update_attempt(rid, aid, status="succeeded")
    read: list[int] = []
    original = store.transitions.read_rollouts

    async def counting(ids: Any) -> Any:
        read.append(len(ids))
        return await original(ids)

    monkeypatch.setattr(store.transitions, "read_rollouts", counting)
    decoded: list[str] = []
    span_from_blob = codec.span_from_blob

    def counting_decode(blob: bytes, *, key: str) -> Span:
        decoded.append(key)
        return span_from_blob(blob, key=key)

    monkeypatch.setattr(codec, "span_from_blob", counting_decode)
    for query in ({}, {"sort_order": "desc"}, {"status_in": ["queuing", "succeeded"]}, {"sort_by": "end_time"}):
        read.clear()
        page = await store.query_rollouts(**query, limit=2, offset=5)
        assert page.total == 31
        assert len(page.items) == 2 and sum(read) == 2, (query, read)
    spans = await store.query_spans(rid, "latest", limit=2, offset=10)
    assert [s.sequence_id for s in spans.items] == [10, 11] and spans.total == 40
    assert len(decoded) == 2


async def test_a_planted_index_member_that_is_no_id_lists_nothing(store: RedisLightningStore) -> None:
    real = await store.enqueue_rollout("a")
    # A member with ':' names a key no id can name; here a hash planted there looks like a rollout.
    fields = await store._redis.hgetall(store.keys.rollout(real.rollout_id))
    await store._redis.hset(store.keys.rollout("evil:x"), mapping={**fields, b"rollout_id": b"evil:x"})
    await store._redis.zadd(store.keys.all_rollouts, {"evil:x": real.start_time + 1})
    page = await store.query_rollouts(limit=10)
    assert [r.rollout_id for r in page.items] == [real.rollout_id]


async def test_delete_rollouts_removes_terminal_ones_with_every_key_and_index_entry(
    store: RedisLightningStore,
) -> None:
    done = await store.start_rollout("done", mode="train")
    rid, aid = done.rollout_id, done.attempt.attempt_id
    await store.add_many_spans(
        [Span.from_attributes(attributes={}, rollout_id=rid, attempt_id=aid, sequence_id=n, name="s") for n in (1, 2)]
    )
    await store.update_attempt(rid, aid, status="succeeded")
    queued = await store.enqueue_rollout("queued")
    running = await store.start_rollout("running")
    # Terminal by hand while its attempt still runs: its worker still reports into it.
    await store.update_rollout(running.rollout_id, status="cancelled")
    # Terminal by hand while queued: its stream entry must go with it.
    cancelled = await store.enqueue_rollout("cancelled")
    await store.update_rollout(cancelled.rollout_id, status="cancelled")
    ids = [rid, queued.rollout_id, running.rollout_id, cancelled.rollout_id, "ro-missing"]
    assert await store.delete_rollouts(ids) == 2
    assert await store.get_rollout_by_id(rid) is None and await store.get_rollout_by_id(cancelled.rollout_id) is None
    assert await store.get_rollout_by_id(queued.rollout_id) is not None
    assert await store.get_rollout_by_id(running.rollout_id) is not None
    leftovers = [k for k in await _keys(store, "") if rid in k or cancelled.rollout_id in k]
    assert leftovers == []
    await assert_indexes_match_records(store)
    stats = await store.statistics()
    assert stats["total_rollouts"] == 2 and stats["total_spans"] == 0 and stats["total_attempts"] == 1
    assert await store._redis.xlen(store.keys.queue) == 1  # the queued rollout's entry only
    claimed = await store.dequeue_rollout()
    assert claimed is not None and claimed.rollout_id == queued.rollout_id
    with pytest.raises(ValueError, match="bad:id"):
        await store.delete_rollouts(["bad:id"])
