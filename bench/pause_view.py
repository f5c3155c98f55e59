"""What the proxy's weight-sync barrier costs, and how fast it reacts.

For each read interval (`pause_poll`): the Redis commands per second an idle proxy sends (its pause view
and its status record), how long after `pause_claims()` returns the first new call gets 503, how long
after the last in-flight call ends `wait_proxies_drained` returns, and the latency of calls through the
proxy (the barrier's check is a cached read, so this should not move with the interval).

Runs a private redis-server (else the embedded server), the stand-in model and the proxy in this process.

    python bench/pause_view.py [--polls 0.1 0.25] [--rounds 20] [--calls 300] [--out pause_view.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
import uuid
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench.proxy_overhead import redis_url
from lightning_queue import RedisLightningStore
from lightning_queue.llm_proxy import LLMProxy, UpstreamModel, wait_proxies_drained
from lightning_queue.testing import Reply, StandInModelServer

MODEL = "bench"


def body(i: int) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"call {i}"}]}


async def total_commands(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values() if isinstance(v, dict))


async def idle_commands_per_second(client: aioredis.Redis, seconds: float) -> float:
    before = await total_commands(client)
    await asyncio.sleep(seconds)
    after = await total_commands(client)
    return (after - before - 1) / seconds  # the INFO of the first read counts itself once


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    async with session.post(url, json=body(0)) as response:
        await response.read()
        return response.status


async def time_to_refuse(session: aiohttp.ClientSession, store: RedisLightningStore, url: str) -> float:
    """From pause_claims() returning to the first 503 of a client calling in a loop."""
    holder = await store.pause_claims(30.0)
    paused_at = time.perf_counter()
    try:
        while await status_of(session, url) != 503:
            pass
        return time.perf_counter() - paused_at
    finally:
        await store.resume_claims(holder)
        # Wait until the proxy serves again, so the next round starts unpaused.
        for _ in range(2000):
            if await status_of(session, url) == 200:
                break
            await asyncio.sleep(0.005)


async def time_to_drained(
    session: aiohttp.ClientSession, store: RedisLightningStore, url: str, stand_in: StandInModelServer
) -> float:
    """From the end of the one call in flight to wait_proxies_drained() returning."""
    stand_in.script(Reply(content="slow", delay=0.2))
    call = asyncio.ensure_future(status_of(session, url))
    await asyncio.sleep(0.05)
    holder = await store.pause_claims(30.0)
    ended: list[float] = []
    call.add_done_callback(lambda _: ended.append(time.perf_counter()))
    try:
        await wait_proxies_drained(store, timeout=10.0)
        drained = time.perf_counter()
        await call
        return drained - ended[0]
    finally:
        await store.resume_claims(holder)


async def latencies(session: aiohttp.ClientSession, url: str, calls: int) -> dict[str, float]:
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        async with session.post(url, json=body(i)) as response:
            await response.read()
        samples.append(time.perf_counter() - start)
    cut = statistics.quantiles(sorted(samples), n=100)
    return {"p50_ms": cut[49] * 1000, "p99_ms": cut[98] * 1000}


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


async def one_interval(url: str, poll: float, args: argparse.Namespace) -> dict[str, Any]:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    store = RedisLightningStore(url, namespace=namespace)
    counter = aioredis.Redis.from_url(url)
    try:
        async with StandInModelServer(token_ids="always") as stand_in:
            model = UpstreamModel(name=MODEL, base_url=stand_in.url, model=stand_in.model)
            async with LLMProxy(
                model_list=[model], store=store, launch_mode="asyncio", pause_poll=poll, pause_retry_after=0.1
            ) as proxy:
                attempt = await store.start_rollout(input="bench")
                call_url = f"{proxy.endpoint}/rollout/{attempt.rollout_id}/attempt/{attempt.attempt.attempt_id}"
                call_url += "/v1/chat/completions"
                idle = await idle_commands_per_second(counter, args.idle_seconds)
                async with aiohttp.ClientSession() as session:
                    await latencies(session, call_url, 20)  # warm-up
                    latency = await latencies(session, call_url, args.calls)
                    refuse = [await time_to_refuse(session, store, call_url) for _ in range(args.rounds)]
                    drained = [await time_to_drained(session, store, call_url, stand_in) for _ in range(args.rounds)]
    finally:
        await store.purge()
        await store.aclose()
        await counter.aclose()
    return {
        "pause_poll_s": poll,
        "idle_redis_commands_per_s": idle,
        "call_latency": latency,
        "pause_to_first_503": summary(refuse),
        "last_call_end_to_drained": summary(drained),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'poll s':>7}{'idle cmd/s':>12}{'call p50 ms':>13}{'call p99 ms':>13}"
    head += f"{'503 p50 ms':>12}{'503 max ms':>12}{'drain p50 ms':>14}{'drain max ms':>14}"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['pause_poll_s']:7.2f}{r['idle_redis_commands_per_s']:12.1f}"
            f"{r['call_latency']['p50_ms']:13.3f}{r['call_latency']['p99_ms']:13.3f}"
            f"{r['pause_to_first_503']['p50_ms']:12.1f}{r['pause_to_first_503']['max_ms']:12.1f}"
            f"{r['last_call_end_to_drained']['p50_ms']:14.1f}{r['last_call_end_to_drained']['max_ms']:14.1f}"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    async with redis_url() as url:
        rows = [await one_interval(url, poll, args) for poll in args.polls]
    return {
        "rows": rows,
        "rounds": args.rounds,
        "calls": args.calls,
        "python": sys.version.split()[0],
        "machine": platform.platform(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=float, nargs="+", default=[0.1, 0.25])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--out", default="pause_view.json")
    arguments = parser.parse_args()
    results = asyncio.run(main(arguments))
    print(table(results["rows"]))
    with open(arguments.out, "w", encoding="utf-8") as out:
        json.dump(results, out, indent=2)
    print(f"wrote {arguments.out}")
