"""Supervising n worker processes: start them, restart crashed ones with backoff, stop them in steps."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from lightning_queue.resilience import Backoff

from .metrics import PoolMetrics
from .process import EXIT_CONFIG, EXIT_RECYCLE, SLOT_ENV, SUPERVISOR_ENV
from .settings import SETTINGS_ENV, WorkerSettings

logger = logging.getLogger("workers.pool")

WORKER_COMMAND = (sys.executable, "-m", "workers")
# Shutdown steps, each sent when the previous one had its time: SIGINT lets in-flight rollouts finish
# within the grace period, SIGTERM releases them at once, SIGKILL ends a process that hangs.
_STEPS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


class WorkerProcess(Protocol):
    """What the pool needs of a started worker process (`subprocess.Popen` and `inline.InlineWorker` fit)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def kill(self) -> None: ...

    def wait(self) -> int: ...


# Starts one worker process from the command and its environment.
Launcher = Callable[[Sequence[str], Mapping[str, str]], WorkerProcess]


def exec_worker(command: Sequence[str], env: Mapping[str, str]) -> WorkerProcess:
    """Start `python -m workers`: it imports the agent and hooks by the names in its settings."""
    # Its own session: a terminal's Ctrl-C reaches only the supervisor, which decides what to send.
    return subprocess.Popen(list(command), env=dict(env), start_new_session=True)


@dataclass(eq=False)
class _Slot:
    index: int
    restart_delays: Backoff
    proc: WorkerProcess | None = None
    started: float = 0.0
    restarts: int = 0
    recycles: int = 0
    restart_at: float | None = None
    finished: bool = False

    @property
    def backoff(self) -> float:
        """The delay before its latest restart (0 until it first crashed)."""
        return self.restart_delays.current


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class WorkerPool:
    """Runs `processes` worker processes with `settings` until stopped or until all of them finish.

    A process that dies is restarted after a backoff that doubles per quick crash (from
    `min_backoff` to `max_backoff`; reset once a process lived `stable_seconds`). One that exits 0
    (it reached `max_rollouts`) is not restarted; one that exits 2 (bad configuration) stops the pool.
    One that exits `EXIT_RECYCLE` (it recycled itself: `max_rollouts_per_process`, `max_memory_mb`) is
    replaced at once: a planned restart, not a crash, so its backoff is left alone.

    `launcher` starts each process: by default `python -m workers`, which imports the agent by name;
    `inline.InlineLauncher(agent, hooks)` forks this process instead and hands it the objects themselves.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        processes: int = 1,
        *,
        redis_url: str | None = None,
        command: Sequence[str] = WORKER_COMMAND,
        stop_timeout: float = 5.0,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        stable_seconds: float = 30.0,
        poll_seconds: float = 0.1,
        env: Mapping[str, str] | None = None,
        launcher: Launcher = exec_worker,
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes!r}")
        self.settings = settings
        self.redis_url = redis_url
        self.command = list(command)
        self.stop_timeout = stop_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_seconds = stable_seconds
        self.poll_seconds = poll_seconds
        self.env = dict(os.environ if env is None else env)
        self.launcher = launcher
        self.slots = [_Slot(i, Backoff(min_backoff, max_backoff)) for i in range(processes)]
        self._stop_requests: list[str] = []
        self._step = -1
        self._step_deadline = float("inf")
        self._exit_code = 0
        self.metrics: PoolMetrics | None = None

    # --- control ----------------------------------------------------------------------------------
    def request_stop(self, reason: str = "stop requested") -> None:
        """Begin (or, called again, hurry) the shutdown; safe to call from a signal handler."""
        self._stop_requests.append(reason)

    @property
    def stopping(self) -> bool:
        return self._step >= 0

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.slots if s.proc is not None]

    def run(self) -> int:
        """Supervise until every process has ended; returns the exit code for `lq worker`.

        Raises `MetricsPortInUse` (before any process starts) if `metrics_port` is taken.
        """
        if self.settings.metrics_port is not None:
            self.metrics = PoolMetrics(self.settings.metrics_port, self.settings.metrics_host)
            logger.info("worker pool metrics at %s (files in %s)", self.metrics.server.url, self.metrics.directory)
        previous = self._install_signal_handlers()
        try:
            for slot in self.slots:
                self._spawn(slot)
            handled = 0
            while True:
                if len(self._stop_requests) > handled:
                    logger.info("supervisor: %s", ", ".join(self._stop_requests[handled:]))
                    handled = len(self._stop_requests)
                    self._next_step()
                elif self.stopping and time.monotonic() >= self._step_deadline and self._step < len(_STEPS) - 1:
                    self._next_step()
                self._reap_and_restart()
                if all(s.proc is None and (s.finished or self.stopping) for s in self.slots):
                    break
                time.sleep(self.poll_seconds)
        finally:
            self._restore_signal_handlers(previous)
            self._kill_all()
            if self.metrics is not None:
                self.metrics.close()
        logger.info("worker pool stopped")
        return self._exit_code

    # --- processes --------------------------------------------------------------------------------
    def _spawn(self, slot: _Slot) -> None:
        env = dict(self.env)
        env[SETTINGS_ENV] = self.settings.to_json()
        env[SLOT_ENV] = str(slot.index)
        env[SUPERVISOR_ENV] = str(os.getpid())
        if self.redis_url:
            env["LQ_REDIS_URL"] = self.redis_url
        if self.metrics is not None:
            env.update(self.metrics.environment())
        slot.proc = self.launcher(self.command, env)
        slot.started = time.monotonic()
        slot.restart_at = None
        logger.info("worker process #%d started (pid %d)", slot.index, slot.proc.pid)

    def _reap_and_restart(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.proc is not None and (code := slot.proc.poll()) is not None:
                pid, slot.proc = slot.proc.pid, None
                self._exited(slot, pid, code, now)
            if slot.restart_at is not None and now >= slot.restart_at and not self.stopping:
                self._spawn(slot)

    def _exited(self, slot: _Slot, pid: int, code: int, now: float) -> None:
        what = f"worker process #{slot.index} (pid {pid}) {describe_exit(code)}"
        if self.metrics is not None:
            self.metrics.process_dead(pid)
        if self.stopping:
            logger.info("%s", what)
        elif code == 0:
            slot.finished = True
            logger.info("%s: done (max-rollouts reached)", what)
        elif code == EXIT_RECYCLE:
            slot.recycles += 1
            slot.restart_at = now
            logger.info(
                "worker process #%d (pid %d) recycled itself after %.1fs; starting a fresh one (recycle #%d)",
                slot.index,
                pid,
                now - slot.started,
                slot.recycles,
            )
        elif code == EXIT_CONFIG:
            logger.error("%s: its configuration cannot work; stopping the pool", what)
            self._exit_code = EXIT_CONFIG
            self.request_stop(f"worker process #{slot.index} cannot start")
        else:
            lived = now - slot.started
            if lived >= self.stable_seconds:
                slot.restart_delays.reset()
            slot.restart_at = now + slot.restart_delays.next()
            slot.restarts += 1
            logger.warning(
                "%s after %.1fs; restarting it in %.2fs (restart #%d)", what, lived, slot.backoff, slot.restarts
            )

    def _next_step(self) -> None:
        self._step = min(self._step + 1, len(_STEPS) - 1)
        sig = _STEPS[self._step]
        wait = self.settings.grace_seconds + self.stop_timeout if sig == signal.SIGINT else self.stop_timeout
        self._step_deadline = time.monotonic() + wait
        for slot in self.slots:
            slot.restart_at = None
            if slot.proc is not None and slot.proc.poll() is None:
                try:
                    os.kill(slot.proc.pid, sig)
                except ProcessLookupError:
                    continue
        live = len(self.pids())
        if sig == signal.SIGINT:
            logger.info("stopping: %d worker processes finish in-flight rollouts (grace %.1fs)", live, wait)
        elif live:
            logger.warning("stopping: sent %s to %d worker processes", sig.name, live)

    def _kill_all(self) -> None:
        # Normally a no-op; after an error in the supervisor itself it leaves no orphans behind.
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.kill()
                slot.proc.wait()
            slot.proc = None

    # --- signals ----------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict[int, object]:
        previous: dict[int, object] = {}

        def handler(signum: int, frame: FrameType | None) -> None:
            self.request_stop(f"got {signal.Signals(signum).name}")

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:
                # Not the main thread (e.g. embedded in tests): the caller uses request_stop().
                break
        return previous

    def _restore_signal_handlers(self, previous: dict[int, object]) -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
