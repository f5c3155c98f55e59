"""`lq worker`: check the agent, then supervise a pool of worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import click

from lightning_queue.cli import namespace_option, redis_url_option
from lightning_queue.store import EvictingRedisError, RedisLightningStore
from lightning_queue.store.connection import resolve_shared_url, wait_for_redis
from lightning_queue.store.keys import check_namespace
from lightning_queue.store.redis import REDIS_DOWN

from .loader import AgentLoadError, load_agent, load_hook
from .pool import WorkerPool
from .process import WorkerSettings, configure_logging

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# How long `lq worker` waits to check the eviction policy before leaving it to the workers.
PROBE_SECONDS = 3.0


@click.command("worker", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--agent",
    "agent_spec",
    required=True,
    metavar="MODULE:ATTR",
    help="The agent to run: a @rollout function or a LitAgent, e.g. workers.examples:echo.",
)
@click.option("--hook", "hook_specs", multiple=True, metavar="MODULE:ATTR", help="A workers.Hook (repeatable).")
@click.option("-n", "--processes", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Rollouts in flight per process (asyncio tasks; threads for sync agents).",
)
@redis_url_option
@namespace_option
@click.option(
    "--max-rollouts",
    type=click.IntRange(min=1),
    default=None,
    help="Each process exits after claiming this many rollouts (not restarted). Default: run until stopped.",
)
@click.option(
    "--max-rollouts-per-process",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Recycle each process after it claimed N rollouts: it finishes them and the pool starts a fresh one.",
)
@click.option(
    "--max-memory-mb",
    type=click.IntRange(min=1),
    default=None,
    metavar="MB",
    help="Recycle a process whose memory (RSS) is above MB after a rollout: it finishes its in-flight "
    "rollouts and the pool starts a fresh one.",
)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="A dead worker's rollouts are reclaimed after this long; use one value per namespace.",
)
@click.option(
    "--grace-seconds",
    type=click.FloatRange(min=0.0),
    default=30.0,
    show_default=True,
    help="On SIGINT/SIGTERM, in-flight rollouts get this long to finish before they are released.",
)
@click.option(
    "--heartbeat-seconds",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Period of the worker telemetry sent through update_worker.",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="INFO", show_default=True)
def worker_command(
    agent_spec: str,
    hook_specs: tuple[str, ...],
    processes: int,
    concurrency: int,
    redis_url: str | None,
    namespace: str,
    max_rollouts: int | None,
    max_rollouts_per_process: int | None,
    max_memory_mb: int | None,
    lease_seconds: float,
    grace_seconds: float,
    heartbeat_seconds: float,
    log_level: str,
) -> None:
    """Start a pool of worker processes that claim rollouts and run an agent on them.

    SIGINT/SIGTERM stop claiming at once and let in-flight rollouts finish within --grace-seconds;
    a second signal releases them back to the queue at once.
    """
    configure_logging(log_level, "lq-worker")
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
        settings = WorkerSettings(
            agent=agent_spec,
            hooks=hook_specs,
            namespace=namespace,
            concurrency=concurrency,
            max_rollouts=max_rollouts,
            max_rollouts_per_process=max_rollouts_per_process,
            max_memory_mb=max_memory_mb,
            lease_seconds=lease_seconds,
            grace_seconds=grace_seconds,
            heartbeat_seconds=heartbeat_seconds,
            log_level=log_level,
        )
    except ValueError as exc:
        # Named as the options are: the settings speak of their fields.
        raise click.UsageError(str(exc).replace("max_", "--max-").replace("_", "-")) from exc
    # Workers exist to share the algorithm's Redis: never a private one; wait for the shared one instead.
    try:
        wait_for_redis(url, who="lq worker")
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        asyncio.run(_refuse_evicting_redis(url, namespace))
    except EvictingRedisError as exc:
        raise click.ClickException(str(exc)) from exc
    raise SystemExit(WorkerPool(settings, processes, redis_url=url).run())


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
