"""`Leases.finish_many`: a worker's lease check, spans and end of an attempt in one script call, many per round trip."""

from __future__ import annotations

import re

import pytest

from lightning_queue.store.leases import Finish, FinishOutcome
from lightning_queue.store.transitions import FinishRequest, NewSpan
from lightning_queue.types import RolloutConfig
from tests.support.claims import claim_new, span_of
from tests.support.stores import StoreFactory


def _outcome(result: FinishOutcome | Exception) -> FinishOutcome:
    assert isinstance(result, FinishOutcome), result
    return result


async def test_finish_numbers_the_spans_after_the_counter_stores_them_and_ends_the_attempt(
    make_store: StoreFactory,
) -> None:
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store)
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    # Another writer (the LLM proxy, an agent's own add_span) took ids while the rollout ran.
    assert await store.get_next_span_sequence_id(rid, aid) == 1
    spans = [span_of(claim, "a"), span_of(claim, "b", reward=1.0), span_of(claim, "c")]

    outcome = await store.leases.finish(Finish("w1", claim, "succeeded", spans, {"note": "ok"}))

    assert outcome == FinishOutcome(held=True, sequence_ids=[2, 3, 4])
    stored = (await store.query_spans(rid)).items
    assert [(s.name, s.sequence_id, s.attributes) for s in stored] == [
        ("a", 2, {}),
        ("b", 3, {"reward": 1.0}),
        ("c", 4, {}),
    ]
    assert await store.get_next_span_sequence_id(rid, aid) == 5
    attempt = await store.get_latest_attempt(rid)
    assert attempt is not None and attempt.status == "succeeded" and attempt.metadata == {"note": "ok"}
    rollout = await store.get_rollout_by_id(rid)
    assert rollout is not None and rollout.status == "succeeded"
    assert await store.pending_entries() == 0  # the entry went with the end
    [worker] = await store.query_workers()
    assert worker.status == "idle"


async def test_numbered_spans_take_the_counters_next_ids_and_explicit_ones_keep_theirs(
    make_store: StoreFactory,
) -> None:
    # As a reservation before the write gave them: a reward span returned with an explicit id stays after
    # a reward traced earlier (numbered), whichever runtime stores them.
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store)
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    spans = [span_of(claim, "traced"), span_of(claim, "explicit", seq=7), span_of(claim, "fresh")]

    outcome = await store.leases.finish(Finish("w1", claim, "succeeded", spans))

    assert outcome.sequence_ids == [1, 2]
    stored = (await store.query_spans(rid)).items
    assert [(s.name, s.sequence_id) for s in stored] == [("traced", 1), ("fresh", 2), ("explicit", 7)]
    assert await store.get_next_span_sequence_id(rid, aid) == 8  # raised past the explicit id


async def test_a_large_span_is_numbered_intact(make_store: StoreFactory) -> None:
    # Long traces: token ids make a span of hundreds of KB (msgpack's 32-bit map and array headers).
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store)
    tokens = list(range(70_000))
    outcome = await store.leases.finish(Finish("w1", claim, "succeeded", [span_of(claim, "llm", token_ids=tokens)]))

    assert outcome.sequence_ids == [1]
    [span] = (await store.query_spans(claim.rollout.rollout_id)).items
    assert span.sequence_id == 1 and span.attributes["token_ids"] == tokens


async def test_finish_after_the_lease_was_lost_writes_nothing(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store)
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    # The watchdog reclaimed it (here: released, as a worker shutting down would): the attempt is over.
    assert await store.release(rid, aid)

    outcome = await store.leases.finish(Finish("w1", claim, "succeeded", [span_of(claim, "late")]))

    assert outcome == FinishOutcome(held=False, sequence_ids=[])
    assert await store.query_spans(rid) == []
    [attempt] = await store.query_attempts(rid)
    assert attempt.status == "unresponsive"
    rollout = await store.get_rollout_by_id(rid)
    assert rollout is not None and rollout.status == "requeuing"


async def test_a_resent_finish_is_reported_applied_and_changes_nothing(make_store: StoreFactory) -> None:
    # redis-py resends a command whose reply it lost; the second run must not report a lost lease.
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store)
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    finish = Finish("w1", claim, "succeeded", [span_of(claim, "a"), span_of(claim, "b")])
    assert (await store.leases.finish(finish)).sequence_ids == [1, 2]

    again = await store.leases.finish(finish)

    assert again == FinishOutcome(held=True, sequence_ids=[], resent=True)
    assert [s.sequence_id for s in (await store.query_spans(rid)).items] == [1, 2]
    assert await store.get_next_span_sequence_id(rid, aid) == 3
    # A different end of the same attempt is not a resend: the lease is gone.
    other = await store.leases.finish(Finish("w1", claim, "failed", [span_of(claim, "x")]))
    assert other.held is False


async def test_each_finish_of_a_batch_gets_its_own_outcome(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30, max_span_bytes=10_000)
    good, lost, too_big, foreign = await claim_new(store, 4)
    await store.release(lost.rollout.rollout_id, lost.rollout.attempt.attempt_id)
    wrong = span_of(good, "of another attempt")

    results = await store.leases.finish_many(
        [
            Finish("w1", good, "succeeded", [span_of(good, "ok")]),
            Finish("w1", lost, "succeeded", [span_of(lost, "late")]),
            Finish("w1", too_big, "succeeded", [span_of(too_big, "big", blob="x" * 20_000)]),
            Finish("w1", foreign, "succeeded", [wrong]),
        ]
    )

    assert _outcome(results[0]).sequence_ids == [1]
    assert _outcome(results[1]).held is False
    assert isinstance(results[2], ValueError) and "over the limit of 10000 bytes" in str(results[2])
    assert isinstance(results[3], ValueError) and f"is not of rollout {foreign.rollout.rollout_id}" in str(results[3])
    # The refused ones wrote nothing and stay running, for the worker to fail them or the watchdog to reclaim.
    for claim in (too_big, foreign):
        assert await store.query_spans(claim.rollout.rollout_id) == []
        attempt = await store.get_latest_attempt(claim.rollout.rollout_id)
        assert attempt is not None and attempt.status == "preparing"
    assert await store.pending_entries() == 2


async def test_a_failed_end_follows_the_retry_rule(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30)
    await store.enqueue_rollout("task", config=RolloutConfig(max_attempts=2, retry_condition=["failed"]))
    [claim] = await store.claim(consumer="w1", worker_id="w1", count=1, block_ms=10)

    await store.leases.finish(Finish("w1", claim, "failed", [span_of(claim, "agentlightning.exception")]))

    rollout = await store.get_rollout_by_id(claim.rollout.rollout_id)
    assert rollout is not None and rollout.status == "requeuing"
    [again] = await store.claim(consumer="w2", worker_id="w2", count=1, block_ms=10)
    assert again.rollout.attempt.sequence_id == 2


async def test_finish_of_an_unknown_rollout_or_bad_status_raises(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store)
    with pytest.raises(ValueError, match="attempt status"):
        await store.leases.finish(Finish("w1", claim, "done", []))  # type: ignore[arg-type]
    await store.purge()
    with pytest.raises(ValueError, match=re.escape(f"Rollout {claim.rollout.rollout_id} not found")):
        await store.leases.finish(Finish("w1", claim, "succeeded", []))


async def test_finish_loads_its_script_again_after_redis_forgot_it(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30)
    claims = await claim_new(store, 2)
    await store.leases.finish(Finish("w1", claims[0], "succeeded", [span_of(claims[0], "a")]))
    await store._redis.script_flush()  # a restarted Redis without persistence

    outcome = await store.leases.finish(Finish("w1", claims[1], "succeeded", [span_of(claims[1], "b")]))

    assert outcome.sequence_ids == [1]
    assert [s.name for s in (await store.query_spans(claims[1].rollout.rollout_id)).items] == ["b"]


async def test_the_script_refuses_a_span_to_number_without_the_placeholder(make_store: StoreFactory) -> None:
    # Defence in depth: overwriting the last 8 bytes of any other blob would corrupt it.
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store)
    rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
    packed = store._new_span(span_of(claim, "plain", seq=1))
    unnumbered = NewSpan(rid, aid, packed.span_id, None, packed.blob)

    [reply] = await store.transitions.finish_many(
        [FinishRequest("w1", claim.entry_id, rid, aid, "succeeded", None, [unnumbered])]
    )

    assert isinstance(reply, ValueError) and packed.span_id in str(reply)
    assert await store.query_spans(rid) == []
    attempt = await store.get_latest_attempt(rid)
    assert attempt is not None and attempt.status == "preparing"


async def test_finish_by_another_consumer_writes_nothing(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store, consumer="w1")

    outcome = await store.leases.finish(Finish("w2", claim, "succeeded", [span_of(claim, "not mine")]))

    assert outcome.held is False
    assert await store.query_spans(claim.rollout.rollout_id) == []
    assert await store.pending_entries() == 1  # still w1's


async def test_an_explicit_sequence_id_out_of_range_refuses_the_finish(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store)

    [result] = await store.leases.finish_many([Finish("w1", claim, "succeeded", [span_of(claim, "x", seq=2**60)])])

    assert isinstance(result, ValueError) and "got 1152921504606846976" in str(result)
    attempt = await store.get_latest_attempt(claim.rollout.rollout_id)
    assert attempt is not None and attempt.status == "preparing"  # nothing written: the worker fails it


async def test_a_batch_of_long_traces_goes_in_pipelines_of_bounded_size(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning_queue.store import transitions

    monkeypatch.setattr(transitions, "PIPELINE_BYTES", 20_000)
    store = make_store(lease_seconds=30, scan_debounce_seconds=3600)  # no sweep's pipelines in the count
    first, *claims = await claim_new(store, 6)
    await store.leases.finish(Finish("w1", first, "succeeded"))  # the script is loaded before counting
    pipelines = 0
    real_pipeline = store._redis.pipeline

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal pipelines
        pipelines += 1
        return real_pipeline(*args, **kwargs)  # type: ignore[arg-type]

    script = await store._script("finish")
    monkeypatch.setattr(script.registered_client, "pipeline", counted)
    finishes = [Finish("w1", c, "succeeded", [span_of(c, "big", blob="x" * 8_000)]) for c in claims]

    results = await store.leases.finish_many(finishes)

    assert all(_outcome(r).sequence_ids == [1] for r in results)
    assert pipelines == 3  # 2 + 2 + 1 spans of ~8 KB under a 20 KB bound
    for c in claims:
        assert [s.name for s in (await store.query_spans(c.rollout.rollout_id)).items] == ["big"]


async def test_a_span_whose_id_is_stored_already_is_skipped_and_counted(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30)
    [claim] = await claim_new(store)
    seen = span_of(claim, "seen", seq=1)
    await store.add_span(seen)  # e.g. stored by another writer of the attempt before the end

    outcome = await store.leases.finish(Finish("w1", claim, "succeeded", [seen, span_of(claim, "new")]))

    assert outcome.duplicates == 1 and outcome.sequence_ids == [2]
    stored = (await store.query_spans(claim.rollout.rollout_id)).items
    assert [(s.name, s.sequence_id) for s in stored] == [("seen", 1), ("new", 2)]
