"""Claimed rollouts and spans of their attempts, for tests of the worker's store calls (claim, finish)."""

from __future__ import annotations

from lightning_queue import RedisLightningStore
from lightning_queue.store.leases import Claim
from lightning_queue.types import Span, SpanCoreFields


async def claim_new(store: RedisLightningStore, n: int = 1, consumer: str = "w1") -> list[Claim]:
    """Enqueue `n` rollouts and claim them all as `consumer` (also its worker id)."""
    for i in range(n):
        await store.enqueue_rollout({"i": i})
    claims = await store.claim(consumer=consumer, worker_id=consumer, count=n, block_ms=10)
    assert len(claims) == n
    return claims


def span_of(claim: Claim, name: str, seq: int = -1, **attributes: object) -> Span:
    """A span of `claim`'s attempt; a negative `seq` leaves its sequence id to the finish script."""
    ar = claim.rollout
    return Span.from_core_fields(
        SpanCoreFields(name=name, attributes=dict(attributes)),
        rollout_id=ar.rollout_id,
        attempt_id=ar.attempt.attempt_id,
        sequence_id=seq,
    )
