"""Prometheus metrics of worker processes, and the pool's one endpoint that adds up all of them.

Each worker process records into prometheus-client's multiprocess files when the pool gave it a
`PROMETHEUS_MULTIPROC_DIR` (the pool's own directory, removed when the pool stops); the pool serves
their sum. Without that variable (a `Worker` run in-process) they go to the default registry.
Label values come from fixed sets only: never a rollout, attempt or worker id.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

from lightning_queue.exposition import MetricsServer

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

OUTCOMES = ("succeeded", "failed", "timeout", "lost", "released")
# A rollout agent takes from milliseconds (a stub) to many minutes (a long tool-using episode).
AGENT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))

ROLLOUTS = Counter("lq_rollouts_total", "Rollout attempts a worker finished, by how they ended.", ["outcome"])
CLAIMED = Counter("lq_rollouts_claimed_total", "Rollout attempts workers claimed from the queue.")
AGENT_SECONDS = Histogram(
    "lq_agent_duration_seconds", "Time the agent took on one rollout attempt (any outcome).", buckets=AGENT_BUCKETS
)
IN_FLIGHT = Gauge(
    "lq_worker_rollouts_in_flight",
    "Rollout attempts running now, all live worker processes.",
    multiprocess_mode="livesum",
)
LEASE_RENEWALS = Counter("lq_lease_renewals_total", "Leases of held rollouts renewed (one per rollout per renewal).")
LEASE_LOSSES = Counter(
    "lq_lease_losses_total",
    "Held rollouts whose lease was lost: reclaimed elsewhere, or not renewable for a lease period.",
    ["reason"],
)
RECLAIMS = Counter("lq_reclaims_total", "Stream entries of dead workers reclaimed by the workers' watchdog sweeps.")
REDIS_ERRORS = Counter(
    "lq_worker_redis_errors_total",
    "Redis calls of workers that failed (and were retried), by operation.",
    ["operation"],
)
LOOP_LAG = Gauge(
    "lq_worker_event_loop_lag_seconds",
    "How late the event loop ran the latest probe callback; the worst live worker process.",
    multiprocess_mode="livemax",
)
LOSS_REASONS = ("reclaimed", "renew_failed")
OPERATIONS = ("claim", "renew", "sweep", "telemetry", "release", "store")

for _outcome in OUTCOMES:
    ROLLOUTS.labels(_outcome)
for _reason in LOSS_REASONS:
    LEASE_LOSSES.labels(_reason)
for _operation in OPERATIONS:
    REDIS_ERRORS.labels(_operation)


def rollout_started() -> None:
    CLAIMED.inc()
    IN_FLIGHT.inc()


def rollout_left() -> None:
    IN_FLIGHT.dec()


def rollout_ended(outcome: str) -> None:
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown rollout outcome {outcome!r}; expected one of {OUTCOMES}")
    ROLLOUTS.labels(outcome).inc()


def redis_error(operation: str) -> None:
    if operation not in OPERATIONS:
        raise ValueError(f"unknown worker Redis operation {operation!r}; expected one of {OPERATIONS}")
    REDIS_ERRORS.labels(operation).inc()


def lease_lost(reason: str) -> None:
    if reason not in LOSS_REASONS:
        raise ValueError(f"unknown lease loss reason {reason!r}; expected one of {LOSS_REASONS}")
    LEASE_LOSSES.labels(reason).inc()


def time_agent(call: asyncio.Future[Any]) -> None:
    """Observe the agent's duration when its call ends, however it ends (result, error, cancel)."""
    started = time.monotonic()
    call.add_done_callback(lambda _: AGENT_SECONDS.observe(time.monotonic() - started))


class PoolMetrics:
    """The multiprocess directory of one pool and the endpoint serving the sum of its processes."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.directory = tempfile.mkdtemp(prefix="lq-worker-metrics-")
        registry = CollectorRegistry()
        # prometheus-client's multiprocess module is not annotated.
        multiprocess.MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        try:
            self.server = MetricsServer(registry, port, host)
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def environment(self) -> dict[str, str]:
        """What a worker process's environment needs so its metrics reach this endpoint."""
        return {MULTIPROC_ENV: self.directory}

    def process_dead(self, pid: int) -> None:
        # Its counters stay (they count what it did); its live gauges (in flight, lag) go.
        multiprocess.mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
