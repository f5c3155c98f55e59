"""Scenario `scale`: what a store call costs as a run's history grows to N stored rollouts.

For each N, a fresh redis-server is filled with N rollouts the way a run leaves them: enqueued in
batches of 100 (one script call each, so 100 share a start_time), claimed, and ended 80 % succeeded,
10 % failed, 10 % still queued (a warm-up batch of 100 more is stored first, before the memory
baseline); one more rollout carries a long trace (every 10th span a "tool", the others "llm"),
and N/10 resources snapshots are stored (an async RL run publishes one per policy version). Then each
listed call runs `--repeat` times (after one warm-up) and its p50/p99 are reported, with Redis memory
per rollout (`used_memory` delta over N). The ratios column divides each call's p50 at the largest N by
its p50 at the smallest: O(log N + page) calls stay near 1, O(N) calls grow with N. Last, a retention step
(`apply_step` of 200 rollouts, keep_newest=0) is timed `--repeat` times at most: how long Redis is busy
deleting (two script calls of 100 ids each).

Then the same at the smaller `big_sizes`, each rollout carrying one 10k-token span (bench/memory.py's
large span: 10,000 prompt and 64 response token ids), all succeeded; and the steady-state run
(bench/steady.py): memory over a run 10 x its retention window.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from .children import RedisServer
from .memory import _large_attributes, _used
from .stats import latency_summary, median, table
from .steady import SteadyOptions
from .steady import render as render_steady
from .steady import run as run_steady

BATCH = 100
TRACE_SPANS = 2000
WAIT_IDS = 1000
TRACE_ATTRS = {"gen_ai.completion": "x" * 200}
# Resources snapshots stored per rollout (one policy version per 10 rollouts).
SNAPSHOTS_PER_ROLLOUT = 0.1


@dataclass
class ScaleOptions:
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    big_sizes: tuple[int, ...] = (1_000,)
    repeat: int = 30
    steady: SteadyOptions | None = field(default_factory=SteadyOptions)
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


async def _fill_big(store: Any, n: int) -> list[str]:
    """N succeeded rollouts of one 10k-token span each (10 distinct token lists, cycled)."""
    from lightning_queue.types import Span

    rng = random.Random(15)
    attributes = [_large_attributes(rng) for _ in range(10)]
    ids: list[str] = []
    for first in range(0, n, 20):
        started = await asyncio.gather(*(store.start_rollout({"task": i}) for i in range(first, min(first + 20, n))))
        await store.add_many_spans(
            [
                Span.from_attributes(
                    attributes=attributes[k % 10],
                    rollout_id=r.rollout_id,
                    attempt_id=r.attempt.attempt_id,
                    sequence_id=1,
                    name="llm",
                )
                for k, r in enumerate(started)
            ]
        )
        await asyncio.gather(*(store.update_attempt(r.rollout_id, "latest", status="succeeded") for r in started))
        ids += [r.rollout_id for r in started]
    return ids


def _big_calls(store: Any, ids: list[str]) -> dict[str, Callable[[], Awaitable[Any]]]:
    middle = ids[len(ids) // 2]
    return {
        "query_spans one 10k-token span": lambda: store.query_spans(middle, "latest"),
        "get_rollout_by_id": lambda: store.get_rollout_by_id(middle),
        "query_rollouts limit=10": lambda: store.query_rollouts(limit=10),
        "wait_for_rollouts 100 ids": lambda: store.wait_for_rollouts(rollout_ids=ids[-100:], timeout=0),
    }


async def _retention_steps(store: Any, repeat: int) -> dict[str, float]:
    """ms per retention step (up to STEP rollouts; keep_newest=0, min_age=0), median of up to `repeat` steps."""
    from lightning_queue.store.retention import RetentionPolicy, apply_step, write_policy

    policy = RetentionPolicy(keep_newest=0, min_age=0)
    await write_policy(store, policy)
    await store._redis.delete(store.keys.reads)  # the timed waits above marked their rollouts read
    samples, deleted = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        done, _ = await apply_step(store, policy=policy)
        if done == 0:
            break
        samples.append((time.perf_counter() - t0) * 1000)
        deleted += done
    steps = len(samples)
    return {"rollouts_per_step": deleted / steps if steps else 0.0, "step_ms_p50": median(samples), "steps": steps}


async def _measure(url: str, n: int, repeat: int, big: bool = False) -> dict[str, Any]:
    from lightning_queue import RedisLightningStore

    store = RedisLightningStore(url, namespace=f"bench-scale-{uuid.uuid4().hex[:8]}", scan_debounce_seconds=3600)
    client = aioredis.Redis.from_url(url)
    try:
        # Warm up (scripts loaded, stream and group, first index nodes) before the memory baseline;
        # these BATCH rollouts are stored on top of the N measured.
        fill = _fill_big if big else _fill
        await fill(store, BATCH // 10 if big else BATCH)
        base = await _used(client)
        t0 = time.monotonic()
        ids = await fill(store, n)
        fill_s = time.monotonic() - t0
        used = await _used(client)
        if big:
            calls_of = _big_calls(store, ids)
        else:
            trace = await _long_trace(store)
            await _snapshots(store, int(n * SNAPSHOTS_PER_ROLLOUT))
            calls_of = _calls(store, ids, trace)
        stats = await store.statistics()
        calls = {name: await _time(call, repeat) for name, call in calls_of.items()}
        steps = await _retention_steps(store, repeat)
        await store.purge()
        return {
            "rollouts": n,
            "span": "10k tokens" if big else "small",
            "fill_s": fill_s,
            "fill_rollouts_per_s": n / fill_s,
            "bytes_per_rollout": (used - base) / n,
            "resources_snapshots": stats["total_resources"],
            "by_status": stats["rollouts_by_status"],
            "calls_ms": calls,
            "retention": steps,
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
    big_rows = []
    for n in opts.big_sizes:
        with RedisServer(opts.workdir / f"redis-scale-big-{n}") as server:
            row = await _measure(server.url, n, opts.repeat, big=True)
        print(f"  scale N={n} with 10k-token spans: filled in {row['fill_s']:.1f} s", file=sys.stderr, flush=True)
        big_rows.append(row)
    steady = None
    if opts.steady is not None:
        print("  scale: steady-state run with retention ...", file=sys.stderr, flush=True)
        steady = await run_steady(opts.steady)
    small, large = rows[0], rows[-1]
    ratios = {name: large["calls_ms"][name]["p50"] / small["calls_ms"][name]["p50"] for name in small["calls_ms"]}
    return {
        "scenario": "scale",
        "options": {"sizes": list(opts.sizes), "big_sizes": list(opts.big_sizes), "repeat": opts.repeat},
        "rows": rows,
        "ratios": {"from": small["rollouts"], "to": large["rollouts"], "p50": ratios},
        "big_span_rows": big_rows,
        "steady": steady,
    }


def _step(row: dict[str, Any]) -> str:
    steps = row["retention"]
    return f"{steps['step_ms_p50']:.2f} ({steps['rollouts_per_step']:.0f})" if steps["steps"] else "-"


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
    body.append(["retention step ms p50 (rollouts / step)", *[_step(r) for r in rows], ""])
    parts = ["Store calls as stored rollouts grow (one redis-server per N)", table(headers, body, digits=2)]
    big = result.get("big_span_rows") or []
    if big:
        big_body = [[name, *[cell(r, name) for r in big]] for name in big[0]["calls_ms"]]
        big_body.append(["Redis bytes / rollout", *[f"{r['bytes_per_rollout']:.0f}" for r in big]])
        big_body.append(["fill rollouts / s", *[f"{r['fill_rollouts_per_s']:.0f}" for r in big]])
        big_body.append(["retention step ms p50 (rollouts / step)", *[_step(r) for r in big]])
        big_headers = ["one 10k-token span per rollout (ms p50 / p99)", *[f"N={r['rollouts']}" for r in big]]
        parts += ["", table(big_headers, big_body, digits=2)]
    if result.get("steady"):
        parts += ["", render_steady(result["steady"])]
    return "\n".join(parts)
