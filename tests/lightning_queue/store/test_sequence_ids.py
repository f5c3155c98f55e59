"""Span sequence ids: one gap-free counter per rollout, shared by its attempts and both allocation paths."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.types import Span, SpanCoreFields

SpanFactory = Callable[..., Span]


async def test_counter_starts_at_one_and_is_shared_by_all_attempts(store: RedisLightningStore) -> None:
    first = await store.start_rollout("task")
    second = await store.start_attempt(first.rollout_id)

    values = [
        await store.get_next_span_sequence_id(first.rollout_id, first.attempt.attempt_id),
        await store.get_next_span_sequence_id(first.rollout_id, second.attempt.attempt_id),
        await store.get_next_span_sequence_id(first.rollout_id, first.attempt.attempt_id),
    ]

    assert values == [1, 2, 3]


async def test_each_rollout_has_its_own_counter(store: RedisLightningStore) -> None:
    one = await store.start_rollout("one")
    two = await store.start_rollout("two")
    await store.get_next_span_sequence_id(one.rollout_id, one.attempt.attempt_id)
    await store.get_next_span_sequence_id(one.rollout_id, one.attempt.attempt_id)

    assert await store.get_next_span_sequence_id(two.rollout_id, two.attempt.attempt_id) == 1


async def test_get_next_and_add_otel_span_without_id_consume_the_same_counter(
    store: RedisLightningStore,
) -> None:
    started = await store.start_rollout("task")
    rid, aid = started.rollout_id, started.attempt.attempt_id

    first = await store.get_next_span_sequence_id(rid, aid)
    span = await store.add_otel_span(rid, aid, SpanCoreFields(name="auto"))
    third = await store.get_next_span_sequence_id(rid, aid)

    assert span is not None
    assert (first, span.sequence_id, third) == (1, 2, 3)


@pytest.mark.parametrize("writer", ["add_span", "add_many_spans", "add_otel_span"])
async def test_explicit_sequence_id_raises_the_counter_past_it(
    store: RedisLightningStore, make_span: SpanFactory, writer: str
) -> None:
    started = await store.start_rollout("task")
    rid, aid = started.rollout_id, started.attempt.attempt_id
    span = make_span(rid, aid, 10)

    if writer == "add_span":
        await store.add_span(span)
    elif writer == "add_many_spans":
        await store.add_many_spans([span])
    else:
        await store.add_otel_span(rid, aid, span, sequence_id=10)

    assert await store.get_next_span_sequence_id(rid, aid) == 11


async def test_lower_explicit_sequence_id_does_not_lower_the_counter(
    store: RedisLightningStore, make_span: SpanFactory
) -> None:
    started = await store.start_rollout("task")
    rid, aid = started.rollout_id, started.attempt.attempt_id
    await store.add_span(make_span(rid, aid, 10))

    await store.add_span(make_span(rid, aid, 3))

    assert await store.get_next_span_sequence_id(rid, aid) == 11


async def test_unknown_attempt_id_still_consumes_the_rollout_counter(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")

    first = await store.get_next_span_sequence_id(started.rollout_id, "at-unknown")
    second = await store.get_next_span_sequence_id(started.rollout_id, started.attempt.attempt_id)

    assert (first, second) == (1, 2)


async def test_get_many_span_sequence_ids_follows_request_order_per_rollout(store: RedisLightningStore) -> None:
    one = await store.start_rollout("one")
    two = await store.start_rollout("two")
    r1 = (one.rollout_id, one.attempt.attempt_id)
    r2 = (two.rollout_id, two.attempt.attempt_id)

    values = await store.get_many_span_sequence_ids([r1, r2, r1, r1])

    assert list(values) == [1, 1, 2, 3]
    assert await store.get_next_span_sequence_id(*r2) == 2


@pytest.mark.parametrize("mix", ["add_otel_span", "get_next_span_sequence_id", "both"])
async def test_concurrent_allocations_are_unique_and_gap_free(store: RedisLightningStore, mix: str) -> None:
    started = await store.start_rollout("task")
    rid, aid = started.rollout_id, started.attempt.attempt_id

    async def allocate(index: int) -> int:
        use_span = mix == "add_otel_span" or (mix == "both" and index % 2 == 0)
        if use_span:
            span = await store.add_otel_span(rid, aid, SpanCoreFields(name=f"span-{index}"))
            assert span is not None
            return span.sequence_id
        return await store.get_next_span_sequence_id(rid, aid)

    values = await asyncio.gather(*(allocate(index) for index in range(30)))

    assert sorted(values) == list(range(1, 31))
