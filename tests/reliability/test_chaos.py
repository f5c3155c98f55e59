"""Rollouts whose agents make 1-3 LLM calls through a real `lq proxy` process to a slow stand-in upstream,
while a chaos thread SIGKILLs worker processes (the supervisor restarts them) and SIGSTOPs others for
a while before SIGCONTing them: every rollout ends terminal, none is stranded by a late span, and no
span of a superseded attempt moves its rollout.

The kills and stops land mid-call: the proxy still records each call when the upstream answers, often
after the watchdog reclaimed the attempt it belongs to (the late span of issue 10).

`LQ_CHAOS_ROLLOUTS` sets the number of rollouts (default 1,000).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from lightning_queue import EnqueueRolloutRequest, RedisLightningStore, RolloutConfig
from lightning_queue.store.schema import GROUP
from lightning_queue.testing import Reply, StandInModelServer
from lightning_queue.testing.server import StandInRequest
from lightning_queue.types import TERMINAL_STATUSES, Attempt, ProxyLLM
from tests.support.agents import MARK
from tests.support.pools import Pool, eventually
from workers.runner import default_worker_id

ROLLOUTS = int(os.environ.get("LQ_CHAOS_ROLLOUTS", "1000"))
PROCESSES = 3
CONCURRENCY = 12
LEASE = 1.0
CALL_DELAY = (0.05, 0.4)  # seconds the stand-in upstream waits before most answers
LONG_CALL = (1.2, 2.0)  # and before a LONG_SHARE of them: longer than the lease
LONG_SHARE = 0.15
CHAOS_INTERVAL = (1.2, 2.5)  # seconds between two chaos events
CALM_TAIL = 0.05  # the chaos ends when this share of rollouts is left, so the last retries drain
KILL_SHARE = 0.45  # the others are SIGSTOPs
STOP_FOR = (0.3, 3.0)  # a SIGSTOP lasts this long: past the lease most of the time, not always
# Victims have lived this long: they hold rollouts mid-call, and the supervisor's restart backoff
# (doubling while a process lives under 30 s) stays short.
MIN_AGE = 4.0
# No rollout ended for this long while some are unfinished: they are stranded. Longer than the
# supervisor's longest restart backoff (30 s), during which every slot may be down and nobody sweeps.
STALL_SECONDS = 45.0
# No timeout, as by default: a rollout must not need one to end.
CHAOS_CONFIG = RolloutConfig(max_attempts=5, retry_condition=["unresponsive"])
RETRYABLE = set(CHAOS_CONFIG.retry_condition)
CALL = "openai.chat.completion"


class Chaos(threading.Thread):
    """Every `interval` seconds, SIGKILLs or SIGSTOPs a random running worker process of `pool`; a stopped
    process gets SIGCONT after `stop_for` seconds (and every one of them when the chaos stops)."""

    def __init__(self, pool: Pool, rng: random.Random) -> None:
        super().__init__(name="chaos", daemon=True)
        self.pool = pool
        self.rng = rng
        self.killed: dict[int, float] = {}  # pid -> when it was killed (wall clock, as attempt end times)
        self.stops: list[float] = []  # how long each stop lasted
        # worker id -> (from, to) wall-clock spans in which it renewed nothing (dead, or frozen)
        self.silent: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
        self._stopped: dict[int, tuple[float, float]] = {}  # pid -> (stopped at, resume at), monotonic
        self._stop_event = threading.Event()
        self._next = time.monotonic() + rng.uniform(*CHAOS_INTERVAL)

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            now = time.monotonic()
            for pid, (since, until) in list(self._stopped.items()):
                if now >= until:
                    self._resume(pid, since)
            if now < self._next:
                continue
            self._next = now + self.rng.uniform(*CHAOS_INTERVAL)
            running = sorted(pid for pid in set(self.pool.children()) - set(self._stopped) if age(pid) >= MIN_AGE)
            if not running:
                continue
            victim = self.rng.choice(running)
            stop = self.rng.random() >= KILL_SHARE
            try:
                os.kill(victim, signal.SIGSTOP if stop else signal.SIGKILL)
            except ProcessLookupError:
                continue
            if stop:
                self._stopped[victim] = (now, now + self.rng.uniform(*STOP_FOR))
            else:
                self.killed[victim] = time.time()
                self.silent[default_worker_id(victim)].append((time.time(), float("inf")))
        for pid, (since, _) in list(self._stopped.items()):
            self._resume(pid, since)

    def _resume(self, pid: int, since: float) -> None:
        del self._stopped[pid]
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            return
        lasted = time.monotonic() - since
        self.stops.append(lasted)
        self.silent[default_worker_id(pid)].append((time.time() - lasted, time.time()))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def age(pid: int) -> float:
    try:
        return time.time() - psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return 0.0


def slow_answer(request: StandInRequest) -> Reply:
    """Wait as long as the agent's message asks, then answer."""
    asked = json.loads(str(request.body["messages"][-1]["content"]))
    return Reply(content="ok", delay=float(asked["delay"]))


@pytest.fixture
async def stand_in() -> AsyncIterator[StandInModelServer]:
    async with StandInModelServer(responder=slow_answer) as server:
        yield server


@pytest.fixture
def lq_proxy(redis_url: str, namespace: str, stand_in: StandInModelServer, tmp_path: Path) -> Iterator[str]:
    """A real `lq proxy` process on the test's namespace in front of the stand-in; yields its endpoint."""
    log = tmp_path / "proxy.stderr"
    command = [sys.executable, "-m", "lightning_queue.cli", "proxy", "--redis-url", redis_url]
    command += ["--namespace", namespace, "--model", f"policy={stand_in.url}"]
    env = {k: v for k, v in os.environ.items() if k not in ("LQ_REDIS_URL", "REDIS_URL", "LQ_NAMESPACE")}
    with log.open("wb") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # the process prints its endpoint first (or dies)
        assert line.startswith("lq proxy: serving policy at http://127.0.0.1:"), line + log.read_text()
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def watch_reclaims(store: RedisLightningStore, chaos: Chaos, reclaims: dict[int, float]) -> None:
    """Record, per killed worker, how long after its kill no stream entry was pending on it any more."""
    while True:
        for pid, killed_at in list(chaos.killed.items()):
            if pid in reclaims:
                continue
            held = await store._redis.xpending_range(
                store.keys.queue, GROUP, min="-", max="+", count=1, consumername=default_worker_id(pid)
            )
            if not held:
                reclaims[pid] = time.time() - killed_at
        await asyncio.sleep(0.05)


async def wait_or_stall(store: RedisLightningStore, ids: list[str], chaos: Chaos, deadline: float) -> dict[str, Any]:
    """Wait for every rollout, ending the chaos for the last CALM_TAIL of them; stop early once none has
    ended for STALL_SECONDS (the rest are stranded)."""
    done: dict[str, Any] = {}
    last_progress = time.monotonic()
    while len(done) < len(ids) and time.monotonic() < deadline:
        pending = [rid for rid in ids if rid not in done]
        for rollout in await store.wait_for_rollouts(rollout_ids=pending, timeout=1.0):
            done[rollout.rollout_id] = rollout
            last_progress = time.monotonic()
        if len(ids) - len(done) <= len(ids) * CALM_TAIL and chaos.is_alive():
            await asyncio.to_thread(chaos.stop)
        if time.monotonic() - last_progress > STALL_SECONDS:
            break
    return done


async def check_rollout(store: RedisLightningStore, rollout: Any, calls: int, chaos: Chaos) -> dict[str, int]:
    """Assert the invariants of one terminal rollout; return counts of what its superseded attempts left."""
    rid = rollout.rollout_id
    attempts: list[Attempt] = list((await store.query_attempts(rid)).items)
    latest = attempts[-1]
    assert [a.sequence_id for a in attempts] == list(range(1, len(attempts) + 1)), rid
    assert rollout.attempt.attempt_id == latest.attempt_id, f"{rid}: the rollout does not point at its latest attempt"
    # Fencing: the rollout's status is what its latest attempt's ending makes of it.
    if rollout.status == "succeeded":
        assert latest.status == "succeeded", rid
    else:
        assert rollout.status == "failed", rid
        assert latest.status in RETRYABLE and len(attempts) == CHAOS_CONFIG.max_attempts, (rid, latest.status)
    # A superseded attempt lost its lease to the watchdog: a late span never revives it. A worker frozen
    # after its last lease check may still have ended it when it resumed (the attempt alone changes).
    for old in attempts[:-1]:
        assert old.status in RETRYABLE | {"succeeded", "failed"}, (rid, [a.status for a in attempts])
    spans = list((await store.query_spans(rid)).items)
    # The client's side of each call (the worker's openai-v2 tracer) is stored beside the proxy's span.
    client_spans = [s for s in spans if s.attempt_id == latest.attempt_id and s.name == "chat policy"]
    latest_spans = [s for s in spans if s.attempt_id == latest.attempt_id and s.name != "chat policy"]
    if rollout.status == "succeeded":
        # Exactly what the latest attempt did: its LLM calls (recorded by the proxy), its mark, its reward.
        assert [s.name for s in latest_spans] == [CALL] * calls + [MARK, "agentlightning.annotation"], rid
        assert latest_spans[calls].attributes["attempt_id"] == latest.attempt_id, rid
        assert len(client_spans) == calls, rid
        assert sorted(s.span_id for s in (await store.query_spans(rid, "latest")).items) == sorted(
            s.span_id for s in latest_spans + client_spans
        ), rid
    assert len({s.sequence_id for s in spans}) == len(spans), f"{rid}: a sequence id was issued twice"
    counts = collections.Counter[str]()
    for old, successor in itertools.pairwise(attempts):
        old_calls = [s for s in spans if s.attempt_id == old.attempt_id and s.name == CALL]
        counts["superseded_attempts_with_spans"] += bool([s for s in spans if s.attempt_id == old.attempt_id])
        # A call that ended after the next attempt started: the proxy recorded it on a superseded attempt.
        counts["late_calls_on_superseded_attempts"] += sum(
            1 for s in old_calls if s.end_time is not None and s.end_time > successor.start_time
        )
        counts["superseded_attempts_ended_by_a_resumed_worker"] += old.status in ("succeeded", "failed")
        # The late span: a call in flight when its worker went silent, answered after the lease
        # had lapsed (the watchdog reclaims then), recorded on the attempt it was made for.
        silent = chaos.silent.get(old.worker_id or "", [])
        counts["calls_answered_after_their_lease_lapsed"] += sum(
            1
            for s in old_calls
            for since, until in silent
            if s.start_time is not None
            and s.end_time is not None
            and s.start_time < since
            and since + LEASE < s.end_time < until
        )
    return dict(counts)


@pytest.mark.slow
@pytest.mark.timeout(420)
async def test_rollouts_with_llm_calls_end_terminal_and_fenced_while_workers_are_killed_and_frozen(
    start_pool: Any, redis_url: str, observer: RedisLightningStore, lq_proxy: str, record_property: Any
) -> None:
    rng = random.Random(20261202)
    await observer.add_resources({"llm": ProxyLLM(endpoint=lq_proxy, model="policy")})
    pool = start_pool(
        redis_url,
        "tests.support.reliability_agents:llm_calls",
        processes=PROCESSES,
        concurrency=CONCURRENCY,
        lease=LEASE,
        heartbeat=1.0,
    )

    async def all_up() -> bool:
        ids = set(pool.worker_ids())
        return len(ids) == PROCESSES and ids <= {w.worker_id for w in await observer.query_workers()}

    await eventually(all_up, 60, f"{PROCESSES} worker processes")

    def call_delay() -> float:
        return round(rng.uniform(*(LONG_CALL if rng.random() < LONG_SHARE else CALL_DELAY)), 3)

    delays = [[call_delay() for _ in range(rng.randint(1, 3))] for _ in range(ROLLOUTS)]
    requests = [
        EnqueueRolloutRequest(input={"delays": d, "mark": str(i)}, config=CHAOS_CONFIG) for i, d in enumerate(delays)
    ]
    chaos = Chaos(pool, rng)
    started = time.monotonic()
    chaos.start()
    reclaims: dict[int, float] = {}
    watching = asyncio.create_task(watch_reclaims(observer, chaos, reclaims))
    try:
        ids = [r.rollout_id for r in await observer.enqueue_many_rollouts(requests)]
        done = await wait_or_stall(observer, ids, chaos, deadline=time.monotonic() + 300)
    finally:
        chaos.stop()
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    took = time.monotonic() - started

    unfinished = [r for r in await observer.query_rollouts(rollout_id_in=ids) if r.status not in TERMINAL_STATUSES]
    stranded = {
        r.rollout_id: (r.status, [a.status for a in (await observer.query_attempts(r.rollout_id)).items])
        for r in unfinished
    }
    assert not stranded, f"{len(stranded)} rollouts stranded, e.g. {list(stranded.items())[:5]}"
    assert len(done) == ROLLOUTS and {r.status for r in done.values()} <= TERMINAL_STATUSES
    calls_of = dict(zip(ids, (len(d) for d in delays), strict=True))
    attempts_per_rollout: collections.Counter[int] = collections.Counter()
    superseded: collections.Counter[str] = collections.Counter()
    for rollout in done.values():
        superseded.update(await check_rollout(observer, rollout, calls_of[rollout.rollout_id], chaos))
        attempts_per_rollout[len((await observer.query_attempts(rollout.rollout_id)).items)] += 1
    # Each terminal transition notifies `done` once: a second entry would mean a stale attempt moved it again.
    notices = collections.Counter(
        fields[b"rid"].decode() for _id, fields in await observer._redis.xrange(observer.keys.done)
    )
    assert set(notices) == set(ids) and set(notices.values()) == {1}

    async def queue_drained() -> bool:
        return await observer.pending_entries() == 0 and await observer.queue_depth() == 0

    await eventually(queue_drained, 10, "no stream entry pending or queued")
    retried = sum((n - 1) * count for n, count in attempts_per_rollout.items())
    statuses = collections.Counter(r.status for r in done.values())
    assert len(chaos.killed) >= 3 and len(chaos.stops) >= 3, "the run ended before the chaos did anything worth testing"

    async def every_kill_restarted() -> bool:
        log = pool.log()
        return log.count("was killed by SIGKILL") == log.count("restarting it in") == len(chaos.killed)

    await eventually(every_kill_restarted, 10, "the supervisor to notice and restart every killed process")
    report = {
        "rollouts": ROLLOUTS,
        "llm_calls": sum(calls_of.values()),
        "seconds": round(took, 1),
        "kills": len(chaos.killed),
        "stops": len(chaos.stops),
        "stops_past_the_lease": sum(1 for s in chaos.stops if s > LEASE),
        "stranded": len(stranded),
        "retried_attempts": retried,
        "attempts_per_rollout": dict(sorted(attempts_per_rollout.items())),
        "statuses": dict(statuses),
        **dict(sorted(superseded.items())),
        "results_dropped_by_resumed_workers": pool.log().count("result dropped"),
        "reclaim_seconds_min_median_max": [round(x, 2) for x in quantiles(list(reclaims.values()))],
    }
    for key, value in report.items():
        record_property(key, value)
    print(f"\nchaos run: {report}")
    assert statuses["succeeded"] >= ROLLOUTS * 0.99, report
    # The stream entries a killed worker held are reclaimed about a lease (+ a sweep period) after the kill,
    # or after the last span its proxy calls recorded.
    assert reclaims and max(reclaims.values()) < LEASE + max(LONG_CALL) + 10.0, report


def quantiles(values: list[float]) -> list[float]:
    ordered = sorted(values) or [float("nan")]
    return [ordered[0], ordered[len(ordered) // 2], ordered[-1]]
