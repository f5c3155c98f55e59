"""Seed recipes for tests/algorithms/test_seed_runs.py, imported by the child processes by module name."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def record(correct: list[bool]) -> dict[str, Any]:
    n = len(correct)
    accuracy = sum(correct) / n
    return {
        "n": n, "finished": n, "accuracy": accuracy, "accuracy_stderr": 0.0, "reward_mean": accuracy,
        "reward_std": 0.0, "reward_stderr": 0.0, "parts": {}, "samples": [],
        "tasks": [f"t{i}" for i in range(n)], "correct": correct,
    }  # fmt: skip


def improves(options: Mapping[str, Any], seed: int, metrics: Path | None) -> dict[str, Any]:
    """Seed s gets s+1 more tasks right after 'training'; writes one metrics line and returns the records."""
    n = int(options["n"])
    if metrics is not None:
        with metrics.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"iteration": 1, "reward_mean": 0.5, "train_accuracy": 0.25}) + "\n")
    before = [False] * n
    after = [i <= seed for i in range(n)]
    return {"before": record(before), "after": record(after), "iterations": [], "pid": os.getpid()}


def fails(options: Mapping[str, Any], seed: int, metrics: Path | None) -> dict[str, Any]:
    raise RuntimeError(f"seed {seed} broke on purpose")


def holds_a_server(options: Mapping[str, Any], seed: int, metrics: Path | None) -> dict[str, Any]:
    """Seed 0 fails soon; seed 1 holds a 'model server' (its own session, as ours is) until it is stopped."""
    import subprocess
    import time

    if seed == 0:
        time.sleep(1.0)
        raise RuntimeError("seed 0 broke on purpose")
    server = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        Path(options["pid_file"]).write_text(str(server.pid))
        time.sleep(60)
    finally:
        server.terminate()
        server.wait()
    return {}
