"""Scenario `proxy`: what the LLM proxy adds to a call, measured by `bench/proxy_overhead.py`.

That script belongs to the LLM-proxy issue; this wrapper imports it lazily, calls its
`main(Namespace(calls, concurrency, seconds))` coroutine `repeat` times and takes medians. When the
script is missing (or has another shape) the scenario reports "not available" and why, instead of
failing the other scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import sys
from typing import Any

from .stats import median, table

CONCURRENCY = 64


def _load() -> tuple[Any, str | None]:
    try:
        module = importlib.import_module("bench.proxy_overhead")
    except ModuleNotFoundError as exc:
        if exc.name == "bench.proxy_overhead":
            return None, "bench/proxy_overhead.py is not in this checkout (the LLM-proxy issue provides it)"
        raise
    main = getattr(module, "main", None)
    if main is None or not inspect.iscoroutinefunction(main):
        return None, "bench/proxy_overhead.py has no `async def main(args) -> dict` to call"
    return module, None


def run(*, quick: bool = False, repeat: int = 3) -> dict[str, Any]:
    module, reason = _load()
    if module is None:
        return {"scenario": "proxy", "available": False, "reason": reason}
    args = argparse.Namespace(
        calls=20 if quick else 400, concurrency=CONCURRENCY, seconds=0.5 if quick else 5.0, out=None
    )
    runs = []
    for rep in range(repeat):
        result = asyncio.run(module.main(args))
        runs.append(result)
        added = result["latency"]["plain"]["added"]
        print(f"  proxy rep {rep}: +{added['p50_ms']:.2f} ms p50", file=sys.stderr, flush=True)
    summary: dict[str, float] = {}
    for kind in ("plain", "stream"):
        for path in ("direct", "proxied", "added"):
            for q in ("p50_ms", "p99_ms"):
                summary[f"{kind}_{path}_{q}"] = median(r["latency"][kind][path][q] for r in runs)
    summary["direct_calls_per_s"] = median(r["throughput"]["direct"] for r in runs)
    summary["proxied_calls_per_s"] = median(r["throughput"]["proxied"] for r in runs)
    return {
        "scenario": "proxy",
        "available": True,
        "options": {"calls": args.calls, "concurrency": args.concurrency, "seconds": args.seconds, "repeat": repeat},
        "summary": summary,
        "runs": runs,
    }


def render(result: dict[str, Any]) -> str:
    if not result.get("available"):
        return f"LLM proxy overhead: not available: {result.get('reason')}"
    s = result["summary"]
    o = result["options"]
    rows = [
        [f"{kind} call {q[:3]}", s[f"{kind}_direct_{q}"], s[f"{kind}_proxied_{q}"], s[f"{kind}_added_{q}"]]
        for kind in ("plain", "stream")
        for q in ("p50_ms", "p99_ms")
    ]
    rows.append(
        [
            f"calls/s at {o['concurrency']} clients",
            f"{s['direct_calls_per_s']:,.0f}",
            f"{s['proxied_calls_per_s']:,.0f}",
            f"{s['proxied_calls_per_s'] - s['direct_calls_per_s']:+,.0f}",
        ]
    )
    head = (
        f"LLM proxy overhead against the stand-in model (bench/proxy_overhead.py), medians of {o['repeat']} "
        f"runs; latency in ms over {o['calls']} sequential calls"
    )
    return head + "\n" + table(["", "direct", "proxied", "added"], rows, digits=(0, 2, 2, 2))
