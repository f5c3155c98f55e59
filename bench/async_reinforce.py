"""Synchronous vs asynchronous REINFORCE on the demo task, the same minutes of training each.

python -m bench.async_reinforce --minutes 3 --seeds 0,1,2 --out /tmp/i17-bench

Runs `python -m algorithms.reinforce` with the demo's settings (8 tasks × 4 samples, temperature 0.7,
learning rate 2e-5, 32 held-out sums, two workers × 4 slots) once per config and seed, one run at a
time, interleaved (seed 0: sync, S=1, S=2; seed 1: ...) so that machine noise falls on every config
alike. Each run's metrics file gives held-out accuracy before and after, the training minutes,
iterations, samples, the workers' idle fraction and the staleness histogram; the script prints a
Markdown table per run and per config and writes them as JSON. `--table-only` re-reads the runs of
an earlier `--out` without running anything.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .stats import machine, table

CONFIGS: dict[str, tuple[str, ...]] = {
    "sync": (),
    "async S=1": ("--async", "--max-staleness", "1"),
    "async S=2": ("--async", "--max-staleness", "2"),
}
DEMO = (
    "--tasks-per-iteration", "8", "--samples-per-task", "4", "--temperature", "0.7", "--learning-rate", "2e-5",
    "--max-tokens", "16", "--val-size", "32", "--torch-threads", "2", "--workers", "2", "--concurrency", "4",
    "--max-iterations", "1000",
)  # fmt: skip


def command(config: str, seed: int, minutes: float, run_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "algorithms.reinforce", *DEMO, *CONFIGS[config], "--max-minutes", str(minutes),
        "--seed", str(seed), "--checkpoint-dir", str(run_dir), "--metrics-jsonl", str(run_dir / "metrics.jsonl"),
    ]  # fmt: skip


def run_dir(out: Path, config: str, seed: int) -> Path:
    return out / f"{config.replace(' ', '-').replace('=', '')}-seed-{seed}"


def run_all(configs: Sequence[str], seeds: Sequence[int], minutes: float, out: Path, skip_done: bool) -> None:
    for seed in seeds:
        for config in configs:
            folder = run_dir(out, config, seed)
            if skip_done and summary(folder) is not None:
                print(f"{config} seed {seed}: done already ({folder}), skipped", flush=True)
                continue
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "metrics.jsonl").unlink(missing_ok=True)
            argv = command(config, seed, minutes, folder)
            (folder / "command.txt").write_text(" ".join(argv) + "\n")
            started = time.monotonic()
            print(f"{time.strftime('%H:%M:%S')} {config} seed {seed}: {' '.join(argv[1:])}", flush=True)
            with (folder / "run.log").open("wb") as log:
                code = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT)
            print(f"  exit {code} after {(time.monotonic() - started) / 60:.1f} min (log {folder / 'run.log'})")
            # The checkpoints (540 MB each for SmolLM2-135M in float32) are not needed once the run is measured.
            for checkpoint in folder.glob("iter-*"):
                shutil.rmtree(checkpoint, ignore_errors=True)


def summary(folder: Path) -> dict[str, Any] | None:
    """One run's figures from its metrics file, or None if it did not finish."""
    path = folder / "metrics.jsonl"
    if not path.exists():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    evaluations = {r["evaluation"]: r for r in records if "evaluation" in r}
    training = next((r for r in records if "training" in r), None)
    if training is None or "before" not in evaluations or "after" not in evaluations:
        return None
    before, after = evaluations["before"]["accuracy"], evaluations["after"]["accuracy"]
    minutes = training["training_seconds"] / 60
    iterations = [r for r in records if "iteration" in r]
    return {
        "accuracy_before": before,
        "accuracy_after": after,
        "gain": after - before,
        "gain_per_minute": (after - before) / minutes,
        "training_minutes": minutes,
        "iterations": training["iterations_done"],
        "samples": training["samples_consumed"],
        "rollouts": training["rollouts_consumed"],
        "worker_idle_fraction": training.get("worker_idle_fraction"),
        "staleness": training.get("staleness", {"0": training["samples_consumed"]}),
        "dropped_stale": training.get("dropped_stale", 0),
        "update_seconds": statistics.fmean(r["update_seconds"] for r in iterations) if iterations else None,
        "trainer_wait_seconds": statistics.fmean(r["rollout_seconds"] for r in iterations) if iterations else None,
    }


def tables(configs: Sequence[str], seeds: Sequence[int], out: Path) -> tuple[str, dict[str, Any]]:
    runs: dict[str, dict[int, dict[str, Any] | None]] = {
        c: {s: summary(run_dir(out, c, s)) for s in seeds} for c in configs
    }
    headers = [
        "config", "seed", "acc before", "acc after", "gain", "gain/min", "train min", "iters", "samples",
        "idle frac", "staleness", "dropped", "trainer wait s", "update s",
    ]  # fmt: skip
    rows = []
    for seed in seeds:
        for config in configs:
            r = runs[config][seed]
            if r is None:
                rows.append([config, seed, *["(did not finish)"], *[""] * (len(headers) - 3)])
                continue
            rows.append([
                config, seed, r["accuracy_before"], r["accuracy_after"], r["gain"], r["gain_per_minute"],
                r["training_minutes"], r["iterations"], r["samples"], r["worker_idle_fraction"],
                " ".join(f"{k}:{v}" for k, v in r["staleness"].items()), r["dropped_stale"],
                r["trainer_wait_seconds"], r["update_seconds"],
            ])  # fmt: skip
    means = []
    for config in configs:
        done = [r for r in runs[config].values() if r is not None]
        if not done:
            continue

        def mean_sd(key: str, runs_done: list[dict[str, Any]] = done) -> str:
            values = [r[key] for r in runs_done if r[key] is not None]
            if len(values) < 2:
                return f"{values[0]:.3f}" if values else "-"
            return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"

        means.append([
            config, len(done), mean_sd("accuracy_before"), mean_sd("accuracy_after"), mean_sd("gain"),
            mean_sd("gain_per_minute"), mean_sd("training_minutes"), mean_sd("iterations"), mean_sd("samples"),
            mean_sd("worker_idle_fraction"),
        ])  # fmt: skip
    per_run = table(headers, rows, digits=3)
    per_config = table(
        ["config", "runs", "acc before", "acc after", "gain", "gain/min", "train min", "iters", "samples", "idle frac"],
        means,
    )
    return f"{per_run}\n\nmean ± std over seeds\n\n{per_config}", {"runs": runs, "machine": machine()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.async_reinforce", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=3.0, help="training budget of each run (--max-minutes)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"a subset of {', '.join(CONFIGS)}")
    p.add_argument("--out", type=Path, default=Path("/tmp/i17-bench"), help="runs' folders and the JSON")
    p.add_argument("--table-only", action="store_true", help="only tabulate the runs already in --out")
    p.add_argument("--skip-done", action="store_true", help="do not run again what finished in --out")
    args = p.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        p.error(f"unknown config(s) {unknown}: choose from {list(CONFIGS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not args.table_only:
        run_all(configs, seeds, args.minutes, args.out, args.skip_done)
    text, data = tables(configs, seeds, args.out)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "async_reinforce.json").write_text(json.dumps({"minutes": args.minutes, **data}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
