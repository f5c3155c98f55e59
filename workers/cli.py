"""`lq worker`: check the agent, then supervise a pool of worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import click
from pydantic import ValidationError

from lightning_queue.exposition import MetricsServeError
from lightning_queue.options import describe, options
from lightning_queue.store import EvictingRedisError, RedisLightningStore
from lightning_queue.store.connection import resolve_shared_url, wait_for_redis
from lightning_queue.store.keys import check_namespace
from lightning_queue.store.redis import REDIS_DOWN
from lightning_queue.store.settings import namespace_option, redis_url_option

from .loader import AgentLoadError, load_agent, load_hook
from .pool import WorkerPool
from .process import configure_logging
from .settings import WorkerSettings

# How long `lq worker` waits to check the eviction policy before leaving it to the workers.
PROBE_SECONDS = 3.0


@click.command("worker", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-n", "--processes", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@redis_url_option
@namespace_option
@options(WorkerSettings, exclude=("namespace",))
def worker_command(processes: int, redis_url: str | None, namespace: str, **fields: Any) -> None:
    """Start a pool of worker processes that claim rollouts and run an agent on them.

    SIGINT/SIGTERM stop claiming at once and let in-flight rollouts finish within --grace-seconds;
    a second signal releases them back to the queue at once.
    """
    agent_spec, hook_specs = fields["agent"], fields["hooks"]
    configure_logging(fields["log_level"], "lq-worker")
    # Fail before any process starts: a bad --agent would only crash-loop in every worker.
    try:
        load_agent(agent_spec)
    except AgentLoadError as exc:
        raise click.BadParameter(str(exc), param_hint="'--agent'") from exc
    for spec in hook_specs:
        try:
            load_hook(spec)
        except AgentLoadError as exc:
            raise click.BadParameter(str(exc), param_hint="'--hook'") from exc
    try:
        check_namespace(namespace)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--namespace'") from exc
    try:
        url = resolve_shared_url(redis_url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--redis-url'") from exc
    try:
        settings = WorkerSettings(namespace=namespace, **fields)
    except ValidationError as exc:
        # Named as the options are: the settings speak of their fields.
        raise click.UsageError(describe(exc).replace("max_", "--max-").replace("_", "-")) from exc
    # Workers exist to share the algorithm's Redis: never a private one; wait for the shared one instead.
    try:
        wait_for_redis(url, who="lq worker")
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        asyncio.run(_refuse_evicting_redis(url, namespace))
    except EvictingRedisError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        code = WorkerPool(settings, processes, redis_url=url).run()
    except MetricsServeError as exc:
        raise click.ClickException(str(exc)) from exc
    raise SystemExit(code)


async def _refuse_evicting_redis(url: str, namespace: str) -> None:
    """Refuse an evicting Redis before any process starts; an unreachable one is the workers' to wait for."""
    store = RedisLightningStore(url, namespace=namespace)
    try:
        await asyncio.wait_for(store.memory(), PROBE_SECONDS)
    except (asyncio.TimeoutError, *REDIS_DOWN) as exc:
        logging.getLogger(__name__).info("could not check Redis' maxmemory-policy yet (%s); workers will", exc)
    finally:
        with contextlib.suppress(*REDIS_DOWN):
            await store.aclose()
