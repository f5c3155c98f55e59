"""Scenario `memory`: Redis memory per finished rollout and per span, small and large spans.

On a fresh redis-server, N rollouts go through the worker path (enqueue, claim, spans, succeed) in
steps; `INFO memory` `used_memory` is read between the steps, so the deltas divide into bytes per
rollout (its hash, attempt, indexes, the `done` entry) and bytes per span (the span blob, its entry in
the order index, and the rollout's span keys shared by its 3 spans). `MEMORY USAGE` of one rollout's
keys shows where the bytes go. Large spans carry 10k prompt token ids, as an LLM call's span does.
"""

from __future__ import annotations

import random
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from .children import RedisServer
from .stats import table
from .workload import SPAN_ATTRIBUTES, SPANS_PER_ROLLOUT, span_name, task_input

LARGE_TOKENS = 10_000


@dataclass
class MemoryOptions:
    rollouts: int = 2000
    large_rollouts: int = 200
    workdir: Path = field(default_factory=lambda: Path("bench/results/work"))


def _large_attributes(rng: random.Random) -> dict[str, Any]:
    # Token ids of a 50k vocabulary: msgpack stores most as 3-byte integers.
    return {
        **SPAN_ATTRIBUTES,
        "gen_ai.request.model": "stand-in",
        "prompt_token_ids": [rng.randrange(50_000) for _ in range(LARGE_TOKENS)],
        "response_token_ids": [rng.randrange(50_000) for _ in range(64)],
    }


async def _used(client: aioredis.Redis) -> int:
    # Client query/output buffers grow and shrink with the size of the last command (a 10k-token span
    # batch is ~100 KB); counting them made a few-rollout delta negative. Only stored data counts.
    info = await client.info("memory")
    return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0)) - int(info.get("mem_clients_slaves", 0))


async def _measure(url: str, rollouts: int, large: bool) -> dict[str, Any]:
    from lightning_queue import RedisLightningStore
    from lightning_queue.store.leases import Claim
    from lightning_queue.types import EnqueueRolloutRequest, Span, SpanCoreFields

    namespace = f"bench-mem-{uuid.uuid4().hex[:10]}"
    store = RedisLightningStore(url, namespace=namespace, scan_debounce_seconds=3600)
    client = aioredis.Redis.from_url(url)
    rng = random.Random(7)
    try:
        # Warm up: scripts, the stream and its group, the indexes exist before the baseline reading.
        # Its span write also runs the store's one lazy sweep and loads the span script, which must not
        # land in the span delta (they made a quick run's bytes per span negative).
        await store.enqueue_many_rollouts([EnqueueRolloutRequest(input=task_input(-1))])
        for claim in await store.claim(consumer="mem", worker_id="mem", count=1, block_ms=1000):
            rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
            warm = Span.from_core_fields(
                SpanCoreFields(name=span_name(0)), rollout_id=rid, attempt_id=aid, sequence_id=1
            )
            await store.add_many_spans([warm])
            await store.update_attempt(rid, aid, status="succeeded")
        base = await _used(client)
        for first in range(0, rollouts, 100):
            batch = [EnqueueRolloutRequest(input=task_input(i)) for i in range(first, min(first + 100, rollouts))]
            await store.enqueue_many_rollouts(batch)
        claims: list[Claim] = []
        while len(claims) < rollouts:
            got = await store.claim(consumer="mem", worker_id="mem", count=100, block_ms=1000)
            if not got:
                raise RuntimeError(f"only {len(claims)} of {rollouts} rollouts could be claimed")
            claims += got
        before_spans = await _used(client)
        blob_bytes = 0
        for claim in claims:
            rid, aid = claim.rollout.rollout_id, claim.rollout.attempt.attempt_id
            spans = [
                Span.from_core_fields(
                    SpanCoreFields(
                        name=span_name(seq), attributes=_large_attributes(rng) if large else SPAN_ATTRIBUTES
                    ),
                    rollout_id=rid,
                    attempt_id=aid,
                    sequence_id=seq,
                )
                for seq in range(1, SPANS_PER_ROLLOUT + 1)
            ]
            blob_bytes += sum(len(store._pack_limited(s.model_dump(), "span", 1 << 30)) for s in spans)
            await store.add_many_spans(spans)
        after_spans = await _used(client)
        for claim in claims:
            await store.update_attempt(claim.rollout.rollout_id, claim.rollout.attempt.attempt_id, status="succeeded")
        finished = await _used(client)
        sample = claims[0].rollout
        keys = {
            "ro:<rid> (rollout hash)": store.keys.rollout(sample.rollout_id),
            "at:<rid>:<aid> (attempt hash)": store.keys.attempt(sample.rollout_id, sample.attempt.attempt_id),
            "ats:<rid> (attempt index)": store.keys.attempts(sample.rollout_id),
            "sp:<rid> (span blobs)": store.keys.spans(sample.rollout_id),
            "seq:<rid> (sequence counter)": store.keys.sequence(sample.rollout_id),
        }
        usage = {label: await client.memory_usage(key, samples=0) for label, key in keys.items()}
        n_spans = rollouts * SPANS_PER_ROLLOUT
        result = {
            "rollouts": rollouts,
            "spans": n_spans,
            "span_kind": f"large ({LARGE_TOKENS} token ids)" if large else "small",
            "bytes_per_rollout": (before_spans - base + finished - after_spans) / rollouts,
            "bytes_per_span": (after_spans - before_spans) / n_spans,
            "encoded_bytes_per_span": blob_bytes / n_spans,
            "memory_usage_of_one_rollout": usage,
        }
        await store.purge()
        return result
    finally:
        await store.aclose()
        await client.aclose()


async def run(opts: MemoryOptions) -> dict[str, Any]:
    with RedisServer(opts.workdir / "redis") as server:
        small = await _measure(server.url, opts.rollouts, large=False)
        print(f"  memory small: {small['bytes_per_span']:.0f} B/span", file=sys.stderr, flush=True)
        large = await _measure(server.url, opts.large_rollouts, large=True)
        print(f"  memory large: {large['bytes_per_span']:.0f} B/span", file=sys.stderr, flush=True)
    return {
        "scenario": "memory",
        "options": {k: v for k, v in vars(opts).items() if k != "workdir"},
        "small": small,
        "large": large,
    }


def render(result: dict[str, Any]) -> str:
    rows = [
        [
            r["span_kind"],
            r["rollouts"],
            r["bytes_per_rollout"],
            r["bytes_per_span"],
            r["encoded_bytes_per_span"],
            r["bytes_per_span"] / r["encoded_bytes_per_span"],
        ]
        for r in (result["small"], result["large"])
    ]
    out = [
        "Redis memory (INFO used_memory deltas; a finished rollout without spans, then per span)",
        table(
            ["spans", "rollouts", "B / rollout", "B / span", "encoded B / span", "Redis / encoded"],
            rows,
            digits=(0, 0, 0, 0, 0, 2),
        ),
        "",
        "MEMORY USAGE of one rollout's keys (bytes), small / large spans",
        table(
            ["key", "small", "large"],
            [
                [label, size, result["large"]["memory_usage_of_one_rollout"].get(label)]
                for label, size in result["small"]["memory_usage_of_one_rollout"].items()
            ],
        ),
    ]
    return "\n".join(out)
