"""A worker process of the lifecycle scenario: `python -m bench.worker --backend lq|raw --consumer NAME`.

Each `go` command names a Redis URL and a fresh namespace; the worker claims, writes 3 spans and
succeeds rollouts until `stop`, then reports when it claimed each rollout.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from .workload import SPAN_ATTRIBUTES, SPANS_PER_ROLLOUT, emit, serve, span_name, worker_round


async def lq_round(command: dict[str, Any], stop: asyncio.Event, consumer: str, batch: int) -> dict[str, Any]:
    from lightning_queue import RedisLightningStore
    from lightning_queue.types import Span, SpanCoreFields

    store = RedisLightningStore(command["url"], namespace=command["namespace"], scan_debounce_seconds=10)
    try:
        await store.ping()
        emit({"started": True})

        async def claim(count: int) -> list[tuple[str, str]]:
            claims = await store.claim(consumer=consumer, worker_id=consumer, count=count, block_ms=100)
            return [(c.rollout.rollout_id, c.rollout.attempt.attempt_id) for c in claims]

        async def finish(rid: str, aid: str) -> None:
            # Explicit sequence ids 1..3: a worker that owns its attempt needs no INCR round trip.
            spans = [
                Span.from_core_fields(
                    SpanCoreFields(name=span_name(seq), attributes=SPAN_ATTRIBUTES),
                    rollout_id=rid,
                    attempt_id=aid,
                    sequence_id=seq,
                )
                for seq in range(1, SPANS_PER_ROLLOUT + 1)
            ]
            await store.add_many_spans(spans)
            await store.update_attempt(rid, aid, status="succeeded")

        return await worker_round(claim, finish, stop, batch=batch)
    finally:
        await store.aclose()


async def raw_round(command: dict[str, Any], stop: asyncio.Event, consumer: str, batch: int) -> dict[str, Any]:
    from . import raw_loop

    emit({"started": True})
    return await raw_loop.worker(command["url"], command["namespace"], consumer, stop, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("lq", "raw"), required=True)
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    if args.backend == "lq":
        import lightning_queue  # noqa: F401 - imported before `ready` so the import stays out of timed rounds

    round_fn = lq_round if args.backend == "lq" else raw_round

    async def run_round(command: dict[str, Any], stop: asyncio.Event) -> dict[str, Any]:
        return await round_fn(command, stop, args.consumer, args.batch)

    asyncio.run(serve(run_round))


if __name__ == "__main__":
    main()
