"""Concurrent calls share store round trips, and one bad span fails only its own call."""

from __future__ import annotations

import asyncio

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.llm_proxy.batching import Coalescer, StoreWriter
from lightning_queue.types import Span


async def test_items_submitted_during_a_flush_go_out_together() -> None:
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        await asyncio.sleep(0.01)
        return [item * 10 if item != 3 else ValueError("three") for item in items]

    coalescer: Coalescer[int, int] = Coalescer(flush)
    outcomes = await asyncio.gather(*(coalescer.submit(i) for i in range(6)), return_exceptions=True)

    assert outcomes[:3] == [0, 10, 20] and isinstance(outcomes[3], ValueError) and outcomes[4:] == [40, 50]
    assert sum(len(b) for b in batches) == 6 and len(batches) <= 2


async def test_a_failing_flush_fails_every_waiter_of_that_batch() -> None:
    async def flush(items: list[int]) -> list[int | BaseException]:
        raise ConnectionError("store down")

    coalescer: Coalescer[int, int] = Coalescer(flush)
    with pytest.raises(ConnectionError):
        await coalescer.submit(1)


async def test_a_span_the_store_refuses_fails_alone(store: RedisLightningStore) -> None:
    attempt = await store.start_rollout(input=None)
    writer = StoreWriter(store)
    rid, aid = attempt.rollout_id, attempt.attempt.attempt_id
    good = [Span.from_attributes(attributes={"n": i}, rollout_id=rid, attempt_id=aid, sequence_id=i) for i in (1, 2)]
    orphan = Span.from_attributes(attributes={}, rollout_id="ro-gone", attempt_id="at-gone", sequence_id=3)

    outcomes = await asyncio.gather(
        *(writer.spans.submit(s) for s in [good[0], orphan, good[1]]), return_exceptions=True
    )
    sequence_ids = await asyncio.gather(*(writer.sequence_ids.submit((rid, aid)) for _ in range(5)))

    assert outcomes[0] is None and isinstance(outcomes[1], ValueError) and outcomes[2] is None
    assert len(await store.query_spans(rid)) == 2
    assert sorted(sequence_ids) == [3, 4, 5, 6, 7]
