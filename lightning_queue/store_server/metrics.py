"""Prometheus metrics of `lq store-server`: requests by route template, method and status, and latencies.

They live in a registry of their own, served at `/v1/prometheus`, so the server's page shows exactly
its metrics and other modules' registrations can never collide with them. Each server process counts
its own requests; with `--workers N` a scrape sees the process that answered it.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "lq_store_server_requests_total",
    "HTTP requests answered by lq store-server.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "lq_store_server_request_duration_seconds",
    "Time lq store-server took to answer a request.",
    ["route", "method"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def observe(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request; `route` is a template (`/v1/agl/rollouts/{rollout_id}`), never an id."""
    REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    DURATION.labels(route=route, method=method).observe(seconds)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
