"""The shipped Grafana dashboard uses only metric names that workers, proxy and `lq metrics` export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import workers.metrics  # noqa: F401  (registers the worker metrics)
from lightning_queue import RedisLightningStore
from lightning_queue.llm_proxy.metrics import _HEALTH, ProxyMetrics
from lightning_queue.store.metrics import StoreCollector

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "lightning-queue.json"
_NAME = re.compile(r"\blq_[a-z0-9_]+")


def referenced() -> set[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    assert exprs, "the dashboard has queries"
    return {name for expr in exprs for name in _NAME.findall(expr)}


async def exported(store: RedisLightningStore) -> set[str]:
    """The series names of every registered family (a labelled family has no samples until first used)."""
    proxy = ProxyMetrics()
    proxy.serve(["policy"], lambda: dict.fromkeys(_HEALTH, 0))
    collector = StoreCollector(store)
    await collector.refresh()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names = set()
    for family in [*REGISTRY.collect(), *proxy.registry.collect(), *collector.collect()]:
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ())}
    return names


async def test_every_metric_the_dashboard_queries_is_exported(store: RedisLightningStore) -> None:
    await store.update_worker("w-1", {})
    names = await exported(store)
    wanted = referenced()
    if (await store.memory()).used_bytes is None:  # fakeredis refuses INFO: no memory gauge there
        wanted.discard("lq_redis_used_memory_bytes")
    missing = wanted - names
    assert not missing, f"the dashboard queries metrics nobody exports: {sorted(missing)}"


def test_dashboard_covers_every_documented_metric() -> None:
    doc = (DASHBOARD.parents[1] / "observability.md").read_text()
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in referenced()}
    undocumented = families - set(_NAME.findall(doc))
    assert not undocumented, f"dashboard metrics missing from docs/observability.md: {sorted(undocumented)}"


async def test_every_exported_metric_is_documented(store: RedisLightningStore) -> None:
    doc = (DASHBOARD.parents[1] / "observability.md").read_text()
    families = {re.sub(r"_(bucket|count|sum|created)$", "", name) for name in await exported(store)}
    families = {name for name in families if name.startswith("lq_")}
    documented = set(_NAME.findall(doc))
    undocumented = {name for name in families if name not in documented and f"{name}_total" not in documented}
    assert not undocumented, f"exported metrics missing from docs/observability.md: {sorted(undocumented)}"
