"""Spans: validation of their ids, spans as heartbeats, promotion of attempts and rollouts, duplicates."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.types import AttemptedRollout, RolloutConfig, Span, SpanCoreFields

SpanFactory = Callable[..., Span]
SPAN_WRITERS = ["add_span", "add_many_spans", "add_otel_span"]


async def write_span(store: RedisLightningStore, writer: str, span: Span) -> Span | None:
    """Store `span` through the named API and return what the store says it kept."""
    if writer == "add_span":
        return await store.add_span(span)
    if writer == "add_many_spans":
        stored = await store.add_many_spans([span])
        return stored[0] if stored else None
    return await store.add_otel_span(span.rollout_id, span.attempt_id, span, sequence_id=span.sequence_id)


@pytest.mark.parametrize("writer", SPAN_WRITERS)
async def test_span_on_an_unknown_rollout_raises_value_error(
    store: RedisLightningStore, make_span: SpanFactory, writer: str
) -> None:
    with pytest.raises(ValueError, match=re.escape("Rollout ro-missing not found")):
        await write_span(store, writer, make_span("ro-missing", "at-missing"))


@pytest.mark.parametrize("writer", SPAN_WRITERS)
async def test_span_on_an_unknown_attempt_raises_value_error(
    store: RedisLightningStore, make_span: SpanFactory, writer: str
) -> None:
    started = await store.start_rollout("task")

    with pytest.raises(ValueError, match=re.escape("Attempt at-missing not found")):
        await write_span(store, writer, make_span(started.rollout_id, "at-missing"))
    assert await store.query_spans(started.rollout_id) == []


@pytest.mark.parametrize("writer", SPAN_WRITERS)
async def test_stored_span_sets_the_attempt_heartbeat_to_now(
    store: RedisLightningStore, make_span: SpanFactory, writer: str
) -> None:
    started = await store.start_rollout("task")
    before = time.time()

    await write_span(store, writer, make_span(started.rollout_id, started.attempt.attempt_id))

    heartbeat = (await store.get_latest_attempt(started.rollout_id)).last_heartbeat_time
    assert heartbeat is not None
    assert before <= heartbeat <= time.time()


async def test_every_span_refreshes_the_heartbeat(store: RedisLightningStore, make_span: SpanFactory) -> None:
    started = await store.start_rollout("task")
    await store.add_span(make_span(started.rollout_id, started.attempt.attempt_id, 1))
    first = (await store.get_latest_attempt(started.rollout_id)).last_heartbeat_time

    await store.add_span(make_span(started.rollout_id, started.attempt.attempt_id, 2))

    second = (await store.get_latest_attempt(started.rollout_id)).last_heartbeat_time
    assert second > first


@pytest.mark.parametrize("status_before", ["preparing", "unresponsive"])
async def test_span_moves_a_preparing_or_unresponsive_attempt_to_running(
    store: RedisLightningStore, make_span: SpanFactory, status_before: str
) -> None:
    started = await store.start_rollout("task", config=RolloutConfig(max_attempts=1))
    if status_before != "preparing":
        await store.update_attempt(started.rollout_id, "latest", status=status_before)

    await store.add_span(make_span(started.rollout_id, started.attempt.attempt_id))

    assert (await store.get_latest_attempt(started.rollout_id)).status == "running"


@pytest.mark.parametrize("kept_status", ["timeout", "succeeded", "failed"])
async def test_span_keeps_a_timed_out_or_finished_attempt_status_but_records_heartbeat(
    store: RedisLightningStore, make_span: SpanFactory, kept_status: str
) -> None:
    started = await store.start_rollout("task")
    await store.update_attempt(started.rollout_id, "latest", status=kept_status)
    before = time.time()

    await store.add_span(make_span(started.rollout_id, started.attempt.attempt_id))

    attempt = await store.get_latest_attempt(started.rollout_id)
    assert attempt.status == kept_status
    assert attempt.last_heartbeat_time is not None and attempt.last_heartbeat_time >= before


async def test_late_span_on_an_old_attempt_marks_it_running_but_leaves_the_rollout(
    store: RedisLightningStore, make_span: SpanFactory
) -> None:
    config = RolloutConfig(max_attempts=2, retry_condition=["unresponsive"])
    first = await store.start_rollout("task", config=config)
    await store.update_attempt(first.rollout_id, "latest", status="unresponsive")
    retry = await store.dequeue_rollout()
    assert retry is not None and retry.attempt.sequence_id == 2

    await store.add_span(make_span(first.rollout_id, first.attempt.attempt_id))

    attempts = await store.query_attempts(first.rollout_id)
    rollout = await store.get_rollout_by_id(first.rollout_id)
    assert [attempt.status for attempt in attempts] == ["running", "preparing"]
    assert rollout.status == "preparing"
    assert rollout.attempt.attempt_id == retry.attempt.attempt_id


@pytest.mark.parametrize("writer", ["add_span", "add_otel_span"])
async def test_duplicate_span_returns_none_and_logs_an_error(
    store: RedisLightningStore,
    make_span: SpanFactory,
    caplog: pytest.LogCaptureFixture,
    writer: str,
) -> None:
    started = await store.start_rollout("task")
    span = make_span(started.rollout_id, started.attempt.attempt_id, 1, span_id="abcdef0123456789")
    assert await write_span(store, writer, span) is not None

    with caplog.at_level(logging.ERROR):
        duplicate = await write_span(store, writer, span.model_copy(update={"sequence_id": 2}))

    assert duplicate is None
    assert any(
        record.levelno == logging.ERROR and "Duplicated span added" in record.getMessage() for record in caplog.records
    )
    assert len(await store.query_spans(started.rollout_id)) == 1


async def test_same_span_id_on_another_attempt_is_not_a_duplicate(
    store: RedisLightningStore, make_span: SpanFactory
) -> None:
    first = await store.start_rollout("task")
    second = await store.start_attempt(first.rollout_id)

    kept_first = await store.add_span(make_span(first.rollout_id, first.attempt.attempt_id, 1, span_id="s1"))
    kept_second = await store.add_span(make_span(first.rollout_id, second.attempt.attempt_id, 2, span_id="s1"))

    assert kept_first is not None and kept_second is not None
    assert len(await store.query_spans(first.rollout_id)) == 2


async def test_add_many_spans_accepts_spans_of_several_rollouts_and_attempts(
    store: RedisLightningStore, make_span: SpanFactory
) -> None:
    one = await store.start_rollout("one")
    one_retry = await store.start_attempt(one.rollout_id)
    two = await store.start_rollout("two")
    spans = [
        make_span(one.rollout_id, one.attempt.attempt_id, 1, name="one-first"),
        make_span(two.rollout_id, two.attempt.attempt_id, 1, name="two-first"),
        make_span(one.rollout_id, one_retry.attempt.attempt_id, 2, name="one-retry"),
    ]

    stored = await store.add_many_spans(spans)

    assert [span.name for span in stored] == ["one-first", "two-first", "one-retry"]
    assert [span.name for span in await store.query_spans(one.rollout_id)] == ["one-first", "one-retry"]
    assert [span.name for span in await store.query_spans(two.rollout_id)] == ["two-first"]
    assert (await store.get_rollout_by_id(two.rollout_id)).status == "running"


async def test_add_many_spans_skips_duplicates(store: RedisLightningStore, make_span: SpanFactory) -> None:
    started = await store.start_rollout("task")
    aid = started.attempt.attempt_id
    existing = make_span(started.rollout_id, aid, 1, span_id="s-existing")
    await store.add_span(existing)
    fresh = make_span(started.rollout_id, aid, 2, span_id="s-fresh")

    stored = await store.add_many_spans([existing, fresh, fresh.model_copy()])

    assert [span.span_id for span in stored] == ["s-fresh"]
    assert sorted(span.span_id for span in await store.query_spans(started.rollout_id)) == [
        "s-existing",
        "s-fresh",
    ]


async def test_stored_span_reads_back_equal(store: RedisLightningStore, make_span: SpanFactory) -> None:
    started = await store.start_rollout("task")
    span = make_span(
        started.rollout_id,
        started.attempt.attempt_id,
        7,
        name="llm.call",
        parent_id="0123456789abcdef",
        attributes={"prompt_token_ids": [1, 2, 3], "reward": 0.5, "tag": "x"},
    )

    await store.add_span(span)

    assert list(await store.query_spans(started.rollout_id)) == [span]


async def test_add_otel_span_accepts_core_fields_and_fills_in_ids(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")
    core = SpanCoreFields(name="reward", attributes={"value": 1.0})

    stored = await store.add_otel_span(started.rollout_id, started.attempt.attempt_id, core)

    assert stored is not None
    assert (stored.rollout_id, stored.attempt_id, stored.name) == (
        started.rollout_id,
        started.attempt.attempt_id,
        "reward",
    )
    assert stored.sequence_id == 1
    assert stored.span_id and stored.trace_id
    assert [span.span_id for span in await store.query_spans(started.rollout_id)] == [stored.span_id]


@pytest.mark.parametrize(
    "scope",
    ["unknown rollout", "unknown attempt", "latest without attempts"],
)
async def test_query_spans_on_missing_scopes_is_empty(store: RedisLightningStore, scope: str) -> None:
    queued = await store.enqueue_rollout("task")
    queries: dict[str, Callable[[], Awaitable[object]]] = {
        "unknown rollout": lambda: store.query_spans("ro-missing"),
        "unknown attempt": lambda: store.query_spans(queued.rollout_id, "at-missing"),
        "latest without attempts": lambda: store.query_spans(queued.rollout_id, "latest"),
    }

    result = await queries[scope]()

    assert list(result) == []  # type: ignore[call-overload]
    assert result.total == 0  # type: ignore[attr-defined]


async def test_span_written_through_one_store_instance_is_seen_by_another(
    make_store: Callable[..., RedisLightningStore], make_span: SpanFactory
) -> None:
    writer, reader = make_store(), make_store()
    started: AttemptedRollout = await writer.start_rollout("task")

    await reader.add_span(make_span(started.rollout_id, started.attempt.attempt_id))

    assert len(await writer.query_spans(started.rollout_id)) == 1
    assert (await writer.get_rollout_by_id(started.rollout_id)).status == "running"


@pytest.mark.parametrize("writer", ["add_span", "add_many_spans"])
@pytest.mark.parametrize("bad", [-1, 2**52 + 1, 2**60])
async def test_a_sequence_id_out_of_range_is_refused_and_the_counter_stays_usable(
    store: RedisLightningStore, make_span: SpanFactory, writer: str, bad: int
) -> None:
    # Lua numbers are doubles: an id past 2**53 came back from Redis as "1.15e+18" and broke the counter.
    started = await store.start_rollout("task")
    rid, aid = started.rollout_id, started.attempt.attempt_id

    with pytest.raises(ValueError, match=re.escape(f"sequence_id must be an integer from 0 to 2**52, got {bad}")):
        await write_span(store, writer, make_span(rid, aid, bad))

    assert await store.query_spans(rid) == []
    assert await store.get_next_span_sequence_id(rid, aid) == 1
    await write_span(store, writer, make_span(rid, aid, 2**52))
    assert await store.get_next_span_sequence_id(rid, aid) == 2**52 + 1
