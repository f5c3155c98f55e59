"""Scenario `scale`: what a store call costs as a run's history grows to N stored rollouts.

For each N, a fresh redis-server is filled with N rollouts the way a run leaves them: enqueued in
batches of 100 (one script call each, so 100 share a start_time), claimed, and ended 80 % succeeded,
10 % failed, 10 % still queued (a warm-up batch of 100 more is stored first, before the memory
baseline); one more rollout carries a long trace (every 10th span a "tool", the others "llm"),
and N/10 resources snapshots are stored (an async RL run publishes one per policy version). Then each
listed call runs `--repeat` times (after one warm-up) and its p50/p99 are reported, with Redis memory
per rollout (`used_memory` delta over N). The ratios column divides each call's p50 at the largest N by
its p50 at the smallest: O(log N + page) calls stay near 1, O(N) calls grow with N.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from .children import RedisServer
from .memory import _used
from .stats import latency_summary, table

BATCH = 100
TRACE_SPANS = 2000
WAIT_IDS = 1000
TRACE_ATTRS = {"gen_ai.completion": "x" * 200}
# Resources snapshots stored per rollout (one policy version per 10 rollouts).
SNAPSHOTS_PER_ROLLOUT = 0.1


@dataclass
class ScaleOptions:
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    repeat: int = 30
    workdir: Path = field(default_factory=lambda: Path("bench/results/work"))


async def _fill(store: Any, n: int) -> list[str]:
    """N rollouts: 80 % succeeded, 10 % failed, 10 % queued; returns their ids in creation order."""
    from lightning_queue.store.transitions import LEAVE as KEEP
    from lightning_queue.store.transitions import AttemptChanges
    from lightning_queue.types import EnqueueRolloutRequest

    ids: list[str] = []
    for first in range(0, n, BATCH):
        created = await store.enqueue_many_rollouts(
            [EnqueueRolloutRequest(input={"task": i}) for i in range(first, min(first + BATCH, n))]
        )
        ids += [r.rollout_id for r in created]
    to_run = n - n // 10
    ended = 0
    while ended < to_run:
        claimed = await store.dequeue_many_rollouts(limit=min(1000, to_run - ended), worker_id="w-scale")
        if not claimed:
            raise RuntimeError(f"only {ended} of {to_run} rollouts could be claimed")
        calls = []
        for k, r in enumerate(claimed):
            status = "failed" if (ended + k) % 9 == 0 else "succeeded"
            changes = AttemptChanges(status=status, worker_id=KEEP, last_heartbeat_time=None, metadata=KEEP)
            calls.append(store.transitions.update_attempt(r.rollout_id, r.attempt.attempt_id, changes))
        # Concurrent script calls over the client's pool: one round trip's wait for many.
        for i in range(0, len(calls), 200):
            await asyncio.gather(*calls[i : i + 200])
        ended += len(claimed)
    return ids


async def _long_trace(store: Any) -> str:
    from lightning_queue.types import Span

    started = await store.start_rollout({"task": "trace"})
    rid: str = started.rollout_id
    aid: str = started.attempt.attempt_id
    for first in range(0, TRACE_SPANS, 200):
        await store.add_many_spans(
            [
                Span.from_attributes(
                    attributes=TRACE_ATTRS,
                    rollout_id=rid,
                    attempt_id=aid,
                    sequence_id=s,
                    name="tool" if s % 10 == 0 else "llm",
                )
                for s in range(first + 1, first + 201)
            ]
        )
    await store.update_attempt(rid, aid, status="succeeded")
    return rid


async def _snapshots(store: Any, n: int) -> None:
    """N resources snapshots, one `add_resources` each (200 concurrent script calls at a time)."""
    from lightning_queue.types import LLM

    for first in range(0, n, 200):
        await asyncio.gather(
            *(
                store.add_resources({"llm": LLM(endpoint="http://127.0.0.1:1/v1", model=f"policy-v{k}")})
                for k in range(first, min(first + 200, n))
            )
        )


async def _time(call: Callable[[], Awaitable[Any]], repeat: int) -> dict[str, float]:
    await call()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - t0) * 1000)
    return latency_summary(samples)


def _calls(store: Any, ids: list[str], trace: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    waited = ids[-WAIT_IDS:]
    q = store.query_rollouts
    return {
        "query_rollouts limit=10": lambda: q(limit=10),
        "query_rollouts limit=100": lambda: q(limit=100),
        "limit=10 offset=N/2": lambda: q(limit=10, offset=len(ids) // 2),
        "status=succeeded limit=10": lambda: q(status_in=["succeeded"], limit=10),
        "status=failed,queuing limit=100": lambda: q(status_in=["failed", "queuing"], limit=100),
        "sort end_time desc limit=10": lambda: q(sort_by="end_time", sort_order="desc", limit=10),
        "sort start_time desc limit=10": lambda: q(sort_by="start_time", sort_order="desc", limit=10),
        "sort mode limit=10": lambda: q(sort_by="mode", limit=10),
        "status=succeeded sort end_time limit=10": lambda: q(status_in=["succeeded"], sort_by="end_time", limit=10),
        f"query_spans {TRACE_SPANS}-span trace limit=10": lambda: store.query_spans(trace, limit=10, offset=500),
        f"query_spans {TRACE_SPANS} spans name=tool limit=10": lambda: store.query_spans(trace, name="tool", limit=10),
        f"query_spans {TRACE_SPANS} spans sort name limit=10": lambda: store.query_spans(
            trace, sort_by="name", limit=10
        ),
        "query_resources limit=10": lambda: store.query_resources(limit=10),
        "query_resources update_time desc limit=10": lambda: store.query_resources(
            sort_by="update_time", sort_order="desc", limit=10
        ),
        "query_resources id_contains limit=10": lambda: store.query_resources(resources_id_contains="rs-a", limit=10),
        "statistics()": store.statistics,
        f"wait_for_rollouts {WAIT_IDS} ids": lambda: store.wait_for_rollouts(rollout_ids=waited, timeout=0),
    }


async def _measure(url: str, n: int, repeat: int) -> dict[str, Any]:
    from lightning_queue import RedisLightningStore

    store = RedisLightningStore(url, namespace=f"bench-scale-{uuid.uuid4().hex[:8]}", scan_debounce_seconds=3600)
    client = aioredis.Redis.from_url(url)
    try:
        # Warm up (scripts loaded, stream and group, first index nodes) before the memory baseline;
        # these BATCH rollouts are stored on top of the N measured.
        await _fill(store, BATCH)
        base = await _used(client)
        t0 = time.monotonic()
        ids = await _fill(store, n)
        fill_s = time.monotonic() - t0
        used = await _used(client)
        trace = await _long_trace(store)
        await _snapshots(store, int(n * SNAPSHOTS_PER_ROLLOUT))
        stats = await store.statistics()
        calls = {name: await _time(call, repeat) for name, call in _calls(store, ids, trace).items()}
        await store.purge()
        return {
            "rollouts": n,
            "fill_s": fill_s,
            "fill_rollouts_per_s": n / fill_s,
            "bytes_per_rollout": (used - base) / n,
            "resources_snapshots": stats["total_resources"],
            "by_status": stats["rollouts_by_status"],
            "calls_ms": calls,
        }
    finally:
        await store.aclose()
        await client.aclose()


async def run(opts: ScaleOptions) -> dict[str, Any]:
    rows = []
    for n in opts.sizes:
        # A fresh server per size: memory and caches of a larger fill do not leak into a smaller one.
        with RedisServer(opts.workdir / f"redis-scale-{n}") as server:
            row = await _measure(server.url, n, opts.repeat)
        print(f"  scale N={n}: filled in {row['fill_s']:.1f} s", file=sys.stderr, flush=True)
        rows.append(row)
    small, large = rows[0], rows[-1]
    ratios = {name: large["calls_ms"][name]["p50"] / small["calls_ms"][name]["p50"] for name in small["calls_ms"]}
    return {
        "scenario": "scale",
        "options": {"sizes": list(opts.sizes), "repeat": opts.repeat},
        "rows": rows,
        "ratios": {"from": small["rollouts"], "to": large["rollouts"], "p50": ratios},
    }


def render(result: dict[str, Any]) -> str:
    rows = result["rows"]
    names = list(rows[0]["calls_ms"])
    headers = ["call (ms p50 / p99)", *[f"N={r['rollouts']}" for r in rows]]
    ratio = result["ratios"]
    headers.append(f"p50 N={ratio['to']} / N={ratio['from']}")

    def cell(r: dict[str, Any], name: str) -> str:
        return f"{r['calls_ms'][name]['p50']:.2f} / {r['calls_ms'][name]['p99']:.2f}"

    body = [[name, *[cell(r, name) for r in rows], ratio["p50"][name]] for name in names]
    body.append(["resources snapshots stored", *[str(r["resources_snapshots"]) for r in rows], ""])
    body.append(["Redis bytes / rollout", *[f"{r['bytes_per_rollout']:.0f}" for r in rows], ""])
    body.append(["fill rollouts / s", *[f"{r['fill_rollouts_per_s']:.0f}" for r in rows], ""])
    return "\n".join(["Store calls as stored rollouts grow (one redis-server per N)", table(headers, body, digits=2)])
