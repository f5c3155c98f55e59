"""Independent runs of one training recipe under several seeds, side by side in processes, and their gains.

A gain measured on one seed can be noise. `run_seeds` runs the same recipe with seeds s, s+1, ...;
`parallel` > 1 runs that many at once in child processes (`child_main` below, options
as JSON on stdin, the result as a JSON file, the log in the seed's own file), which on a CPU
machine fills the core that a one-thread model server leaves idle. Each child prints its progress
as metrics lines; the parent follows them so the user sees every seed move.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .evaluation import accuracy_gain, progress_line

logger = logging.getLogger(__name__)

# A seed's recipe: (options, seed, metrics path) -> a JSON-able result with "before"/"after" records.
SeedRecipe = Callable[[Mapping[str, Any], int, Path], dict[str, Any]]


@dataclass(frozen=True)
class SeedPlan:
    recipe: str  # "module:function" of a SeedRecipe, importable in a child process
    options: dict[str, Any]  # JSON-able
    run_dir: Path  # seed k writes run_dir/seed-k/{metrics.jsonl,run.log}

    def metrics(self, seed: int) -> Path:
        return self.run_dir / f"seed-{seed}" / "metrics.jsonl"

    def log(self, seed: int) -> Path:
        return self.run_dir / f"seed-{seed}" / "run.log"

    def result(self, seed: int) -> Path:
        return self.run_dir / f"seed-{seed}" / "result.json"


def _recipe(path: str) -> SeedRecipe:
    module, _, name = path.partition(":")
    recipe: SeedRecipe = getattr(importlib.import_module(module), name)
    return recipe


def run_seeds(plan: SeedPlan, seeds: Sequence[int], parallel: int) -> list[dict[str, Any]]:
    """Run every seed (at most `parallel` at once); results in seed order. A failed seed is an error naming it."""
    if parallel <= 1 or len(seeds) == 1:
        return [_run_here(plan, seed) for seed in seeds]
    results: dict[int, dict[str, Any]] = {}
    waiting = list(seeds)
    running: dict[int, _Child] = {}
    if threading.current_thread() is threading.main_thread():
        # A SIGTERM to the parent must still stop the children (and their model servers): unwind.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        while waiting or running:
            while waiting and len(running) < parallel:
                seed = waiting.pop(0)
                running[seed] = _Child(plan, seed)
            for seed, child in list(running.items()):
                child.follow()
                if child.done():
                    results[seed] = child.result()
                    del running[seed]
            time.sleep(0.5)
    finally:
        _stop_all(list(running.values()))
    return [results[seed] for seed in seeds]


def _stop_all(children: list[_Child]) -> None:
    """Ask every seed to stop as Ctrl-C would (it stops its model server and workers), then insist.

    SIGINT may be ignored (a background job's children inherit that), so SIGTERM follows, which a
    child turns into an unwinding exit; an update step in progress is waited for.
    """
    for sig, grace in ((signal.SIGINT, 20.0), (signal.SIGTERM, 120.0), (signal.SIGKILL, 10.0)):
        alive = [c for c in children if c.process.poll() is None]
        for child in alive:
            child.process.send_signal(sig)
        deadline = time.monotonic() + grace
        for child in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(max(0.0, deadline - time.monotonic()))
    for child in children:
        child.close()


def _run_here(plan: SeedPlan, seed: int) -> dict[str, Any]:
    plan.metrics(seed).parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result = _recipe(plan.recipe)(plan.options, seed, plan.metrics(seed))
    return {**result, "seed": seed, "seconds": time.monotonic() - started}


class _Child:
    """One seed in a child process; its progress is read from the metrics file it appends to."""

    def __init__(self, plan: SeedPlan, seed: int) -> None:
        self.plan = plan
        self.seed = seed
        plan.metrics(seed).parent.mkdir(parents=True, exist_ok=True)
        plan.metrics(seed).unlink(missing_ok=True)
        plan.result(seed).unlink(missing_ok=True)
        self._log = plan.log(seed).open("wb")
        self._read = 0
        request = {
            "recipe": plan.recipe,
            "options": plan.options,
            "seed": seed,
            "metrics": str(plan.metrics(seed)),
            "result": str(plan.result(seed)),
        }
        self.process = subprocess.Popen(
            # Not `-m algorithms.seed_runs`: the recipe's module imports this one, which would then load twice.
            [sys.executable, "-c", "from algorithms.seed_runs import child_main; child_main()"],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=self._log,
        )
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request).encode())
        self.process.stdin.close()
        logger.info("seed %d: started (pid %d, log %s)", seed, self.process.pid, plan.log(seed))

    def follow(self) -> None:
        """Log each new metrics line of the seed in one short line."""
        path = self.plan.metrics(self.seed)
        if not path.exists():
            return
        with path.open(encoding="utf-8") as lines:
            lines.seek(self._read)
            for line in lines:
                if not line.endswith("\n"):
                    break
                self._read += len(line.encode())
                logger.info("seed %d: %s", self.seed, progress_line(json.loads(line)))

    def done(self) -> bool:
        return self.process.poll() is not None

    def result(self) -> dict[str, Any]:
        self._log.close()
        if self.process.returncode != 0:
            raise RuntimeError(
                f"seed {self.seed} failed (exit {self.process.returncode}); its log: {self.plan.log(self.seed)}"
            )
        result: dict[str, Any] = json.loads(self.plan.result(self.seed).read_text(encoding="utf-8"))
        return result

    def close(self) -> None:
        self._log.close()


def seeds_table(runs: Sequence[Mapping[str, Any]], seconds: float) -> str:
    """One row per seed (held-out accuracy before, after, gain ± its paired stderr), then mean ± std."""
    lines = ["", f"{len(runs)} seeds   accuracy before   after    gain ± se        gain > 2 se   minutes"]
    befores, afters, gains = [], [], []
    for run in runs:
        before, after = run.get("before"), run.get("after")
        gain = accuracy_gain(before, after) if before and after else None
        if before is None or after is None or gain is None:
            lines.append(f"seed {run['seed']:<3}  (no checker or no held-out tasks: accuracy not measured)")
            continue
        befores.append(before["accuracy"])
        afters.append(after["accuracy"])
        gains.append(gain.accuracy)
        lines.append(
            f"seed {run['seed']:<3}  {before['accuracy']:15.3f}   {after['accuracy']:5.3f}  "
            f"{gain.accuracy:+6.3f} ± {gain.stderr:5.3f}   {'yes' if gain.significant else 'NO':>11}   "
            f"{run['seconds'] / 60:7.1f}"
        )
    if len(gains) > 1:
        lines.append(f"mean ± std {_mean_std(befores):>13}  {_mean_std(afters)}  {_mean_std(gains)}")
    lines.append(f"\nall seeds finished in {seconds / 60:.1f} min")
    return "\n".join(lines)


def _mean_std(values: Sequence[float]) -> str:
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def child_main() -> None:
    """A seed's child process: the request on stdin, the result written to the file it names."""
    # SIGTERM unwinds like an exception, so the seed's model server and worker processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    request = json.loads(sys.stdin.read())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    result = _recipe(request["recipe"])(request["options"], request["seed"], Path(request["metrics"]))
    result.update(seed=request["seed"], seconds=time.monotonic() - started)
    Path(request["result"]).write_text(json.dumps(result, default=str), encoding="utf-8")
