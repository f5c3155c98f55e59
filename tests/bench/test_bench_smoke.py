"""The benchmarks still run: every scenario of `python -m bench` at tiny size, checked for shape only.

No timing thresholds: this machine's speed is not under test, the bench's ability to measure is.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import scale
from bench.baseline import baseline_available
from bench.stats import percentile

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="the bench needs a redis-server binary")


def run_bench(out: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LQ_REDIS_URL", "REDIS_URL", "LQ_NAMESPACE")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "bench", *args, "--quick", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and not math.isnan(value) and value > 0


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `python -m bench all --quick` run (without the baseline) shared by the checks below."""
    out = tmp_path_factory.mktemp("bench")
    proc = run_bench(out, "all", "--no-baseline")
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = json.loads((out / "all-latest.json").read_text())
    for name in ("lifecycle", "wakeup", "memory", "proxy", "scale"):
        assert (out / f"{name}-latest.json").exists(), f"no JSON written for scenario {name}"
    return result


@pytest.mark.slow
def test_all_writes_every_scenario_with_the_machine_it_ran_on(quick_all: dict[str, Any]) -> None:
    assert set(quick_all["scenarios"]) == {"lifecycle", "wakeup", "memory", "proxy", "scale"}
    assert quick_all["machine"]["cpus"] >= 1
    assert positive(quick_all["duration_s"])


@pytest.mark.slow
def test_lifecycle_reports_throughput_latencies_and_ratio_to_the_raw_loop(quick_all: dict[str, Any]) -> None:
    result = quick_all["scenarios"]["lifecycle"]
    assert {r["backend"] for r in result["rows"]} == {"lq", "raw", "workers"}
    for row in result["rows"]:
        assert "error" not in row, row.get("error")
        assert row["finished"] == row["rollouts"] == row["completed_by_workers"]
        assert row["wrong_span_counts"] == 0
        assert positive(row["rollouts_per_s"])
        for stage in ("enqueue_to_claim_ms", "complete_to_seen_ms"):
            assert row[stage]["n"] == row["rollouts"]
            assert row[stage]["p99"] >= row[stage]["p50"]
        assert positive(row["redis_commands_per_rollout"])
    for k in result["options"]["workers"]:
        assert positive(result["by_backend"][f"lq/K={k}"]["rollouts_per_s"])
        assert positive(result["ratios"][f"lq/raw/K={k}"])
    assert result["redis_benchmark"] and all(positive(r["rps"]) for r in result["redis_benchmark"])


@pytest.mark.slow
def test_wakeup_reports_percentiles_for_one_and_many_waiters(quick_all: dict[str, Any]) -> None:
    result = quick_all["scenarios"]["wakeup"]
    assert result["timeouts"] == 0
    for key in ("single_p50_ms", "single_p99_ms", "crowd_p50_ms", "crowd_p99_ms"):
        assert positive(result["summary"][key]), key


@pytest.mark.slow
def test_memory_reports_bytes_per_rollout_and_per_span(quick_all: dict[str, Any]) -> None:
    result = quick_all["scenarios"]["memory"]
    for kind in ("small", "large"):
        assert positive(result[kind]["bytes_per_rollout"])
        assert positive(result[kind]["bytes_per_span"])
        assert all(positive(v) for v in result[kind]["memory_usage_of_one_rollout"].values())
    assert result["large"]["encoded_bytes_per_span"] > result["small"]["encoded_bytes_per_span"]


@pytest.mark.slow
def test_scale_reports_every_call_at_every_size_with_ratios(quick_all: dict[str, Any]) -> None:
    result = quick_all["scenarios"]["scale"]
    sizes = result["options"]["sizes"]
    assert [row["rollouts"] for row in result["rows"]] == sizes and len(sizes) >= 2
    for row in result["rows"]:
        assert positive(row["bytes_per_rollout"]) and positive(row["fill_rollouts_per_s"])
        # The fill (and its warm-up batch) left the documented mix: 10 % queued, so filters had work to do.
        assert row["by_status"]["queuing"] == (row["rollouts"] + scale.BATCH) // 10
        assert row["by_status"]["succeeded"] > row["by_status"]["failed"] > 0
        for name, summary in row["calls_ms"].items():
            assert positive(summary["p50"]) and summary["p99"] >= summary["p50"], name
    assert set(result["ratios"]["p50"]) == set(result["rows"][0]["calls_ms"])
    assert all(positive(v) for v in result["ratios"]["p50"].values())
    for row in [*result["rows"], *result["big_span_rows"]]:
        # A retention step deleted something and was timed (the waits' read marks were cleared first).
        assert row["retention"]["steps"] >= 1 and positive(row["retention"]["step_ms_p50"])
    (big,) = result["big_span_rows"]
    assert big["span"] == "10k tokens" and big["by_status"]["succeeded"] == big["rollouts"] + scale.BATCH // 10
    # 10,000 token ids are ~30 KB of msgpack: a rollout cannot be stored in less.
    assert big["bytes_per_rollout"] > 20_000


@pytest.mark.slow
def test_scale_steady_state_keeps_memory_bounded_and_loses_no_unread_rollout(quick_all: dict[str, Any]) -> None:
    steady = quick_all["scenarios"]["scale"]["steady"]
    assert steady["deleted_unread"] == 0 and steady["read"] > 0.9 * steady["enqueued"]
    assert steady["duration_s"] >= steady["retention_window_s"] * 1.5 * 0.9
    samples = steady["samples"]
    assert samples and samples[-1]["t"] > steady["steady_from_s"]
    # Retention deleted: far fewer stored than finished by the end (a run without it keeps them all).
    assert samples[-1]["stored"] < 0.9 * steady["read"]
    assert steady["used_bytes"]["min"] <= steady["used_bytes"]["mean"] <= steady["used_bytes"]["max"]


@pytest.mark.slow
def test_proxy_reports_overhead_or_says_why_not(quick_all: dict[str, Any]) -> None:
    result = quick_all["scenarios"]["proxy"]
    assert "error" not in result, result.get("error")
    if not result["available"]:
        assert result["reason"]
        return
    summary = result["summary"]
    assert positive(summary["proxied_calls_per_s"]) and positive(summary["direct_calls_per_s"])
    assert positive(summary["plain_proxied_p50_ms"])
    assert not math.isnan(summary["plain_added_p50_ms"])


@pytest.mark.slow
@pytest.mark.skipif(
    not baseline_available(),
    reason="no Agent-Lightning baseline venv (LQ_BENCH_BASELINE_PYTHON or "
    "bench/.venv/agentlightning-0.3.0); `python -m bench lifecycle` creates it",
)
def test_lifecycle_runs_the_agent_lightning_baseline(tmp_path: Path) -> None:
    proc = run_bench(tmp_path, "lifecycle", "--backends", "lq,al", "--workers", "1", timeout=600)
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads((tmp_path / "lifecycle-latest.json").read_text())
    baseline = [r for r in result["rows"] if r["backend"] == "al"]
    assert baseline and all("error" not in r and positive(r["rollouts_per_s"]) for r in baseline)
    assert positive(result["ratios"]["lq/al/K=1"])


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))
