"""Scenario `wakeup`: how soon `wait_for_rollouts` returns after a rollout's terminal transition.

A waiter process (`python -m bench.wakeup`) runs N concurrent `wait_for_rollouts([rid_i])` calls,
one rollout each. Once the bench sees the waiter's reader of `done` blocked in `XREAD` (`CLIENT LIST`;
the store keeps one reader per event loop for all its waiters), it ends the rollouts one by one from
its own process (`update_attempt(..., "succeeded")`), `gap_ms` apart.
Latency = the waiter's clock when its call returned − the rollout's `end_time` (the completer's clock
when it sent the transition, so the script's round trip is included). N = 1 (one rollout per trial)
and N = 100 (one completion wakes only the waiter of that rollout).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from .children import LineChild, RedisServer, child_env
from .stats import latency_summary, median, table
from .workload import serve


@dataclass
class WakeupOptions:
    single_trials: int = 200
    crowd: int = 100
    crowd_rounds: int = 3
    gap_ms: float = 5.0
    repeat: int = 3
    workdir: Path = field(default_factory=lambda: Path("bench/results/work"))


class _Waiter:
    """The waiter process's side: one store per namespace, kept across trials like an algorithm keeps it."""

    def __init__(self) -> None:
        self.store: Any = None

    async def __call__(self, command: dict[str, Any], stop: asyncio.Event) -> dict[str, Any]:
        from lightning_queue import RedisLightningStore

        if self.store is None or self.store.namespace != command["namespace"]:
            if self.store is not None:
                await self.store.aclose()
            self.store = RedisLightningStore(command["url"], namespace=command["namespace"], scan_debounce_seconds=10)
        store = self.store

        async def wait_one(rid: str) -> float | None:
            done = await store.wait_for_rollouts(rollout_ids=[rid], timeout=float(command["timeout"]))
            returned = time.time()
            if not done or done[0].end_time is None:
                return None
            return (returned - float(done[0].end_time)) * 1000

        latencies = await asyncio.gather(*(wait_one(rid) for rid in command["rollout_ids"]))
        return {
            "latencies_ms": [v for v in latencies if v is not None],
            "timeouts": sum(1 for v in latencies if v is None),
        }


async def _blocked_readers(client: aioredis.Redis) -> int:
    clients = await client.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xread" and "b" in c.get("flags", ""))


async def _trial(
    store: Any, client: aioredis.Redis, waiter: LineChild, url: str, namespace: str, n: int, gap_ms: float
) -> dict[str, Any]:
    started = [await store.start_rollout({"wake": i}) for i in range(n)]
    waiter.send(
        {"cmd": "go", "url": url, "namespace": namespace, "timeout": 30, "rollout_ids": [r.rollout_id for r in started]}
    )
    deadline = time.monotonic() + 30
    while await _blocked_readers(client) < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("the waiter's reader of `done` did not block within 30 s")
        await asyncio.sleep(0.002)
    # The shared reader blocks as soon as the first waiter subscribed; give the rest a moment. A late
    # subscriber still sees its completion in its first status read, so this only affects timing.
    await asyncio.sleep(0.05)
    random.shuffle(started)
    for rollout in started:
        await store.update_attempt(rollout.rollout_id, rollout.attempt.attempt_id, status="succeeded")
        if gap_ms > 0:
            await asyncio.sleep(gap_ms / 1000)
    return await asyncio.to_thread(waiter.recv, 60)


async def _one_repetition(opts: WakeupOptions, server: RedisServer, waiter: LineChild) -> dict[str, Any]:
    from lightning_queue import RedisLightningStore

    namespace = f"bench-wake-{uuid.uuid4().hex[:10]}"
    store = RedisLightningStore(server.url, namespace=namespace, scan_debounce_seconds=10)
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    single: list[float] = []
    crowd: list[float] = []
    cpu = {"single": 0.0, "crowd": 0.0}
    timeouts = 0
    try:
        for _ in range(opts.single_trials):
            result = await _trial(store, client, waiter, server.url, namespace, 1, 0.0)
            single += result["latencies_ms"]
            cpu["single"] += result["cpu_s"]
            timeouts += result["timeouts"]
        for _ in range(opts.crowd_rounds):
            result = await _trial(store, client, waiter, server.url, namespace, opts.crowd, opts.gap_ms)
            crowd += result["latencies_ms"]
            cpu["crowd"] += result["cpu_s"]
            timeouts += result["timeouts"]
        await store.purge()
    finally:
        await store.aclose()
        await client.aclose()
    return {
        "single_ms": latency_summary(single),
        "crowd_ms": latency_summary(crowd),
        # The waiter process's CPU per completion.
        "single_waiter_cpu_ms_per_completion": 1000 * cpu["single"] / max(1, opts.single_trials),
        "crowd_waiter_cpu_ms_per_completion": 1000 * cpu["crowd"] / max(1, opts.crowd_rounds * opts.crowd),
        "timeouts": timeouts,
    }


async def run(opts: WakeupOptions) -> dict[str, Any]:
    reps: list[dict[str, Any]] = []
    with RedisServer(opts.workdir / "redis") as server:
        waiter = LineChild(
            [sys.executable, "-m", "bench.wakeup"], log_path=opts.workdir / "logs" / "waiter.log", env=child_env()
        )
        try:
            waiter.recv(timeout=120)
            for rep in range(opts.repeat):
                reps.append(await _one_repetition(opts, server, waiter))
                print(
                    f"  wakeup rep {rep}: 1 waiter p50 {reps[-1]['single_ms']['p50']:.2f} ms, "
                    f"{opts.crowd} waiters p50 {reps[-1]['crowd_ms']['p50']:.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            waiter.close()
    summary = {
        f"{label}_{q}_ms": median(r[f"{label}_ms"][q] for r in reps)
        for label in ("single", "crowd")
        for q in ("p50", "p90", "p99", "max")
    }
    for label in ("single", "crowd"):
        key = f"{label}_waiter_cpu_ms_per_completion"
        summary[key] = median(r[key] for r in reps)
    return {
        "scenario": "wakeup",
        "options": {k: v for k, v in vars(opts).items() if k != "workdir"},
        "repetitions": reps,
        "summary": summary,
        "timeouts": sum(r["timeouts"] for r in reps),
    }


def render(result: dict[str, Any]) -> str:
    s = result["summary"]
    o = result["options"]
    rows = [
        [str(n)]
        + [s[f"{label}_{q}"] for q in ("p50_ms", "p90_ms", "p99_ms", "max_ms")]
        + [s[f"{label}_waiter_cpu_ms_per_completion"]]
        for n, label in ((1, "single"), (o["crowd"], "crowd"))
    ]
    heads = ["concurrent waiters", "p50 ms", "p90 ms", "p99 ms", "max ms", "waiter CPU ms / completion"]
    text = table(heads, rows, digits=2)
    head = (
        f"wait_for_rollouts wake-up latency (terminal transition → waiter returns), medians of {o['repeat']} "
        f"repetitions; {o['single_trials']} single trials, {o['crowd_rounds']}×{o['crowd']} crowd completions "
        f"{o['gap_ms']:g} ms apart"
    )
    tail = f"\n{result['timeouts']} waits timed out" if result["timeouts"] else ""
    return f"{head}\n{text}{tail}"


def main() -> None:
    import lightning_queue  # noqa: F401 - imported before `ready`, outside the measured waits

    asyncio.run(serve(_Waiter()))


if __name__ == "__main__":
    main()
