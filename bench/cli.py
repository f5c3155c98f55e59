"""`python -m bench <scenario>`: run a scenario, print its tables, write its JSON to `--out`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .stats import machine, write_json

SCENARIOS = ("lifecycle", "wakeup", "memory", "proxy", "scale")
# Run by name only, not by `all`: it needs the Agent-Lightning virtualenv and a minute even with --quick.
BY_NAME_ONLY = ("agl-clients",)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,2,4,8, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="lightning-queue benchmarks (docs/benchmarks.md)")
    p.add_argument("scenario", choices=(*SCENARIOS, *BY_NAME_ONLY, "all"))
    p.add_argument(
        "--rollouts",
        type=int,
        help="rollouts per lifecycle round (default 2000; 40 with --quick); agl-clients: per client (300)",
    )
    p.add_argument(
        "--workers",
        type=_ints,
        help="worker process counts K (default 1,2,4,8; 1,2 with --quick); agl-clients: AL client processes (1,4)",
    )
    p.add_argument("--repeat", type=int, help="repetitions; tables show medians (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of seconds (CI)")
    p.add_argument("--no-baseline", action="store_true", help="skip the Agent-Lightning baseline")
    p.add_argument("--baseline-python", help="python of a prepared agentlightning==0.3.0 venv")
    p.add_argument("--backends", help="lifecycle backends to run, a subset of lq,al,raw (default all)")
    p.add_argument(
        "--reference-tree",
        type=Path,
        help="lifecycle: a checkout (e.g. a worktree of main) whose `lq worker` pool runs an extra row, workers-ref",
    )
    p.add_argument("--batch", type=int, help="rollouts a worker claims per call (default 8)")
    p.add_argument("--wait-slice", type=float, help="seconds per wait_for_rollouts call of the algorithm (0.05)")
    p.add_argument("--sizes", type=_ints, help="scale: stored rollouts N (default 1000,10000,100000; quick 200,1000)")
    p.add_argument("--million", action="store_true", help="scale: add N=1,000,000 (minutes to fill, ~1.5 GB of Redis)")
    p.add_argument("--out", type=Path, default=Path("bench/results"), help="where JSON results go")
    return p


def _lifecycle(args: argparse.Namespace) -> tuple[dict[str, Any], Callable[[dict[str, Any]], str]]:
    from . import lifecycle

    opts = lifecycle.LifecycleOptions(workdir=args.out / "work")
    if args.quick:
        opts.rollouts, opts.workers, opts.repeat, opts.redis_benchmark_requests = 40, (1, 2), 1, 2000
    opts.rollouts = args.rollouts or opts.rollouts
    opts.workers = args.workers or opts.workers
    opts.repeat = args.repeat or opts.repeat
    opts.baseline_python = args.baseline_python
    if args.backends:
        opts.backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
        unknown = set(opts.backends) - set(lifecycle.BACKENDS) - {lifecycle.REFERENCE}
        if unknown:
            raise SystemExit(f"unknown backends {sorted(unknown)}; choose from {', '.join(lifecycle.BACKENDS)}")
    if args.no_baseline:
        opts.backends = tuple(b for b in opts.backends if b != "al")
    if args.reference_tree is not None:
        tree = args.reference_tree.resolve()
        if not (tree / "workers" / "__init__.py").is_file() or not (tree / "bench" / "noop_agent.py").is_file():
            raise SystemExit(f"--reference-tree {args.reference_tree}: not a lightning-queue checkout with bench/")
        opts.reference_tree = tree
        if lifecycle.REFERENCE not in opts.backends:
            opts.backends = (*opts.backends, lifecycle.REFERENCE)
    elif lifecycle.REFERENCE in opts.backends:
        raise SystemExit(f"backend {lifecycle.REFERENCE} needs --reference-tree")
    opts.batch = args.batch or opts.batch
    opts.wait_slice = args.wait_slice or opts.wait_slice
    return asyncio.run(lifecycle.run(opts)), lifecycle.render


def _wakeup(args: argparse.Namespace) -> tuple[dict[str, Any], Callable[[dict[str, Any]], str]]:
    from . import wakeup

    opts = wakeup.WakeupOptions(workdir=args.out / "work")
    if args.quick:
        opts.single_trials, opts.crowd_rounds, opts.crowd = 5, 1, 10
    opts.repeat = args.repeat or (1 if args.quick else opts.repeat)
    return asyncio.run(wakeup.run(opts)), wakeup.render


def _memory(args: argparse.Namespace) -> tuple[dict[str, Any], Callable[[dict[str, Any]], str]]:
    from . import memory

    opts = memory.MemoryOptions(workdir=args.out / "work")
    if args.quick:
        opts.rollouts, opts.large_rollouts = 200, 10
    return asyncio.run(memory.run(opts)), memory.render


def _proxy(args: argparse.Namespace) -> tuple[dict[str, Any], Callable[[dict[str, Any]], str]]:
    from . import proxy

    return proxy.run(quick=args.quick, repeat=args.repeat or (1 if args.quick else 3)), proxy.render


def _scale(args: argparse.Namespace) -> tuple[dict[str, Any], Callable[[dict[str, Any]], str]]:
    from . import scale
    from .steady import SteadyOptions

    opts = scale.ScaleOptions(workdir=args.out / "work")
    opts.steady = SteadyOptions(workdir=opts.workdir)
    if args.quick:
        opts.sizes, opts.big_sizes, opts.repeat = (200, 1000), (40,), 3
        opts.steady = SteadyOptions(
            window_s=1.0, windows=0.5, rate=50, batch=5, processes=1, concurrency=8, workdir=opts.workdir
        )
    opts.sizes = args.sizes or opts.sizes
    if args.million:
        opts.sizes = (*opts.sizes, 1_000_000)
    opts.repeat = args.repeat or opts.repeat
    return asyncio.run(scale.run(opts)), scale.render


def _agl_clients(args: argparse.Namespace) -> tuple[dict[str, Any], Callable[[dict[str, Any]], str]]:
    from . import agl_clients

    opts = agl_clients.AglClientsOptions(workdir=args.out / "work", baseline_python=args.baseline_python)
    if args.quick:
        opts.clients, opts.rollouts = (1,), 20
    opts.clients = args.workers or opts.clients
    opts.rollouts = args.rollouts or opts.rollouts
    return agl_clients.run(opts), agl_clients.render


RUNNERS = {
    "lifecycle": _lifecycle,
    "wakeup": _wakeup,
    "memory": _memory,
    "proxy": _proxy,
    "scale": _scale,
    "agl-clients": _agl_clients,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    started = time.monotonic()
    combined: dict[str, Any] = {"machine": machine(), "quick": args.quick, "scenarios": {}}
    failed = False
    for name in scenarios:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            result, render = RUNNERS[name](args)
        except Exception as exc:
            # One broken scenario must not hide the others' numbers; the exit status reports it.
            failed = True
            print(f"bench: {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            combined["scenarios"][name] = {"scenario": name, "error": f"{type(exc).__name__}: {exc}"}
            continue
        result["machine"] = combined["machine"]
        result["duration_s"] = time.monotonic() - t0
        path = write_json(result, args.out, name)
        combined["scenarios"][name] = result
        print(render(result))
        print(f"\n({name}: {result['duration_s']:.0f} s; JSON in {path})\n", flush=True)
    combined["duration_s"] = time.monotonic() - started
    if args.scenario == "all":
        path = write_json(combined, args.out, "all")
        print(f"bench all: {combined['duration_s']:.0f} s; JSON in {path}")
    return 1 if failed else 0
