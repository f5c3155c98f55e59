"""`agentlightning.utils.metrics`: counters and histograms a script registers, then records, on a backend.

v0.3 scripts register metrics by name with fixed label names, then `await inc_counter(...)` /
`await observe_histogram(...)`. The same calls work here on three backends: `PrometheusMetricsBackend`
(prometheus-client, the library lightning-queue's own `/metrics` endpoints use), `ConsoleMetricsBackend`
(logs rate and percentiles over a sliding window) and `MultiMetricsBackend` (both at once). The store,
workers and proxy keep their own telemetry (`lq status`, `--metrics-port`); this is for a script's own.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

logger = logging.getLogger(__name__)

LabelDict = dict[str, str]
Kind = Literal["counter", "histogram"]


@dataclass(frozen=True)
class _Definition:
    kind: Kind
    label_names: tuple[str, ...]
    buckets: tuple[float, ...] | None
    group_level: int | None


class MetricsBackend(ABC):
    """Register each metric once (name, kind, label names), then record it with exactly those labels."""

    def __init__(self) -> None:
        self._definitions: dict[str, _Definition] = {}
        self._lock = threading.Lock()

    def has_prometheus(self) -> bool:
        return False

    def register_counter(
        self, name: str, label_names: Sequence[str] | None = None, group_level: int | None = None
    ) -> None:
        self._register(name, _Definition("counter", tuple(label_names or ()), None, group_level))

    def register_histogram(
        self,
        name: str,
        label_names: Sequence[str] | None = None,
        buckets: Sequence[float] | None = None,
        group_level: int | None = None,
    ) -> None:
        chosen = None if buckets is None else tuple(float(b) for b in buckets)
        self._register(name, _Definition("histogram", tuple(label_names or ()), chosen, group_level))

    async def inc_counter(self, name: str, amount: float = 1.0, labels: LabelDict | None = None) -> None:
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
            raise ValueError(f"counter {name!r}: amount must be a number >= 0, got {amount!r}")
        self._record(name, self._check(name, "counter", labels), float(amount))

    async def observe_histogram(self, name: str, value: float, labels: LabelDict | None = None) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"histogram {name!r}: value must be a number, got {value!r}")
        self._record(name, self._check(name, "histogram", labels), float(value))

    def _register(self, name: str, definition: _Definition) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a metric name must be a non-empty string, got {name!r}")
        with self._lock:
            existing = self._definitions.get(name)
            if existing is not None:
                if existing.kind != definition.kind:
                    raise ValueError(f"metric {name!r} is already registered as a {existing.kind}")
                if existing.label_names != definition.label_names:
                    raise ValueError(
                        f"metric {name!r} is already registered with labels {list(existing.label_names)!r}, "
                        f"not {list(definition.label_names)!r}"
                    )
                return  # registering the same metric twice is harmless, as in v0.3
            self._definitions[name] = definition
            self._declare(name, definition)

    def _check(self, name: str, kind: Kind, labels: LabelDict | None) -> tuple[tuple[str, str], ...]:
        definition = self._definitions.get(name)
        if definition is None:
            raise ValueError(f"metric {name!r} is not registered; call register_{kind} first")
        if definition.kind != kind:
            raise ValueError(f"metric {name!r} is a {definition.kind}, not a {kind}")
        given = dict(labels or {})
        if set(given) != set(definition.label_names):
            raise ValueError(f"{kind} {name!r} takes labels {list(definition.label_names)!r}, got {sorted(given)!r}")
        return tuple((label, str(given[label])) for label in definition.label_names)

    @abstractmethod
    def _declare(self, name: str, definition: _Definition) -> None:
        """Create the backend's own object for a newly registered metric."""

    @abstractmethod
    def _record(self, name: str, labels: tuple[tuple[str, str], ...], value: float) -> None:
        """Record one checked event."""


class PrometheusMetricsBackend(MetricsBackend):
    """Metrics as prometheus-client counters and histograms (`.` in names becomes `_`).

    They join `registry` (default: prometheus-client's global one, which `start_http_server` exposes).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__()
        self._registry = REGISTRY if registry is None else registry
        self._metrics: dict[str, Counter | Histogram] = {}

    def has_prometheus(self) -> bool:
        return True

    def _declare(self, name: str, definition: _Definition) -> None:
        prom_name = name.replace(".", "_")
        labels = list(definition.label_names)
        if definition.kind == "counter":
            self._metrics[name] = Counter(prom_name, name, labels, registry=self._registry)
        elif definition.buckets is None:
            self._metrics[name] = Histogram(prom_name, name, labels, registry=self._registry)
        else:
            self._metrics[name] = Histogram(
                prom_name, name, labels, registry=self._registry, buckets=definition.buckets
            )

    def _record(self, name: str, labels: tuple[tuple[str, str], ...], value: float) -> None:
        metric: Any = self._metrics[name]
        if labels:
            metric = metric.labels(**dict(labels))
        if isinstance(metric, Counter):
            metric.inc(value)
        else:
            metric.observe(value)


def _percentile(ordered: list[float], q: float) -> float:
    # Nearest-rank percentile of a sorted, non-empty list.
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class ConsoleMetricsBackend(MetricsBackend):
    """Logs, at most every `log_interval_seconds`, each metric's rate and (histograms) P50/P95/P99.

    Both are over the last `window_seconds` (None: everything recorded). Labels are cut to their first
    `group_level` (the backend's, else the metric's; None or < 1: none) and events sharing the cut
    labels are reported together.
    """

    def __init__(
        self, window_seconds: float | None = 60.0, log_interval_seconds: float = 10.0, group_level: int | None = None
    ) -> None:
        super().__init__()
        if window_seconds is not None and not window_seconds > 0:
            raise ValueError(f"window_seconds must be > 0 or None, got {window_seconds!r}")
        if not log_interval_seconds >= 0:
            raise ValueError(f"log_interval_seconds must be >= 0, got {log_interval_seconds!r}")
        self.window_seconds = window_seconds
        self.log_interval_seconds = log_interval_seconds
        self.group_level = group_level
        self._events: dict[tuple[str, tuple[tuple[str, str], ...]], deque[tuple[float, float]]] = {}
        self._last_log: float | None = None

    def _declare(self, name: str, definition: _Definition) -> None:
        # Events are kept per metric and label set as they arrive; nothing to create up front.
        return None

    def _record(self, name: str, labels: tuple[tuple[str, str], ...], value: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._events.setdefault((name, labels), deque()).append((now, value))
            if self._last_log is not None and now - self._last_log < self.log_interval_seconds:
                return
            self._last_log = now
            lines = self._snapshot(now)
        for line in lines:
            logger.info(line)

    def snapshot(self) -> list[str]:
        """One line per metric and label group, as it would be logged now."""
        with self._lock:
            return self._snapshot(time.monotonic())

    def _snapshot(self, now: float) -> list[str]:
        groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
        for (name, labels), events in self._events.items():
            if self.window_seconds is not None:
                while events and events[0][0] < now - self.window_seconds:
                    events.popleft()
            definition = self._definitions[name]
            level = self.group_level if self.group_level is not None else definition.group_level
            cut = labels[: level if level is not None and level > 0 else 0]
            groups.setdefault((name, cut), []).extend(events)
        lines: list[str] = []
        for (name, cut), grouped in sorted(groups.items()):
            if not grouped:
                continue
            span = self.window_seconds or max(now - min(t for t, _ in grouped), 1e-9)
            label_text = ",".join(f"{k}={v}" for k, v in cut)
            head = f"{name}{{{label_text}}}" if label_text else name
            if self._definitions[name].kind == "counter":
                lines.append(f"{head} rate={sum(v for _, v in grouped) / span:.3f}/s")
            else:
                ordered = sorted(v for _, v in grouped)
                lines.append(
                    f"{head} rate={len(ordered) / span:.3f}/s p50={_percentile(ordered, 0.5):.4g} "
                    f"p95={_percentile(ordered, 0.95):.4g} p99={_percentile(ordered, 0.99):.4g}"
                )
        return lines


class MultiMetricsBackend(MetricsBackend):
    """Sends every registration and event to each of `backends`."""

    def __init__(self, backends: Sequence[MetricsBackend]) -> None:
        super().__init__()
        if not backends:
            raise ValueError("MultiMetricsBackend needs at least one backend")
        self._backends = list(backends)

    def has_prometheus(self) -> bool:
        return any(b.has_prometheus() for b in self._backends)

    def _declare(self, name: str, definition: _Definition) -> None:
        for backend in self._backends:
            backend._register(name, definition)

    def _record(self, name: str, labels: tuple[tuple[str, str], ...], value: float) -> None:
        for backend in self._backends:
            backend._record(name, labels, value)


__all__ = ["ConsoleMetricsBackend", "LabelDict", "MetricsBackend", "MultiMetricsBackend", "PrometheusMetricsBackend"]
