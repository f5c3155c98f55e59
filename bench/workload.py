"""The no-op rollout workload every backend runs, and the line protocol of its child processes.

The algorithm enqueues R rollouts, workers claim each, write 3 small spans and succeed, the algorithm
waits for the rollouts and reads every rollout's spans. Only the store calls differ between backends,
so they are passed in as callables. Standard library only: the Agent-Lightning baseline runs this
module in its own virtualenv, where lightning_queue is not installed.

Protocol: a child prints JSON lines on stdout (`{"ready": ...}` once, then one result per round) and
reads JSON-line commands on stdin: `{"cmd": "go", ...}` starts a round, `{"cmd": "stop"}` ends it,
`{"cmd": "exit"}` (or EOF) ends the process.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

SPANS_PER_ROLLOUT = 3
# What a small tool-call span carries; the "small span" of the memory scenario too.
SPAN_ATTRIBUTES: dict[str, Any] = {"bench.kind": "noop", "bench.tool": "calculator", "bench.ok": True}


def task_input(index: int) -> dict[str, Any]:
    return {"task_id": index, "question": "What is 2 + 2?"}


def span_name(sequence_id: int) -> str:
    return f"noop-{sequence_id}"


# --- the line protocol ----------------------------------------------------------------------------
def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class Commands:
    """Commands from stdin, read by a thread (stdin has no portable asyncio reader).

    `stop` is delivered straight to the running round's event so a round ends without polling.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.stop_event: asyncio.Event | None = None
        threading.Thread(target=self._read, name="bench-commands", daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            command = json.loads(line)
            if command.get("cmd") == "stop":
                self._loop.call_soon_threadsafe(self._stop)
            else:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, command)
        self._loop.call_soon_threadsafe(self._queue.put_nowait, {"cmd": "exit"})

    def _stop(self) -> None:
        if self.stop_event is not None:
            self.stop_event.set()

    async def get(self) -> dict[str, Any]:
        return await self._queue.get()


RoundFn = Callable[[dict[str, Any], asyncio.Event], Awaitable[dict[str, Any]]]


async def serve(run_round: RoundFn, ready: dict[str, Any] | None = None) -> None:
    """Announce readiness, then run one round per `go` command until `exit`; each round reports one line."""
    commands = Commands(asyncio.get_running_loop())
    emit({"ready": True, "pid": os.getpid(), **(ready or {})})
    while True:
        command = await commands.get()
        if command.get("cmd") == "exit":
            return
        if command.get("cmd") != "go":
            emit({"error": f"unknown command {command!r}"})
            continue
        stop = asyncio.Event()
        commands.stop_event = stop
        cpu0 = time.process_time()
        try:
            result = await run_round(command, stop)
        except Exception as exc:  # reported to the orchestrator, which fails the run with it
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["cpu_s"] = time.process_time() - cpu0
        commands.stop_event = None
        emit(result)


# --- the worker side ------------------------------------------------------------------------------
ClaimFn = Callable[[int], Awaitable[Sequence[tuple[str, str]]]]
FinishFn = Callable[[str, str], Awaitable[None]]


async def worker_round(
    claim: ClaimFn, finish: FinishFn, stop: asyncio.Event, *, batch: int, idle_sleep: float = 0.0
) -> dict[str, Any]:
    """Claim up to `batch` rollouts, finish them concurrently, repeat until `stop`.

    `claim` returns (rollout id, attempt id) pairs; a blocking claim returns empty after its block
    time, a polling one is followed by `idle_sleep` when it found nothing.
    """
    claimed_at: dict[str, float] = {}
    while not stop.is_set():
        got = await claim(batch)
        now = time.time()
        if not got:
            if idle_sleep > 0:
                try:
                    await asyncio.wait_for(stop.wait(), idle_sleep)
                except asyncio.TimeoutError:
                    pass
            continue
        for rollout_id, _attempt_id in got:
            claimed_at[rollout_id] = now
        await asyncio.gather(*(finish(rid, aid) for rid, aid in got))
    return {"claimed_at": claimed_at, "completed": len(claimed_at)}


# --- the algorithm side ---------------------------------------------------------------------------
EnqueueFn = Callable[[list[dict[str, Any]]], Awaitable[list[tuple[str, float]]]]
WaitFn = Callable[[list[str]], Awaitable[list[tuple[str, float | None]]]]
ReadFn = Callable[[str], Awaitable[int]]


async def algorithm_round(
    *,
    enqueue: EnqueueFn,
    wait: WaitFn,
    read_spans: ReadFn,
    rollouts: int,
    chunk: int,
    window: int,
    read_concurrency: int,
    deadline_seconds: float,
) -> dict[str, Any]:
    """Enqueue `rollouts` in chunks while collecting finished ones, then read every rollout's spans.

    `enqueue` returns (rollout id, start time); `wait` blocks for a slice on the ids it is given (or
    polls and sleeps) and returns (rollout id, end time) of the terminal ones; `read_spans` returns
    how many spans a rollout has. Times are wall-clock seconds, comparable across local processes.

    Each wait names the oldest `window` unseen rollouts, as an algorithm waits for its batch: checking
    every pending id costs both stores O(pending) per call, which would swamp the workload itself.
    Workers claim in FIFO order, so the rollouts that finish are almost always in that window.
    """
    started = time.perf_counter()
    deadline = started + deadline_seconds
    start_time: dict[str, float] = {}
    known: list[str] = []
    arrived = asyncio.Event()
    enqueue_done = False

    async def enqueue_all() -> None:
        nonlocal enqueue_done
        try:
            for first in range(0, rollouts, chunk):
                inputs = [task_input(i) for i in range(first, min(first + chunk, rollouts))]
                for rid, t in await enqueue(inputs):
                    start_time[rid] = t
                    known.append(rid)
                arrived.set()
        finally:
            enqueue_done = True
            arrived.set()

    semaphore = asyncio.Semaphore(read_concurrency)
    span_counts: dict[str, int] = {}

    async def read(rid: str) -> None:
        async with semaphore:
            span_counts[rid] = await read_spans(rid)

    enqueuer = asyncio.create_task(enqueue_all())
    seen_at: dict[str, float] = {}
    end_time: dict[str, float] = {}
    readers: list[asyncio.Task[None]] = []
    waits = 0
    first_unseen = 0  # known[:first_unseen] are all seen
    try:
        while time.perf_counter() < deadline:
            while first_unseen < len(known) and known[first_unseen] in seen_at:
                first_unseen += 1
            pending = []
            for rid in itertools.islice(known, first_unseen, None):
                if rid not in seen_at:
                    pending.append(rid)
                    if len(pending) >= window:
                        break
            if not pending:
                if enqueue_done:
                    break
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), max(0.001, deadline - time.perf_counter()))
                continue
            finished = await wait(pending)
            waits += 1
            now = time.time()
            for rid, end in finished:
                if rid in seen_at:
                    continue
                seen_at[rid] = now
                if end is not None:
                    end_time[rid] = end
                readers.append(asyncio.create_task(read(rid)))
        if readers:
            await asyncio.wait_for(asyncio.gather(*readers), max(0.001, deadline - time.perf_counter()))
    except asyncio.TimeoutError:
        pass  # past the deadline: report what finished; `finished` < `rollouts` says so
    finally:
        enqueuer.cancel()
        for task in readers:
            task.cancel()
    elapsed = time.perf_counter() - started
    if enqueuer.done() and not enqueuer.cancelled() and enqueuer.exception() is not None:
        raise RuntimeError(f"enqueue failed: {enqueuer.exception()!r}")
    wrong = sum(1 for rid in seen_at if span_counts.get(rid) != SPANS_PER_ROLLOUT)
    return {
        "rollouts": rollouts,
        "finished": len(seen_at),
        "spans_read": sum(span_counts.values()),
        "wrong_span_counts": wrong,
        "elapsed_s": elapsed,
        "rollouts_per_s": len(seen_at) / elapsed if elapsed > 0 else 0.0,
        "wait_calls": waits,
        "start_time": start_time,
        "complete_to_seen_ms": [(seen_at[rid] - end) * 1000 for rid, end in end_time.items()],
    }
