"""Prometheus metrics of one proxy, served at its `/metrics`: calls, upstream latency, tokens, spans.

Each `LLMProxy` has a registry of its own (several proxies in one process must not add up), kept across
restarts. The model label is a name the proxy serves, or "other": a client cannot create series by
sending made-up model names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..exposition import bounded
from .spans import CallRecord

# The public model name the handler picked for the call being served (read back by the middleware that
# counts calls; the handler runs in the middleware's context, and each request sets it afresh).
CALL_MODEL: ContextVar[str | None] = ContextVar("lq_proxy_call_model", default=None)
# Interactive LLM calls: from a few milliseconds (a cached stand-in) to minutes (long generations).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf"))

# ProxyState.health() counters -> (metric name, type, help). `calls` is left out: lq_proxy_calls_total has it.
_HEALTH: dict[str, tuple[str, str, str]] = {
    "recorded_spans": ("lq_proxy_spans_recorded", "counter", "Calls stored as spans."),
    "span_write_errors": ("lq_proxy_spans_dropped", "counter", "Spans of served calls the store did not take."),
    "truncated_spans": ("lq_proxy_spans_truncated", "counter", "Spans stored without their largest attributes."),
    "unattributed_calls": ("lq_proxy_unattributed_calls", "counter", "Calls without the rollout/attempt prefix."),
    "upstream_errors": ("lq_proxy_upstream_errors", "counter", "Calls whose upstream failed or answered an error."),
    "refused_connections": ("lq_proxy_connections_refused", "counter", "Client connections refused (too many)."),
    "evicted_connections": ("lq_proxy_connections_evicted", "counter", "Idle connections closed to make room."),
    "head_timeouts": ("lq_proxy_header_timeouts", "counter", "Connections that sent no request head in time."),
    "open_connections": ("lq_proxy_open_connections", "gauge", "Client connections open now."),
    "in_flight": (
        "lq_proxy_calls_admitted_in_flight",
        "gauge",
        "Calls admitted and not finished (span stored, answer sent): what a weight-sync drain waits for.",
    ),
    "refused_paused": (
        "lq_proxy_calls_refused_paused",
        "counter",
        "Calls answered 503 because claims were paused for a weight sync.",
    ),
    "claims_paused": ("lq_proxy_claims_paused", "gauge", "1 while the proxy sees the namespace's claims paused."),
    "policy_version": ("lq_proxy_policy_version", "gauge", "The namespace's policy version as the proxy last read it."),
}


class _HealthCollector(Collector):
    """The proxy's own counters (`/health`), read when scraped."""

    def __init__(self) -> None:
        self.read: Callable[[], dict[str, int]] | None = None

    def collect(self) -> Iterable[Metric]:
        counts = self.read() if self.read is not None else {}
        for key, (name, kind, documentation) in _HEALTH.items():
            if key not in counts:
                continue
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, documentation, value=counts[key])


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.models: tuple[str, ...] = ()
        self.calls = Counter(
            "lq_proxy_calls_total",
            "Completion calls answered, by public model name and HTTP status.",
            ["model", "status"],
            registry=self.registry,
        )
        self.in_flight = Gauge("lq_proxy_calls_in_flight", "Completion calls being served now.", registry=self.registry)
        self.upstream_latency = Histogram(
            "lq_proxy_upstream_latency_seconds",
            "From forwarding a recorded call to its upstream until its answer ended.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "lq_proxy_time_to_first_token_seconds",
            "From forwarding a recorded streamed call until its first chunk arrived.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "lq_proxy_prompt_tokens_total", "Prompt tokens the upstream reported.", ["model"], registry=self.registry
        )
        self.completion_tokens = Counter(
            "lq_proxy_completion_tokens_total",
            "Completion tokens the upstream reported.",
            ["model"],
            registry=self.registry,
        )
        self._health = _HealthCollector()
        self.registry.register(self._health)

    def serve(self, models: Iterable[str], health: Callable[[], dict[str, int]]) -> None:
        """Bind to the models and counters of the proxy's running state (at each start)."""
        self.models = tuple(models)
        self._health.read = health

    def model(self, name: Any) -> str:
        return bounded(name, self.models)

    def call_answered(self, model: Any, status: int | str) -> None:
        self.calls.labels(model=self.model(model), status=str(status)).inc()

    def recorded(self, call: CallRecord) -> None:
        """Latency and tokens of a call that was recorded (the only ones whose timing is known)."""
        model = self.model(call.model)
        if call.end_time is not None:
            self.upstream_latency.labels(model).observe(max(0.0, call.end_time - call.start_time))
        if call.first_chunk_time is not None:
            self.time_to_first_token.labels(model).observe(max(0.0, call.first_chunk_time - call.start_time))
        usage = call.response.get("usage") if isinstance(call.response, dict) else None
        if isinstance(usage, dict):
            for key, counter in (("prompt_tokens", self.prompt_tokens), ("completion_tokens", self.completion_tokens)):
                tokens = usage.get(key)
                if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0:
                    counter.labels(model).inc(tokens)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
