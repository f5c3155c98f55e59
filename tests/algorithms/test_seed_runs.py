"""Several seeds of a recipe, in this process or side by side in child processes, and their table."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from algorithms.evaluation import progress_line
from algorithms.seed_runs import SeedPlan, run_seeds, seeds_table

RECIPES = "tests.support.seed_recipes"


@pytest.fixture(autouse=True)
def recipes_importable_by_children(monkeypatch: pytest.MonkeyPatch) -> None:
    root = str(Path(__file__).resolve().parents[2])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))


def test_seeds_run_side_by_side_in_child_processes_and_come_back_in_seed_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plan = SeedPlan(f"{RECIPES}:improves", {"n": 10}, tmp_path)
    with caplog.at_level(logging.INFO, logger="algorithms.seed_runs"):
        runs = run_seeds(plan, [0, 1, 2], parallel=2)
    assert [r["seed"] for r in runs] == [0, 1, 2]
    assert [r["after"]["accuracy"] for r in runs] == [0.1, 0.2, 0.3]
    assert len({r["pid"] for r in runs}) == 3 and os.getpid() not in {r["pid"] for r in runs}
    assert all(r["seconds"] > 0 for r in runs)
    # Each child's metrics lines were followed and logged as they came.
    assert sum("seed 1: iteration 1: train reward 0.500, train accuracy 0.250" in m for m in caplog.messages) == 1
    assert (tmp_path / "seed-2" / "run.log").exists()


def test_one_seed_runs_in_this_process(tmp_path: Path) -> None:
    runs = run_seeds(SeedPlan(f"{RECIPES}:improves", {"n": 4}, tmp_path), [5], parallel=3)
    assert runs[0]["pid"] == os.getpid() and runs[0]["seed"] == 5


def test_a_failing_seed_is_an_error_naming_it_and_its_log(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"seed ([12]) failed \(exit 1\); its log: .*seed-\1/run.log") as failure:
        run_seeds(SeedPlan(f"{RECIPES}:fails", {}, tmp_path), [1, 2], parallel=2)
    seed = str(failure.value).split()[1]
    assert f"seed {seed} broke on purpose" in (tmp_path / f"seed-{seed}" / "run.log").read_text()


def test_when_a_seed_fails_the_others_are_stopped_and_stop_their_own_servers(tmp_path: Path) -> None:
    import psutil

    pid_file = tmp_path / "server.pid"
    with pytest.raises(RuntimeError, match="seed 0 failed"):
        run_seeds(SeedPlan(f"{RECIPES}:holds_a_server", {"pid_file": str(pid_file)}, tmp_path), [0, 1], parallel=2)
    server = int(pid_file.read_text())
    assert not psutil.pid_exists(server) or psutil.Process(server).status() == psutil.STATUS_ZOMBIE


def test_the_table_gives_each_seeds_paired_gain_and_the_mean_over_seeds(tmp_path: Path) -> None:
    runs = run_seeds(SeedPlan(f"{RECIPES}:improves", {"n": 10}, tmp_path), [0, 4], parallel=1)
    table = seeds_table(runs, seconds=60)
    assert "+0.100" in table and "+0.500" in table
    # A single flip out of 10 is within noise; five flips are above two standard errors.
    rows = [line for line in table.splitlines() if line.startswith("seed")]
    assert rows[0].split()[-2] == "NO" and rows[1].split()[-2] == "yes"
    assert "mean ± std" in table and "0.300 ± 0.283" in table


def test_progress_lines_summarise_evaluations_and_iterations() -> None:
    assert progress_line({"evaluation": "after", "accuracy": 0.5, "reward_mean": 0.4}) == (
        "held-out after: accuracy 0.500, reward 0.400"
    )
    assert progress_line({"evaluation": "before", "accuracy": None, "reward_mean": 0.0}).endswith("n/a, reward 0.000")


def test_lq_demo_shows_the_algorithms_progress_under_lqs_default_log_level() -> None:
    import subprocess
    import sys

    # `lq` sets the root logger to WARNING before the subcommand's setup_logging runs.
    script = (
        "import logging; logging.basicConfig(level='WARNING');"
        "from algorithms.launch import setup_logging; setup_logging();"
        "logging.getLogger('algorithms.seed_runs').info('seed 0: iteration 1')"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "seed 0: iteration 1" in out.stderr
