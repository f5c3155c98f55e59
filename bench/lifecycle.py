"""Scenario `lifecycle`: no-op rollouts end to end with K worker processes.

Three backends run the same workload (`bench.workload`) in one run, interleaved per repetition so
that the machine's noise hits them alike: lightning-queue (`lq`), Agent-Lightning 0.3.0's
client-server store (`al`, the baseline) and a minimal redis-py loop with the same round trips per
rollout (`raw`, the Redis limit). Worker pools start once per K and idle between rounds (blocked on
their stdin), so process start-up and imports stay out of the timed rounds. `redis-benchmark`
figures for the commands the store uses close the scenario.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis

from lightning_queue import RedisLightningStore
from lightning_queue.types import EnqueueRolloutRequest

from . import raw_loop
from .baseline import baseline_python
from .children import ChildGroup, LineChild, RedisServer, child_env, free_port
from .stats import latency_summary, median, table
from .worker_pool import LqWorkerPool
from .workload import algorithm_round

BACKENDS = ("lq", "al", "raw", "workers")
# Only with `reference_tree`: the `lq worker` pool of another checkout (say, main before a change),
# interleaved with this tree's in the same run, so both meet the same noise.
REFERENCE = "workers-ref"
LABELS = {
    "lq": "lightning-queue",
    "al": "Agent-Lightning 0.3.0",
    "raw": "raw redis-py loop",
    "workers": "lightning-queue, `lq worker` pool",
    REFERENCE: "`lq worker` pool of the reference tree",
}
WORKER_POOLS = ("workers", REFERENCE)


@dataclass
class LifecycleOptions:
    rollouts: int = 2000
    workers: tuple[int, ...] = (1, 2, 4, 8)
    repeat: int = 3
    backends: tuple[str, ...] = BACKENDS
    batch: int = 8  # rollouts one worker claims (and then runs concurrently) per claim call
    chunk: int = 100  # rollouts per enqueue_many_rollouts call
    window: int = 256  # oldest unseen rollouts named by one wait_for_rollouts call
    wait_slice: float = 0.05  # seconds per wait_for_rollouts call (or per poll of the baseline)
    read_concurrency: int = 16  # query_spans calls in flight on the algorithm side
    poll_interval: float = 0.05  # the baseline workers' sleep when the queue is empty
    baseline_python: str | None = None
    reference_tree: Path | None = None  # a checkout whose `lq worker` runs the `workers-ref` row
    redis_benchmark_requests: int = 50_000
    workdir: Path = field(default_factory=lambda: Path("bench/results/work"))

    @property
    def deadline_seconds(self) -> float:
        # Generous: the baseline at ~100 rollouts/s must finish; bounded so a stuck run ends.
        return 60.0 + self.rollouts / 10


@dataclass
class Pool:
    backend: str
    workers: list[LineChild]
    server: LineChild | None = None


def _start_pool(group: ChildGroup, backend: str, k: int, opts: LifecycleOptions) -> Pool:
    logs = opts.workdir / "logs"
    if backend in WORKER_POOLS:
        return Pool(backend, [])  # an `lq worker` pool per round: its namespace is a command-line option
    if backend == "al":
        python = baseline_python(opts.baseline_python)
        env = child_env({"LITELLM_LOCAL_MODEL_COST_MAP": "True"})
        server = group.add(
            LineChild([python, "-m", "bench.al_store", "server"], log_path=logs / "al-server.log", env=env)
        )
        argv = [python, "-m", "bench.al_store", "worker"]
    else:
        env = child_env()
        server = None
        argv = [sys.executable, "-m", "bench.worker", "--backend", backend]
    workers = []
    for i in range(k):
        consumer = f"{backend}-w{i}"
        workers.append(
            group.add(
                LineChild(
                    [*argv, "--consumer", consumer, "--batch", str(opts.batch)],
                    log_path=logs / f"{consumer}.log",
                    env=env,
                )
            )
        )
    return Pool(backend, workers, server)


def _wait_ready(pool: Pool) -> None:
    # Importing agentlightning takes seconds per process, longer when eight start at once on two cores.
    for child in [*([pool.server] if pool.server else []), *pool.workers]:
        child.recv(timeout=300)


async def _lq_algorithm(url: str, namespace: str, opts: LifecycleOptions) -> dict[str, Any]:
    store = RedisLightningStore(url, namespace=namespace, scan_debounce_seconds=10)

    async def enqueue(inputs: list[dict[str, Any]]) -> list[tuple[str, float]]:
        made = await store.enqueue_many_rollouts([EnqueueRolloutRequest(input=x) for x in inputs])
        return [(r.rollout_id, r.start_time) for r in made]

    claimed_at: dict[str, float] = {}

    async def wait(pending: list[str]) -> list[tuple[str, float | None]]:
        done = await store.wait_for_rollouts(rollout_ids=pending, timeout=opts.wait_slice)
        for r in done:
            # The claim script stamps the attempt: the claim time of workers that report none.
            attempt = getattr(r, "attempt", None)
            if attempt is not None:
                claimed_at[r.rollout_id] = attempt.start_time
        return [(r.rollout_id, r.end_time) for r in done]

    async def read_spans(rid: str) -> int:
        return len(await store.query_spans(rid))

    try:
        await store.ping()
        result = await algorithm_round(
            enqueue=enqueue,
            wait=wait,
            read_spans=read_spans,
            rollouts=opts.rollouts,
            chunk=opts.chunk,
            window=opts.window,
            read_concurrency=opts.read_concurrency,
            deadline_seconds=opts.deadline_seconds,
        )
    finally:
        await store.aclose()
    result["claimed_at"] = claimed_at
    return result


async def _purge(backend: str, url: str, namespace: str) -> None:
    # Only once the workers stopped: deleting the stream under a blocked XREADGROUP fails it.
    if backend == "raw":
        await raw_loop.purge(url, namespace)
    elif backend in ("lq", *WORKER_POOLS):
        store = RedisLightningStore(url, namespace=namespace)
        try:
            await store.purge()
        finally:
            await store.aclose()


def _counters(client: redis.Redis, pid: int | None) -> dict[str, Any]:
    stats = client.info("stats")
    commandstats = client.info("commandstats")
    cpu = psutil.Process(pid).cpu_times() if pid else None
    machine = psutil.cpu_times()
    return {
        "by_command": {k.removeprefix("cmdstat_"): float(v["calls"]) for k, v in commandstats.items()},
        "commands": float(stats["total_commands_processed"]),
        "cpu_s": float(cpu.user + cpu.system) if cpu else 0.0,
        # The machine is shared: how busy all its cores were says whether others competed with us.
        "machine_busy_s": float(
            machine.user
            + machine.system
            + getattr(machine, "nice", 0.0)
            + getattr(machine, "irq", 0.0)
            + getattr(machine, "softirq", 0.0)
        ),
    }


async def _run_round(pool: Pool, k: int, opts: LifecycleOptions, server: RedisServer, rep: int) -> dict[str, Any]:
    """One round with the first `k` workers of the pool (the others stay idle on their stdin)."""
    backend = pool.backend
    workers = pool.workers[:k]
    namespace = f"bench-{backend}-{uuid.uuid4().hex[:10]}"
    url = server.url
    if pool.server is not None:
        pool.server.send({"cmd": "go", "phase": "serve", "port": free_port()})
        url = pool.server.recv(timeout=60)["url"]
    client = redis.Redis.from_url(server.url)
    redis_pid = server.proc.pid if server.proc else None
    try:
        command = {"cmd": "go", "url": url, "namespace": namespace, "poll_interval": opts.poll_interval}
        for worker in workers:
            worker.send(command)
        for worker in workers:
            worker.recv(timeout=60)  # {"started": true}
        lq_pool = None
        if backend in WORKER_POOLS:
            log = opts.workdir / "logs" / f"{backend}-k{k}.log"
            tree = opts.reference_tree if backend == REFERENCE else None
            lq_pool = LqWorkerPool(url, namespace, k, opts.batch, log, repo_root=tree).start()
        before = _counters(client, redis_pid)
        pool_cpu0 = lq_pool.cpu_seconds() if lq_pool else 0.0
        cpu0 = time.process_time()
        try:
            if backend in ("lq", *WORKER_POOLS):
                algo = await _lq_algorithm(url, namespace, opts)
            elif backend == "raw":
                algo = await raw_loop.algorithm(
                    url,
                    namespace,
                    rollouts=opts.rollouts,
                    chunk=opts.chunk,
                    window=opts.window,
                    wait_slice=opts.wait_slice,
                    read_concurrency=opts.read_concurrency,
                    deadline_seconds=opts.deadline_seconds,
                )
            else:
                assert pool.server is not None
                pool.server.send(
                    {
                        "cmd": "go",
                        "phase": "algorithm",
                        "rollouts": opts.rollouts,
                        "chunk": opts.chunk,
                        "window": opts.window,
                        "wait_slice": opts.wait_slice,
                        "read_concurrency": opts.read_concurrency,
                        "deadline_seconds": opts.deadline_seconds,
                    }
                )
                algo = await asyncio.to_thread(pool.server.recv, opts.deadline_seconds + 60)
            algorithm_cpu = algo.get("cpu_s", time.process_time() - cpu0)
            after = _counters(client, redis_pid)
            if lq_pool is not None:
                # The runtime reports no claim times: the attempts' start times (set by the claim) stand in.
                cpu = lq_pool.cpu_seconds() - pool_cpu0
                lq_results = [{"claimed_at": algo["claimed_at"], "completed": algo["finished"], "cpu_s": cpu}]
        finally:
            if lq_pool is not None:
                lq_pool.stop()
            for worker in workers:
                worker.send({"cmd": "stop"})
            results = [worker.recv(timeout=60) for worker in workers]
            await _purge(backend, url, namespace)
        if lq_pool is not None:
            results = lq_results
    finally:
        client.close()
        if pool.server is not None:
            pool.server.send({"cmd": "go", "phase": "close"})
            pool.server.recv(timeout=60)

    start_time: dict[str, float] = algo["start_time"]
    to_claim = [
        (claimed - start_time[rid]) * 1000
        for result in results
        for rid, claimed in result["claimed_at"].items()
        if rid in start_time
    ]
    elapsed = float(algo["elapsed_s"])
    completed = sum(int(r["completed"]) for r in results)
    row: dict[str, Any] = {
        "backend": backend,
        "workers": k,
        "rep": rep,
        "rollouts": opts.rollouts,
        "finished": algo["finished"],
        "completed_by_workers": completed,
        "wrong_span_counts": algo["wrong_span_counts"],
        "elapsed_s": elapsed,
        "rollouts_per_s": algo["rollouts_per_s"],
        "wait_calls": algo["wait_calls"],
        "enqueue_to_claim_ms": latency_summary(to_claim),
        "complete_to_seen_ms": latency_summary(algo["complete_to_seen_ms"]),
        "algorithm_cpu_pct": 100 * algorithm_cpu / elapsed,
        "workers_cpu_pct": 100 * sum(float(r["cpu_s"]) for r in results) / elapsed,
        "machine_cpu_pct": 100 * (after["machine_busy_s"] - before["machine_busy_s"]) / elapsed,
    }
    # CPU per rollout by role: unlike rollouts/s, barely moved by other tenants of a shared machine,
    # and cores / (total CPU per rollout) bounds the throughput this machine can reach.
    finished = max(1, int(algo["finished"]))
    row["cpu_ms_per_rollout"] = {
        "algorithm": 1000 * algorithm_cpu / finished,
        "workers": 1000 * sum(float(r["cpu_s"]) for r in results) / finished,
    }
    if backend != "al":
        row["cpu_ms_per_rollout"]["redis"] = 1000 * (after["cpu_s"] - before["cpu_s"]) / finished
        row["redis_cpu_pct"] = 100 * (after["cpu_s"] - before["cpu_s"]) / elapsed
        row["redis_commands_per_rollout"] = (after["commands"] - before["commands"]) / opts.rollouts
        # Calls per rollout by command, commands run inside Lua scripts included.
        row["redis_calls_per_rollout"] = {
            name: (calls - before["by_command"].get(name, 0.0)) / opts.rollouts
            for name, calls in sorted(after["by_command"].items(), key=lambda kv: -kv[1])
            if calls > before["by_command"].get(name, 0.0)
        }
    row["cpu_ms_per_rollout"]["total"] = sum(row["cpu_ms_per_rollout"].values())
    if algo["finished"] != opts.rollouts or algo["wrong_span_counts"]:
        row["error"] = (
            f"{algo['finished']} of {opts.rollouts} rollouts seen, "
            f"{algo['wrong_span_counts']} with a wrong number of spans"
        )
    return row


def redis_benchmark(port: int, requests: int, clients: int = 8) -> list[dict[str, Any]]:
    """`redis-benchmark` (one client per worker process of K=8, no pipelining) for the commands used."""
    binary = "redis-benchmark"
    one_write = "return redis.call('HSET', KEYS[1], 'f', ARGV[1])"
    base = [binary, "-p", str(port), "-n", str(requests), "-c", str(clients), "-q", "--csv"]
    runs = [
        [*base, "-t", "ping_mbulk,hset,zadd"],
        [*base, "-r", "100000", "XADD", "bench:rb:stream", "MAXLEN", "~", "10000", "*", "rid", "__rand_int__"],
        [*base, "-r", "100000", "HMGET", "bench:rb:h:__rand_int__", "status", "latest", "end_time"],
        [*base, "ZRANGE", "bench:rb:z", "0", "-1"],
        # The floor of one Lua transition: EVAL's fixed cost with one write.
        [*base, "-r", "100000", "EVAL", one_write, "1", "bench:rb:e:__rand_int__", "v"],
    ]
    rows: list[dict[str, Any]] = []
    for argv in runs:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
        except FileNotFoundError:
            return [{"command": "redis-benchmark not installed", "rps": float("nan")}]
        for line in out.splitlines()[1:]:
            parts = [p.strip('"') for p in line.split('","')]
            if len(parts) >= 7:
                name = parts[0].split(" bench:")[0][:40]
                rows.append(
                    {"command": name, "rps": float(parts[1]), "p50_ms": float(parts[4]), "p99_ms": float(parts[6])}
                )
    return rows


def summarize(rows: list[dict[str, Any]], opts: LifecycleOptions) -> dict[str, Any]:
    """Medians over repetitions per (backend, K), and per-K ratios measured within each repetition."""
    summary: dict[str, Any] = {}
    for backend in opts.backends:
        for k in opts.workers:
            mine = [r for r in rows if r["backend"] == backend and r["workers"] == k and "error" not in r]
            if not mine:
                continue
            entry = {
                "rollouts_per_s": median(r["rollouts_per_s"] for r in mine),
                "enqueue_to_claim_p50_ms": median(r["enqueue_to_claim_ms"]["p50"] for r in mine),
                "enqueue_to_claim_p99_ms": median(r["enqueue_to_claim_ms"]["p99"] for r in mine),
                "complete_to_seen_p50_ms": median(r["complete_to_seen_ms"]["p50"] for r in mine),
                "complete_to_seen_p99_ms": median(r["complete_to_seen_ms"]["p99"] for r in mine),
                "algorithm_cpu_pct": median(r["algorithm_cpu_pct"] for r in mine),
                "workers_cpu_pct": median(r["workers_cpu_pct"] for r in mine),
                "machine_cpu_pct": median(r["machine_cpu_pct"] for r in mine),
                "cpu_ms_per_rollout": {
                    role: median(r["cpu_ms_per_rollout"][role] for r in mine) for role in mine[0]["cpu_ms_per_rollout"]
                },
                "repetitions": len(mine),
            }
            if backend != "al":
                entry["redis_cpu_pct"] = median(r["redis_cpu_pct"] for r in mine)
                entry["redis_commands_per_rollout"] = median(r["redis_commands_per_rollout"] for r in mine)
            summary[f"{backend}/K={k}"] = entry
    ratios: dict[str, Any] = {}
    pairs = [("lq", "al"), ("lq", "raw"), ("workers", "lq"), ("workers", REFERENCE)]
    for k in opts.workers:
        for ours_name, other in pairs:
            per_rep = []
            for rep in range(opts.repeat):
                ours = _rate(rows, ours_name, k, rep)
                theirs = _rate(rows, other, k, rep)
                if ours and theirs:
                    per_rep.append(ours / theirs)
            if per_rep:
                ratios[f"{ours_name}/{other}/K={k}"] = median(per_rep)
    return {"by_backend": summary, "ratios": ratios}


def _rate(rows: list[dict[str, Any]], backend: str, k: int, rep: int) -> float | None:
    for r in rows:
        if r["backend"] == backend and r["workers"] == k and r["rep"] == rep and "error" not in r:
            return float(r["rollouts_per_s"])
    return None


async def run(opts: LifecycleOptions) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    opts.workdir.mkdir(parents=True, exist_ok=True)
    if "al" in opts.backends:
        baseline_python(opts.baseline_python)  # create the venv now, not inside a timed region
    with RedisServer(opts.workdir / "redis") as server:
        # One pool per backend, as large as the largest K, started once: a round uses its first K
        # workers. Repetitions run K and backends interleaved, so drifting noise hits all alike.
        with ChildGroup() as group:
            pools = {b: _start_pool(group, b, max(opts.workers), opts) for b in opts.backends}
            for pool in pools.values():
                _wait_ready(pool)
            for rep in range(opts.repeat):
                for k in opts.workers:
                    for backend in opts.backends:
                        row = await _run_round(pools[backend], k, opts, server, rep)
                        rows.append(row)
                        print(_progress(row), file=sys.stderr, flush=True)
        benchmark = redis_benchmark(server.port, opts.redis_benchmark_requests) if "raw" in opts.backends else []
    return {
        "scenario": "lifecycle",
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items() if k != "workdir"},
        "rows": rows,
        **summarize(rows, opts),
        "redis_benchmark": benchmark,
    }


def _progress(row: dict[str, Any]) -> str:
    status = f" ERROR {row['error']}" if "error" in row else ""
    return (
        f"  lifecycle {row['backend']:>3} K={row['workers']} rep {row['rep']}: "
        f"{row['rollouts_per_s']:,.0f} rollouts/s in {row['elapsed_s']:.2f} s "
        f"(machine CPU {row['machine_cpu_pct']:.0f} %){status}"
    )


def render(result: dict[str, Any]) -> str:
    opts = result["options"]
    by = result["by_backend"]
    ratios = result["ratios"]
    workers = opts["workers"]
    backends = opts["backends"]
    heads = ["K", *(f"{LABELS[b]} rollouts/s" for b in backends)]
    if "al" in backends:
        heads.append("lq / baseline")
    if "raw" in backends:
        heads.append("lq / raw loop")
    if "workers" in backends and "lq" in backends:
        heads.append("`lq worker` / lq")
    if "workers" in backends and REFERENCE in backends:
        heads.append("`lq worker` / reference")
    lines = []
    for k in workers:
        line: list[Any] = [k]
        line += [by.get(f"{b}/K={k}", {}).get("rollouts_per_s", float("nan")) for b in backends]
        if "al" in backends:
            line.append(f"{ratios.get(f'lq/al/K={k}', float('nan')):.1f}×")
        if "raw" in backends:
            line.append(f"{100 * ratios.get(f'lq/raw/K={k}', float('nan')):.0f} %")
        if "workers" in backends and "lq" in backends:
            line.append(f"{100 * ratios.get(f'workers/lq/K={k}', float('nan')):.0f} %")
        if "workers" in backends and REFERENCE in backends:
            line.append(f"{ratios.get(f'workers/{REFERENCE}/K={k}', float('nan')):.2f}×")
        lines.append(line)
    out = [
        f"No-op rollout lifecycle: R={opts['rollouts']}, medians of {opts['repeat']} repetitions "
        "(ratios: median of the per-repetition ratios)",
        table(heads, lines),
        "",
        "Per stage: medians of the per-run percentiles (ms). CPU: ms of CPU time per rollout by role (the "
        "baseline's algorithm column includes its HTTP server); machine: how busy both cores were (%), "
        "other tenants included.",
    ]
    detail_heads = [
        "backend",
        "K",
        "enq→claim p50",
        "p99",
        "done→seen p50",
        "p99",
        "CPU algo",
        "workers",
        "Redis",
        "total",
        "machine %",
        "Redis cmds/rollout",
    ]
    detail = []
    for b in backends:
        for k in workers:
            e = by.get(f"{b}/K={k}")
            if e is None:
                continue
            cpu = e["cpu_ms_per_rollout"]
            detail.append(
                [
                    b,
                    k,
                    e["enqueue_to_claim_p50_ms"],
                    e["enqueue_to_claim_p99_ms"],
                    e["complete_to_seen_p50_ms"],
                    e["complete_to_seen_p99_ms"],
                    cpu["algorithm"],
                    cpu["workers"],
                    cpu.get("redis", float("nan")),
                    cpu["total"],
                    e["machine_cpu_pct"],
                    e.get("redis_commands_per_rollout", float("nan")),
                ]
            )
    out.append(table(detail_heads, detail, digits=(0, 0, 1, 1, 1, 1, 3, 3, 3, 3, 0, 1)))
    errors = [r for r in result["rows"] if "error" in r]
    if errors:
        out.append("")
        out += [f"ERROR {r['backend']} K={r['workers']} rep {r['rep']}: {r['error']}" for r in errors]
    if result.get("redis_benchmark"):
        out += ["", "redis-benchmark, 8 clients, no pipelining"]
        out.append(
            table(
                ["command", "requests/s", "p50 ms", "p99 ms"],
                [[r["command"], r["rps"], r.get("p50_ms"), r.get("p99_ms")] for r in result["redis_benchmark"]],
            )
        )
    return "\n".join(out)
