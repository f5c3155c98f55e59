"""The pool supervisor: `--agent` checked before anything starts, restarts with backoff, stopping in steps.

The supervisor tests run `WorkerPool` in this process over tiny stand-in child programs, so each
behaviour (a crash loop, a process that ignores signals) is cheap and exact.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lightning_queue.cli import main
from workers import WorkerPool, WorkerSettings
from workers.process import EXIT_RECYCLE

SETTINGS = WorkerSettings(agent="tests.support.agents:scripted", grace_seconds=0.3)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:agent", "no module named 'no_such_module_xyz'"),
        ("tests.support.agents:missing", "'tests.support.agents' has no attribute 'missing'"),
        ("tests.support.agents:not_an_agent", "is a int, not an agent"),
        ("tests.support.agents:plain_function", "not an agent: decorate it with @workers.rollout"),
        ("tests.support.agents:NeedsArguments", "cannot be built without arguments"),
        ("tests.support.agents", "is not of the form 'package.module:attribute'"),
    ],
)
def test_bad_agent_exits_2_with_a_clear_error_before_any_process_starts(
    spec: str, message: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_spawning(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a worker process was started for a bad --agent")

    monkeypatch.setattr("workers.pool.subprocess.Popen", no_spawning)
    result = CliRunner().invoke(main, ["worker", "--agent", spec, "--redis-url", redis_url])

    assert result.exit_code == 2, result.output
    assert "Invalid value for '--agent'" in result.output
    assert message in " ".join(result.output.split())


def run_in_thread(pool: WorkerPool) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(pool.run()), daemon=True)
    thread.start()
    return thread, codes


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_crashing_process_is_restarted_with_a_doubling_capped_backoff(caplog: pytest.LogCaptureFixture) -> None:
    pool = WorkerPool(
        SETTINGS, 1, command=[sys.executable, "-c", "raise SystemExit(1)"], min_backoff=0.05, max_backoff=0.2
    )
    with caplog.at_level(logging.INFO, logger="workers.pool"):
        thread, codes = run_in_thread(pool)
        wait_for(lambda: caplog.text.count("restarting it in") >= 5, 30, "five restarts")
        pool.request_stop()
        thread.join(10)

    delays = [float(d) for d in re.findall(r"restarting it in ([\d.]+)s", caplog.text)]
    assert delays[:5] == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert "exited with code 1" in caplog.text
    assert codes == [0]


def test_process_exiting_0_is_not_restarted_and_2_stops_the_pool_with_code_2() -> None:
    finished = WorkerPool(SETTINGS, 2, command=[sys.executable, "-c", "pass"])
    assert finished.run() == 0
    assert all(s.restarts == 0 for s in finished.slots)

    broken = WorkerPool(SETTINGS, 2, command=[sys.executable, "-c", "raise SystemExit(2)"], min_backoff=0.05)
    assert broken.run() == 2
    assert all(s.restarts == 0 for s in broken.slots)


def test_stop_escalates_sigint_then_sigterm_then_sigkill_for_a_process_that_ignores_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ready = tmp_path / "ready"
    stubborn = (
        "import signal, time, pathlib\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(60)\n"
    )
    pool = WorkerPool(SETTINGS, 1, command=[sys.executable, "-c", stubborn], stop_timeout=0.3)
    with caplog.at_level(logging.INFO, logger="workers.pool"):
        thread, codes = run_in_thread(pool)
        wait_for(ready.exists, 10, "the stubborn child")
        started = time.monotonic()
        pool.request_stop()
        thread.join(10)
        took = time.monotonic() - started

    assert codes == [0] and not thread.is_alive()
    # grace (0.3) + stop_timeout (0.3) for SIGINT, then stop_timeout (0.3) for SIGTERM, then SIGKILL.
    assert 0.8 < took < 3.0
    assert "finish in-flight rollouts" in caplog.text
    assert "sent SIGTERM to 1 worker processes" in caplog.text
    assert "sent SIGKILL to 1 worker processes" in caplog.text
    assert "was killed by SIGKILL" in caplog.text


def test_a_second_stop_request_skips_to_the_next_step(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ready = tmp_path / "ready"
    ignores_sigint = (
        "import signal, time, pathlib\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(60)\n"
    )
    settings = WorkerSettings(agent="tests.support.agents:scripted", grace_seconds=30)
    pool = WorkerPool(settings, 1, command=[sys.executable, "-c", ignores_sigint])
    with caplog.at_level(logging.INFO, logger="workers.pool"):
        thread, _ = run_in_thread(pool)
        wait_for(ready.exists, 10, "the child")
        pool.request_stop("first")
        wait_for(lambda: "finish in-flight rollouts" in caplog.text, 5, "the SIGINT step")
        pool.request_stop("second")
        thread.join(5)

    assert not thread.is_alive(), "the second request did not hurry the shutdown past the 30 s grace"
    assert "was killed by SIGTERM" in caplog.text


def test_recycled_process_is_replaced_at_once_and_not_counted_as_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    pool = WorkerPool(
        SETTINGS,
        1,
        command=[sys.executable, "-c", f"raise SystemExit({EXIT_RECYCLE})"],
        min_backoff=5.0,
        max_backoff=5.0,
    )
    with caplog.at_level(logging.INFO, logger="workers.pool"):
        thread, codes = run_in_thread(pool)
        # A crash would wait the 5 s backoff before its first restart.
        wait_for(lambda: caplog.text.count("recycled itself") >= 3, 5, "three recycles")
        pool.request_stop()
        thread.join(10)

    assert codes == [0]
    assert "restarting it in" not in caplog.text
    assert pool.slots[0].restarts == 0 and pool.slots[0].recycles >= 3
    assert pool.slots[0].backoff == 0


def test_max_rollouts_cannot_be_combined_with_recycling() -> None:
    for recycling in ({"max_rollouts_per_process": 3}, {"max_memory_mb": 500}):
        with pytest.raises(ValueError, match="cannot be combined"):
            WorkerSettings(agent="tests.support.agents:scripted", max_rollouts=10, **recycling)  # type: ignore[arg-type]
    args = ["--agent", "tests.support.agents:scripted", "--redis-url", "redis://127.0.0.1:1/0", "--max-rollouts", "5"]
    result = CliRunner().invoke(main, ["worker", *args, "--max-memory-mb", "100"])
    assert result.exit_code == 2
    assert "--max-rollouts (each process exits for good) cannot be combined with --max-rollouts-per-process" in (
        result.output
    )
