"""Part `steady` of scenario `scale`: Redis memory over a long run with automatic retention on.

A fresh redis-server, an `lq worker` pool (the no-op agent: 3 small spans a rollout) and an algorithm
loop here: it enqueues `batch` rollouts `rate / batch` times a second (a fixed offered load, so the
machine's other work changes latency, not what is stored), and for each batch waits for it with
`wait_for_rollouts` and then reads every rollout's spans (`query_spans`) — enqueue, run, read. The
namespace's policy is `max_age = window_s`, `min_age`, `auto_every`; the workers apply it themselves
(store/auto_retention.py). A rollout stays at most its retention window: max(max_age, the read marks'
lease) + min_age + auto_every after it ends. The run lasts `windows` such windows after a warm-up of
one, sampling `used_memory` (less client buffers) and the stored counts every `sample_s`; the steady
part's min / max / mean memory and the ± band (largest distance from the mean over the mean) are
reported. `deleted_unread` counts rollouts a wait returned but whose spans were gone when read less
than `min_age` later: retention must make it 0 (`read_late`: gone, but read later than that).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from .children import RedisServer
from .memory import _used
from .stats import table
from .worker_pool import LqWorkerPool
from .workload import SPANS_PER_ROLLOUT


@dataclass
class SteadyOptions:
    window_s: float = 10.0
    windows: float = 10.0
    rate: float = 80.0
    batch: int = 8
    min_age: float = 2.0
    auto_every: float = 0.5
    processes: int = 2
    concurrency: int = 16
    sample_s: float = 0.5
    workdir: Path = field(default_factory=lambda: Path("bench/results/work"))


def retention_window(opts: SteadyOptions) -> float:
    from lightning_queue.store.reads import WAIT_LEASE

    return max(opts.window_s, WAIT_LEASE) + opts.min_age + opts.auto_every


class _Algorithm:
    """Enqueue at a fixed rate; each batch is waited for and read by a task of its own."""

    def __init__(self, store: Any, opts: SteadyOptions) -> None:
        self.store, self.opts = store, opts
        self.enqueued = self.read = self.unfinished = self.deleted_unread = self.read_late = 0
        self.max_read_delay = 0.0
        self.tasks: set[asyncio.Task[None]] = set()

    async def _read_one(self, rollout_id: str, returned: float) -> None:
        page = await self.store.query_spans(rollout_id, "latest")
        delay = time.monotonic() - returned
        self.max_read_delay = max(self.max_read_delay, delay)
        if len(page.items) == SPANS_PER_ROLLOUT:
            self.read += 1
        elif delay <= self.opts.min_age:
            self.deleted_unread += 1  # gone although read within min_age of the wait: retention's fault
        else:
            self.read_late += 1  # a reader slower than min_age: outside what retention promises

    async def _read(self, ids: list[str]) -> None:
        done = await self.store.wait_for_rollouts(rollout_ids=ids, timeout=120)
        returned = time.monotonic()
        self.unfinished += len(ids) - len(done)
        await asyncio.gather(*(self._read_one(r.rollout_id, returned) for r in done))

    async def run(self, until: float) -> None:
        from lightning_queue.types import EnqueueRolloutRequest

        period = self.opts.batch / self.opts.rate
        next_at = time.monotonic()
        while next_at < until:
            created = await self.store.enqueue_many_rollouts(
                [EnqueueRolloutRequest(input={"task": self.enqueued + i}) for i in range(self.opts.batch)]
            )
            self.enqueued += len(created)
            task = asyncio.create_task(self._read([r.rollout_id for r in created]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*list(self.tasks))


async def _sample(client: aioredis.Redis, store: Any, t0: float, samples: list[dict[str, float]], every: float) -> None:
    while True:
        async with client.pipeline(transaction=False) as pipe:
            pipe.zcard(store.keys.ended_rollouts)
            pipe.zcard(store.keys.open_rollouts)
            pipe.zcard(store.keys.reads)
            pipe.xlen(store.keys.done)
            ended, open_, marks, done = await pipe.execute()
        used = await _used(client)
        samples.append(
            {
                "t": time.monotonic() - t0,
                "used": float(used),
                "stored": ended,
                "open": open_,
                "marks": marks,
                "done": done,
            }
        )
        await asyncio.sleep(every)


def _band(values: list[float]) -> dict[str, float]:
    mean = sum(values) / len(values)
    low, high = min(values), max(values)
    return {"min": low, "max": high, "mean": mean, "band_pct": 100 * max(high - mean, mean - low) / mean}


async def _measure(url: str, opts: SteadyOptions) -> dict[str, Any]:
    from lightning_queue import RedisLightningStore
    from lightning_queue.store.retention import RetentionPolicy, write_policy

    namespace = f"bench-steady-{uuid.uuid4().hex[:8]}"
    store = RedisLightningStore(url, namespace=namespace)
    client = aioredis.Redis.from_url(url)
    policy = RetentionPolicy(max_age=opts.window_s, min_age=opts.min_age, auto_every=opts.auto_every)
    window = retention_window(opts)
    pool = LqWorkerPool(url, namespace, opts.processes, opts.concurrency, opts.workdir / "steady-pool.log")
    try:
        await write_policy(store, policy)
        await asyncio.to_thread(pool.start)
        empty = await _used(client)
        samples: list[dict[str, float]] = []
        t0 = time.monotonic()
        sampler = asyncio.create_task(_sample(client, store, t0, samples, opts.sample_s))
        algorithm = _Algorithm(store, opts)
        try:
            await algorithm.run(until=t0 + window * (1 + opts.windows))
        finally:
            sampler.cancel()
        duration = time.monotonic() - t0
        steady = [s for s in samples if s["t"] >= window]
        if not steady:
            raise RuntimeError(f"no samples after the warm-up of {window:.1f} s")
        per_rollout = (_band([s["used"] for s in steady])["mean"] - empty) / max(
            1.0, _band([float(s["stored"]) for s in steady])["mean"]
        )
        return {
            "policy": policy.model_dump(exclude_none=True),
            "retention_window_s": window,
            "duration_s": duration,
            "steady_from_s": window,
            "rate_offered": opts.rate,
            "enqueued": algorithm.enqueued,
            "read": algorithm.read,
            "unfinished": algorithm.unfinished,
            "deleted_unread": algorithm.deleted_unread,
            "read_late": algorithm.read_late,
            "max_read_delay_s": algorithm.max_read_delay,
            "rollouts_per_s": algorithm.read / duration,
            "empty_used_bytes": empty,
            "used_bytes": _band([s["used"] for s in steady]),
            "stored_rollouts": _band([float(s["stored"]) for s in steady]),
            "bytes_per_stored_rollout": per_rollout,
            "samples": samples,
        }
    finally:
        await asyncio.to_thread(pool.stop)
        await store.aclose()
        await client.aclose()


async def run(opts: SteadyOptions) -> dict[str, Any]:
    with RedisServer(opts.workdir / "redis-steady") as server:
        return await _measure(server.url, opts)


def render(result: dict[str, Any]) -> str:
    used, stored = result["used_bytes"], result["stored_rollouts"]
    head = (
        f"Steady state: {result['enqueued']} rollouts at {result['rate_offered']:.0f}/s offered over "
        f"{result['duration_s']:.0f} s = {result['duration_s'] / result['retention_window_s']:.1f} x the retention "
        f"window of {result['retention_window_s']:.1f} s (policy {result['policy']}); steady part from "
        f"{result['steady_from_s']:.1f} s; read {result['read']}, deleted unread {result['deleted_unread']}, "
        f"read later than min_age {result['read_late']} (slowest read {result['max_read_delay_s']:.2f} s after "
        f"its wait), unfinished at a 120 s wait {result['unfinished']}"
    )
    mib = 1 << 20
    body = [
        ["Redis used_memory (MiB)", used["min"] / mib, used["max"] / mib, used["mean"] / mib, used["band_pct"]],
        ["stored finished rollouts", stored["min"], stored["max"], stored["mean"], stored["band_pct"]],
    ]
    over_time = []
    samples = result["samples"]
    step = max(1, len(samples) // 12)
    for s in samples[::step]:
        over_time.append([s["t"], s["used"] / mib, s["stored"], s["open"], s["marks"], s["done"]])
    return "\n".join(
        [
            head,
            table(["steady part", "min", "max", "mean", "± % of mean"], body, digits=[0, 2, 2, 2, 1]),
            "",
            table(
                ["t (s)", "used MiB", "stored", "open", "read marks", "done stream"],
                over_time,
                digits=[1, 2, 0, 0, 0, 0],
            ),
        ]
    )
