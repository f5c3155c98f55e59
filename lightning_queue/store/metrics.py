"""Store gauges for Prometheus (`lq metrics --port`): queue, rollouts and workers of a namespace, read on scrape.

Each scrape costs a bounded number of Redis calls, whatever the store holds: status index sizes (ZCARD),
the stream group's lag (XINFO GROUPS) and pending summary (XPENDING), the oldest queued rollout
(ZRANGE 0 0), INFO memory, and the workers' records (one per worker, never per rollout).
"""

from __future__ import annotations

import asyncio
import errno
import sys
import time
from collections.abc import Iterable

import click
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..types import ROLLOUT_STATUSES, WORKER_STATUSES
from .redis import RedisLightningStore
from .schema import QUEUED_ROLLOUT
from .settings import namespace_option, redis_url_option


class StoreCollector(Collector):
    """Gauges of one namespace; `refresh()` reads them (async), `collect()` yields the latest reading."""

    def __init__(self, store: RedisLightningStore) -> None:
        self.store = store
        self._families: list[Metric] = []

    async def refresh(self) -> None:
        store = self.store
        stats = await store.statistics()
        by_status: dict[str, int] = stats["rollouts_by_status"]
        redis = store._redis
        oldest = None
        for status in QUEUED_ROLLOUT:
            first = await redis.zrange(store.keys.status_index(status), 0, 0, withscores=True)
            if first:
                oldest = first[0][1] if oldest is None else min(oldest, first[0][1])
        workers = await store.query_workers()
        memory = await store.memory()
        attempted = stats["total_rollouts"] - by_status.get("queuing", 0)
        families: list[Metric] = [
            GaugeMetricFamily(
                "lq_queue_depth", "Queued rollouts no worker has read yet.", value=await store.queue_depth()
            ),
            GaugeMetricFamily(
                "lq_queue_pending_entries", "Queue entries read by a worker, not yet acknowledged.",
                value=await store.pending_entries(),
            ),
            GaugeMetricFamily(
                "lq_queue_oldest_age_seconds", "Age of the oldest queued or requeued rollout (0 when none).",
                value=0.0 if oldest is None else max(0.0, time.time() - float(oldest)),
            ),
            GaugeMetricFamily(
                "lq_store_retries", "Attempts beyond each rollout's first: attempts stored minus rollouts attempted.",
                value=max(0, stats["total_attempts"] - attempted),
            ),
            GaugeMetricFamily("lq_store_attempts", "Attempts stored.", value=stats["total_attempts"]),
        ]  # fmt: skip
        if memory.used_bytes is not None:  # unknown where INFO is refused (managed Redis, fakeredis)
            used = GaugeMetricFamily("lq_redis_used_memory_bytes", "Redis used_memory.", value=memory.used_bytes)
            families.append(used)
        rollouts = GaugeMetricFamily("lq_store_rollouts", "Rollouts stored, by status.", labels=["status"])
        for status in ROLLOUT_STATUSES:
            rollouts.add_metric([status], by_status.get(status, 0))
        counts = dict.fromkeys(WORKER_STATUSES, 0)
        for worker in workers:
            counts[worker.status] = counts.get(worker.status, 0) + 1
        by_worker = GaugeMetricFamily("lq_store_workers", "Workers registered, by status.", labels=["status"])
        for status, count in counts.items():
            by_worker.add_metric([status], count)
        self._families = [*families, rollouts, by_worker]

    def collect(self) -> Iterable[Metric]:
        return list(self._families)


def metrics_app(store: RedisLightningStore) -> web.Application:
    collector = StoreCollector(store)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    lock = asyncio.Lock()

    async def metrics(request: web.Request) -> web.Response:
        async with lock:  # concurrent scrapes share one reading at a time
            await collector.refresh()
            body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def serve(store: RedisLightningStore, host: str, port: int, ready: asyncio.Event | None = None) -> None:
    runner = web.AppRunner(metrics_app(store), access_log=None, handle_signals=True)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                taken = f"metrics port {port} on {host} is already in use: pick another --port"
                raise OSError(exc.errno, taken) from exc
            raise
        click.echo(f"lq metrics: serving namespace {store.namespace!r} at http://{host}:{port}/metrics")
        sys.stdout.flush()
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await store.aclose()


@click.command("metrics")
@redis_url_option
@namespace_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (0.0.0.0 serves other machines).")
@click.option("--port", default=9108, show_default=True, type=click.IntRange(1, 65535), help="Port of /metrics.")
def metrics_command(redis_url: str | None, namespace: str, host: str, port: int) -> None:
    """Serve the store gauges of a namespace (queue, rollouts, workers, memory) for Prometheus."""
    from .connection import resolve_shared_url, wait_for_redis

    try:
        url = resolve_shared_url(redis_url)
        wait_for_redis(url, who="lq metrics")
        store = RedisLightningStore(url, namespace=namespace, scan_debounce_seconds=3600)
        asyncio.run(serve(store, host, port))
    except (ValueError, OSError, ConnectionError) as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        return
