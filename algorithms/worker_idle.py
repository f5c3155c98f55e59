"""How much of the workers' capacity a training window left unused: 1 − Σ busy / (slots × wall).

Busy is the time attempts held a worker slot (claim to end, clipped to the window); slots are the
workers' concurrency summed over the worker records of the namespace. The same measure serves the
synchronous and the asynchronous loop, so their numbers compare: a slot waiting on the model server
counts as busy, a slot with nothing claimed as idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lightning_queue.store.base import LightningStore
from lightning_queue.types import Attempt, RolloutMode


@dataclass(frozen=True)
class IdleFraction:
    """Idle share of `slots` worker slots over `wall` seconds, and the busy slot-seconds behind it."""

    idle: float
    busy_seconds: float
    slots: int
    wall_seconds: float
    attempts: int

    def record(self) -> dict[str, Any]:
        return {
            "worker_idle_fraction": round(self.idle, 4),
            "worker_busy_slot_seconds": round(self.busy_seconds, 2),
            "worker_slots": self.slots,
            "window_seconds": round(self.wall_seconds, 2),
            "attempts": self.attempts,
        }


def idle_fraction(
    attempts: Sequence[Attempt], *, start: float, end: float, slots: int, now: float | None = None
) -> IdleFraction:
    """The idle share of `slots` over [start, end] given the attempts that ran (an unended one runs to `now`)."""
    if slots < 1:
        raise ValueError(f"slots must be at least 1, got {slots!r}")
    if end <= start:
        raise ValueError(f"the window must end after it starts, got start={start!r} end={end!r}")
    busy = 0.0
    for attempt in attempts:
        finished = attempt.end_time if attempt.end_time is not None else (now if now is not None else end)
        busy += max(0.0, min(finished, end) - max(attempt.start_time, start))
    wall = end - start
    # Clock skew between hosts can push the sum a hair over capacity; idle is never negative.
    return IdleFraction(max(0.0, 1.0 - busy / (slots * wall)), busy, slots, wall, len(attempts))


async def worker_slots(store: LightningStore) -> int | None:
    """Σ concurrency the namespace's workers report in their heartbeats, or None if none reported it."""
    total = 0
    for worker in (await store.query_workers()).items:
        concurrency = (worker.heartbeat_stats or {}).get("concurrency")
        if isinstance(concurrency, int) and concurrency > 0:
            total += concurrency
    return total or None


async def measure(
    store: LightningStore, *, start: float, end: float, mode: RolloutMode = "train", slots: int | None = None
) -> IdleFraction:
    """Idle fraction over [start, end] (store clock, `time.time()`) from the attempts of `mode` rollouts."""
    slots = slots or await worker_slots(store)
    if slots is None:
        raise RuntimeError("no worker reported its concurrency: cannot measure the idle fraction")
    rollouts = [r for r in (await store.query_rollouts()).items if r.mode == mode]
    pages = await asyncio.gather(*(store.query_attempts(r.rollout_id) for r in rollouts))
    attempts = [a for page in pages for a in page.items if a.start_time < end]
    return idle_fraction(attempts, start=start, end=end, slots=slots)
