"""The `lq worker` pool of the lifecycle's `workers` row, started and stopped by the bench each round.

Its namespace is a command-line option, so a pool serves one round. It is ready when K clients block
in XREADGROUP: Redis 7.0 adds a consumer to the group only once it is served, so the group cannot
tell, and nothing else reads a queue then (the bench's own workers close their clients between
rounds). It stops on SIGTERM (in-flight rollouts get the grace time); any process still alive after
that is killed by its pid.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import redis

from .children import REPO_ROOT, child_env


def repo_root_differs(root: Path) -> bool:
    return root.resolve() != REPO_ROOT


class LqWorkerPool:
    def __init__(
        self, url: str, namespace: str, processes: int, concurrency: int, log_path: Path, repo_root: Path | None = None
    ) -> None:
        # Another checkout's `lq worker` (its own lightning_queue, workers and bench.noop_agent), if given.
        self.repo_root = repo_root or REPO_ROOT
        self.url = url
        self.namespace = namespace
        self.processes = processes
        self.concurrency = concurrency
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> LqWorkerPool:
        argv = [sys.executable, "-m", "lightning_queue.cli", "worker", "--agent", "bench.noop_agent:noop"]
        argv += ["-n", str(self.processes), "--concurrency", str(self.concurrency), "--redis-url", self.url]
        argv += ["--namespace", self.namespace, "--grace-seconds", "5", "--log-level", "WARNING"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            env = child_env({"PYTHONPATH": str(self.repo_root)} if repo_root_differs(self.repo_root) else None)
            self.proc = subprocess.Popen(argv, cwd=self.repo_root, env=env, stdout=log, stderr=log)
        client = redis.Redis.from_url(self.url, decode_responses=True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                blocked = [c for c in client.client_list() if c.get("cmd") == "xreadgroup" and "b" in c["flags"]]
                if len(blocked) >= self.processes:
                    return self
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()  # the caller never gets a pool to stop
                    tail = self.log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"`lq worker` pool: {self.processes} processes not claiming in time: {tail}")
                time.sleep(0.05)
        finally:
            client.close()

    def _tree(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """CPU time of the supervisor and its worker processes so far."""
        total = 0.0
        for p in self._tree():
            try:
                times = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.proc is None:
            return
        # Worker processes run in their own sessions: remember them to kill any survivor by pid.
        tree = self._tree()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for p in tree[1:]:
            try:
                p.wait(timeout=5)
            except psutil.TimeoutExpired:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc = None
