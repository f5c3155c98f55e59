"""What the LLM proxy adds to a call: latency (p50/p99) and throughput at 64 concurrent clients.

Runs the stand-in model and `lq proxy` as separate processes on loopback, a Redis for the spans
(a private redis-server when one is installed, else the embedded server), and measures the same calls
sent to the stand-in directly and through the proxy. The stand-in answers in well under a millisecond,
so the difference is the proxy's own cost: parsing, forwarding, one sequence id and one span per call.

    python bench/proxy_overhead.py [--calls 400] [--concurrency 64] [--seconds 5] [--out proxy_overhead.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from lightning_queue import RedisLightningStore
from lightning_queue.store.embedded import start_embedded_server

MODEL = "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def process(*command: str, ready_prefix: str) -> AsyncIterator[str]:
    """Start a child process and yield the first stdout line that starts with `ready_prefix`."""
    child = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert child.stdout is not None
        while True:
            line = (await asyncio.wait_for(child.stdout.readline(), timeout=60)).decode()
            if not line:
                raise RuntimeError(f"{command[:4]} exited before it was ready")
            if line.startswith(ready_prefix):
                yield line.strip()
                return
    finally:
        if child.returncode is None:
            child.terminate()
            await asyncio.wait_for(child.wait(), timeout=20)


@asynccontextmanager
async def redis_url() -> AsyncIterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield start_embedded_server()
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        args = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ]
        child = await asyncio.create_subprocess_exec(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                else:
                    writer.close()
                    break
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            child.terminate()
            await asyncio.wait_for(child.wait(), timeout=10)


def body(i: int, stream: bool) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"call number {i}"}], "stream": stream}


async def one_call(session: aiohttp.ClientSession, url: str, payload: dict[str, Any]) -> float:
    start = time.perf_counter()
    async with session.post(url, json=payload) as response:
        await response.read()  # a stream is read to its end
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")
    return time.perf_counter() - start


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cut = statistics.quantiles(ordered, n=100)
    return {"p50_ms": cut[49] * 1000, "p99_ms": cut[98] * 1000, "mean_ms": statistics.fmean(ordered) * 1000}


async def latency(
    session: aiohttp.ClientSession, direct: str, proxied: str, calls: int, stream: bool
) -> dict[str, Any]:
    """Sequential calls, alternating direct and proxied so drift hits both alike."""
    times: dict[str, list[float]] = {"direct": [], "proxied": []}
    for i in range(20):  # warm up connections on both paths
        await one_call(session, direct, body(i, stream))
        await one_call(session, proxied, body(i, stream))
    for i in range(calls):
        times["direct"].append(await one_call(session, direct, body(i, stream)))
        times["proxied"].append(await one_call(session, proxied, body(i, stream)))
    result = {name: percentiles(samples) for name, samples in times.items()}
    result["added"] = {k: result["proxied"][k] - result["direct"][k] for k in result["direct"]}
    return result


async def throughput(urls: list[str], concurrency: int, seconds: float) -> float:
    """Calls per second with `concurrency` clients each calling in a loop (client i uses urls[i % len])."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds
        counts = [0] * concurrency

        async def client(index: int) -> None:
            url = urls[index % len(urls)]
            while time.perf_counter() < deadline:
                await one_call(session, url, body(counts[index], False))
                counts[index] += 1

        start = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(concurrency)))
        return sum(counts) / (time.perf_counter() - start)


def table(results: dict[str, Any]) -> str:
    lines = [f"{'':28}{'direct':>12}{'proxied':>12}{'added':>12}"]
    for kind in ("plain", "stream"):
        r = results["latency"][kind]
        for key in ("p50_ms", "p99_ms"):
            label = f"{kind} latency {key[:3]} (ms)"
            lines.append(f"{label:28}{r['direct'][key]:12.3f}{r['proxied'][key]:12.3f}{r['added'][key]:12.3f}")
    t = results["throughput"]
    label = f"calls/s at {results['concurrency']} clients"
    lines.append(f"{label:28}{t['direct']:12.0f}{t['proxied']:12.0f}{t['proxied'] / t['direct'] - 1:+12.1%}")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    python = sys.executable
    async with (
        redis_url() as url,
        process(python, "-m", "lightning_queue.testing", "--token-ids", "always", ready_prefix="stand-in") as line,
    ):
        upstream = line.rsplit(" ", 1)[1]
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        proxy_cmd = [python, "-m", "lightning_queue.cli", "proxy", "--redis-url", url, "--namespace", namespace]
        async with process(*proxy_cmd, "--model", f"{MODEL}={upstream}", ready_prefix="lq proxy: serving") as line:
            endpoint = line.rsplit(" ", 1)[1]
            store = RedisLightningStore(url, namespace=namespace)
            try:
                attempts = [await store.start_rollout(input=i) for i in range(args.concurrency)]
                proxied = [
                    f"{endpoint}/rollout/{a.rollout_id}/attempt/{a.attempt.attempt_id}/v1/chat/completions"
                    for a in attempts
                ]
                direct = f"{upstream}/chat/completions"
                async with aiohttp.ClientSession() as session:
                    plain = await latency(session, direct, proxied[0], args.calls, stream=False)
                    stream = await latency(session, direct, proxied[0], args.calls, stream=True)
                direct_rate = await throughput([direct], args.concurrency, args.seconds)
                proxied_rate = await throughput(proxied, args.concurrency, args.seconds)
                stats = await store.statistics()
            finally:
                await store.purge()
                await store.aclose()
    return {
        "latency": {"plain": plain, "stream": stream},
        "throughput": {"direct": direct_rate, "proxied": proxied_rate},
        "concurrency": args.concurrency,
        "calls": args.calls,
        "seconds": args.seconds,
        "spans_recorded": stats["total_spans"],
        "redis": "redis-server" if shutil.which("redis-server") else "embedded",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="sequential calls per latency series")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput run")
    parser.add_argument("--out", default="proxy_overhead.json", help="where to write the JSON results")
    arguments = parser.parse_args()
    results = asyncio.run(main(arguments))
    print(table(results))
    print(f"spans recorded: {results['spans_recorded']}; {results['machine']['cpus']} CPUs; Redis: {results['redis']}")
    with open(arguments.out, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    print(f"results written to {arguments.out}")
