"""Hostile calls on the finish script and on query_spans' one-call read (read_spans.lua): resends, lost
replies, forgotten scripts, traces in odd shapes. The one-call read must answer exactly as the long way."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.store import codec
from lightning_queue.store.leases import Finish, FinishOutcome
from lightning_queue.store.scripts import script_source
from lightning_queue.types import PaginatedResult, Span
from tests.support.claims import claim_new, span_of
from tests.support.lossy_proxy import LossyProxy
from tests.support.stores import StoreFactory

# --- finish -------------------------------------------------------------------------------------


async def test_a_whole_batch_resent_is_reported_applied_for_each_finish(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30)
    claims = await claim_new(store, 3)
    finishes = [Finish("w1", c, "succeeded", [span_of(c, "a"), span_of(c, "b")]) for c in claims[:2]]
    finishes.append(Finish("w1", claims[2], "succeeded"))  # no spans: the status alone says it was applied
    await store.leases.finish_many(finishes)

    again = await store.leases.finish_many(finishes)

    assert again == [FinishOutcome(held=True, sequence_ids=[], resent=True)] * 3
    for c in claims[:2]:
        assert [s.sequence_id for s in (await store.query_spans(c.rollout.rollout_id)).items] == [1, 2]


async def test_a_finish_sent_twice_in_one_batch_is_stored_once(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store)
    finish = Finish("w1", claim, "succeeded", [span_of(claim, "a")])

    first, second = await store.leases.finish_many([finish, finish])

    assert first == FinishOutcome(held=True, sequence_ids=[1])
    assert second == FinishOutcome(held=True, sequence_ids=[], resent=True)
    assert len((await store.query_spans(claim.rollout.rollout_id)).items) == 1


async def test_scripts_flushed_between_claim_and_a_batch_finish_every_rollout_once(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30)
    claims = await claim_new(store, 3)
    await store._redis.script_flush()

    outcomes = await store.leases.finish_many([Finish("w1", c, "succeeded", [span_of(c, "a")]) for c in claims])

    assert outcomes == [FinishOutcome(held=True, sequence_ids=[1])] * 3
    for c in claims:
        rollout = await store.get_rollout_by_id(c.rollout.rollout_id)
        assert rollout is not None and rollout.status == "succeeded"


async def test_a_finish_of_an_attempt_someone_else_ended_is_not_taken_for_a_resend(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store)
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    await store.update_attempt(rid, aid, status="succeeded")  # by hand, while the worker still runs it

    outcome = await store.leases.finish(Finish("w1", claim, "succeeded", metadata={"note": "mine"}))

    assert outcome == FinishOutcome(held=False, sequence_ids=[])


async def test_a_finish_of_an_attempt_ended_by_hand_with_another_status_writes_nothing(
    make_store: StoreFactory,
) -> None:
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store)
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    await store.update_attempt(rid, aid, status="failed")

    outcome = await store.leases.finish(Finish("w1", claim, "succeeded", [span_of(claim, "late")], {"note": "x"}))

    assert outcome == FinishOutcome(held=False, sequence_ids=[])
    assert (await store.query_spans(rid)).items == []
    attempt = await store.get_latest_attempt(rid)
    assert attempt is not None and attempt.status == "failed" and attempt.metadata != {"note": "x"}


async def test_a_finish_of_a_purged_rollout_raises_not_found_and_writes_nothing(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30)
    [claim, other] = await claim_new(store, 2)
    await store._redis.delete(store.keys.rollout(claim.rollout.rollout_id))

    gone, kept = await store.leases.finish_many(
        [Finish("w1", c, "succeeded", [span_of(c, "a")]) for c in (claim, other)]
    )

    assert isinstance(gone, ValueError) and "not found" in str(gone)
    assert kept == FinishOutcome(held=True, sequence_ids=[1])
    assert await store._redis.hlen(store.keys.spans(claim.rollout.rollout_id)) == 0


async def test_explicit_ids_zero_and_equal_to_each_other_are_kept_and_fresh_ids_come_from_the_counter(
    make_store: StoreFactory,
) -> None:
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store)
    spans = [
        span_of(claim, "zero", 0),
        span_of(claim, "five", 5),
        span_of(claim, "five-too", 5),
        span_of(claim, "fresh"),
    ]

    outcome = await store.leases.finish(Finish("w1", claim, "succeeded", spans))

    assert outcome.sequence_ids == [1]
    stored = (await store.query_spans(claim.rollout.rollout_id)).items
    assert sorted((s.sequence_id, s.name) for s in stored) == [(0, "zero"), (1, "fresh"), (5, "five"), (5, "five-too")]
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    assert await store.get_next_span_sequence_id(rid, aid) == 6  # raised past the explicit ids


# --- query_spans: the one-call read against the long way ------------------------------------------


async def _both_ways(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch, rid: str, *args: Any, **kwargs: Any
) -> tuple[PaginatedResult[Span], PaginatedResult[Span]]:
    fast = await store.query_spans(rid, *args, **kwargs)
    with monkeypatch.context() as m:

        async def never(*_: Any) -> None:
            return None

        m.setattr(store, "_span_page_in_one_call", never)
        slow = await store.query_spans(rid, *args, **kwargs)
    return fast, slow


def _seen(page: PaginatedResult[Span]) -> tuple[int, list[tuple[str, str, int]]]:
    return page.total, [(s.attempt_id, s.span_id, s.sequence_id) for s in page.items]


async def _trace(store: RedisLightningStore, per_attempt: list[int], *, seq: Any = None) -> tuple[str, list[str]]:
    """A rollout with len(per_attempt) attempts, the k-th holding per_attempt[k] spans."""
    started = await store.start_rollout("traced")
    rid, aids = started.rollout_id, [started.attempt.attempt_id]
    for _ in per_attempt[1:]:
        await store.update_attempt(rid, "latest", status="failed")
        aids.append((await store.start_attempt(rid)).attempt.attempt_id)
    n = 0
    for aid, count in zip(aids, per_attempt, strict=True):
        spans = []
        for _ in range(count):
            n += 1
            spans.append(
                Span.from_attributes(
                    attributes={},
                    rollout_id=rid,
                    attempt_id=aid,
                    sequence_id=n if seq is None else seq(n),
                    name="s",
                    span_id=f"sp-{n:05d}",
                )
            )
        if spans:
            await store.add_many_spans(spans)
    return rid, aids


PAGES = [(-1, 0), (0, 0), (1, 0), (200, 0), (201, 0), (-1, 1), (-1, 200), (200, 1), (1, 199), (5, 201), (3, 500)]


@pytest.mark.parametrize("count", [0, 1, 199, 200, 201])
async def test_one_attempt_pages_around_the_chunk_size_answer_as_the_long_way(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    rid, aids = await _trace(store, [count], seq=lambda n: n // 3)  # equal ids: ordered by span id
    for attempt in (None, "latest", aids[0], "at-none"):
        for limit, offset in PAGES:
            fast, slow = await _both_ways(store, monkeypatch, rid, attempt, limit=limit, offset=offset)
            assert _seen(fast) == _seen(slow), (attempt, limit, offset)
            held = 0 if attempt == "at-none" else count
            assert len(fast.items) == max(0, min(held - offset, held if limit < 0 else limit))


@pytest.mark.parametrize("per_attempt", [[3, 0], [0, 3], [2, 3], [2, 2, 0], [0, 0, 4], [0, 0]])
async def test_traces_over_several_attempts_answer_as_the_long_way(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch, per_attempt: list[int]
) -> None:
    rid, aids = await _trace(store, per_attempt)
    for attempt in (None, "latest", "", *aids):
        for limit, offset in ((-1, 0), (2, 1), (0, 0), (1, 5)):
            fast, slow = await _both_ways(store, monkeypatch, rid, attempt, limit=limit, offset=offset)
            assert _seen(fast) == _seen(slow), (attempt, limit, offset)


async def test_a_rollout_without_attempts_or_unknown_answers_as_the_long_way(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued = (await store.enqueue_rollout("q")).rollout_id
    for rid in (queued, "ro-unknown"):
        for attempt in (None, "latest", "at-x", ""):
            fast, slow = await _both_ways(store, monkeypatch, rid, attempt)
            assert _seen(fast) == _seen(slow) == (0, []), (rid, attempt)


async def test_a_corrupt_or_missing_span_blob_is_skipped_as_the_long_way_skips_it(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid, [aid] = await _trace(store, [5])
    key = store.keys.spans(rid)
    await store._redis.hset(key, f"{aid}:sp-00002", b"\xc1 not msgpack")
    await store._redis.hset(key, f"{aid}:sp-00003", codec.pack({"name": 7}))  # msgpack, not a span
    await store._redis.hset(key, f"{aid}:sp-00004", b"")

    fast, slow = await _both_ways(store, monkeypatch, rid)

    assert _seen(fast) == _seen(slow)
    assert [s.span_id for s in fast.items] == ["sp-00001", "sp-00005"]


async def test_a_span_index_entry_without_its_blob_answers_as_the_long_way(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid, [aid] = await _trace(store, [4])
    await store._redis.hdel(store.keys.spans(rid), f"{aid}:sp-00002")
    # And one stored span that no order index names, so the counts agree again.
    await store._redis.hset(
        store.keys.spans(rid), f"{aid}:sp-stray", (await store._redis.hget(store.keys.spans(rid), f"{aid}:sp-00001"))
    )

    fast, slow = await _both_ways(store, monkeypatch, rid)

    assert _seen(fast) == _seen(slow)


@pytest.mark.parametrize("wrong", ["spans", "order", "attempts", "rollout"])
async def test_a_key_of_the_wrong_type_reads_as_the_long_way(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch, wrong: str
) -> None:
    rid, [aid] = await _trace(store, [3])
    key = {
        "spans": store.keys.spans(rid),
        "order": store.keys.span_order(rid, aid),
        "attempts": store.keys.attempts(rid),
        "rollout": store.keys.rollout(rid),
    }[wrong]
    await store._redis.delete(key)
    await store._redis.set(key, "not the right type")
    outcomes = []
    for attempt in (None, "latest"):
        try:
            fast, slow = await _both_ways(store, monkeypatch, rid, attempt)
            outcomes.append((_seen(fast), _seen(slow)))
        except Exception as exc:  # both ways must fail alike: compare with the long way alone
            with monkeypatch.context() as m:

                async def never(*_: Any) -> None:
                    return None

                m.setattr(store, "_span_page_in_one_call", never)
                with pytest.raises(type(exc)):
                    await store.query_spans(rid, attempt)
            outcomes.append(None)
    for outcome in outcomes:
        if outcome is not None:
            assert outcome[0] == outcome[1]


# --- a reply lost on the wire ---------------------------------------------------------------------


@pytest.mark.parametrize("span_bytes", [10, 200_000])
async def test_a_batch_whose_reply_was_lost_is_resent_and_every_finish_stored_once(
    redis_url: str, span_bytes: int
) -> None:
    """The proxy cuts the connection once Redis got the pipeline: with big spans Redis reads it in several
    parts, so some finishes ran and some did not when the connection died. The resend must sort them out."""
    proxy = LossyProxy(redis_url)
    await proxy.start()
    store = RedisLightningStore(
        proxy.url, namespace=f"t-{uuid.uuid4().hex[:10]}", lease_seconds=30.0, scan_debounce_seconds=3600
    )
    try:
        claims = await claim_new(store, 6)
        finishes = [
            Finish("w1", c, "succeeded", [span_of(c, "a"), span_of(c, "x" * span_bytes), span_of(c, "b")])
            for c in claims
        ]
        proxy.drop_reply_to(str(await store._redis.script_load(script_source("finish"))).encode())

        outcomes = await store.leases.finish_many(finishes)

        assert proxy.dropped == 1, "the proxy lost no reply: the test proves nothing"
        for claim, outcome in zip(claims, outcomes, strict=True):
            assert isinstance(outcome, FinishOutcome) and outcome.held, outcome
            rid = claim.rollout.rollout_id
            assert [s.sequence_id for s in (await store.query_spans(rid)).items] == [1, 2, 3]
            rollout = await store.get_rollout_by_id(rid)
            assert rollout is not None and rollout.status == "succeeded"
        assert await store.pending_entries() == 0
    finally:
        await store.purge()
        await store.aclose()
        await proxy.close()


@pytest.mark.parametrize("explicit", [10**8, 3 * 10**9, 10**15, 2**52 - 1])
async def test_a_round_or_large_explicit_id_leaves_a_counter_later_reservations_increment(
    make_store: StoreFactory, explicit: int
) -> None:
    # Lua holds numbers as doubles: the counter it writes back must stay an integer Redis can INCR.
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store)
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id

    outcome = await store.leases.finish(
        Finish("w1", claim, "succeeded", [span_of(claim, "given", explicit), span_of(claim, "fresh")])
    )

    assert outcome.sequence_ids == [1]
    assert await store.get_next_span_sequence_id(rid, aid) == explicit + 1
    stored = (await store.query_spans(rid)).items
    assert [(s.name, s.sequence_id) for s in stored] == [("fresh", 1), ("given", explicit)]
