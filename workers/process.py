"""One worker process started by the pool: settings from the environment, signals, the worker loop.

Run as `python -m workers` with `LQ_WORKER_SETTINGS` (JSON) and `LQ_REDIS_URL` set; the
Redis URL travels in the environment, not argv, so a password never shows in `ps`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from lightning_queue.litagent import Hook, LitAgent
from lightning_queue.store import RedisLightningStore
from lightning_queue.tracer import OtelTracer

from .loader import AgentLoadError, load_agent, load_hook, load_tracer
from .runner import Worker
from .settings import WorkerSettings

logger = logging.getLogger("workers.process")

SLOT_ENV = "LQ_WORKER_SLOT"
SUPERVISOR_ENV = "LQ_SUPERVISOR_PID"
# Exit code of a process that can never work (bad agent, bad settings): the pool does not restart it.
EXIT_CONFIG = 2
# Exit code of a process that recycled itself (max_rollouts_per_process, max_memory_mb): the pool
# starts a fresh one at once, without the crash backoff. sysexits' EX_TEMPFAIL.
EXIT_RECYCLE = 75


def configure_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
        force=True,
    )


async def serve(
    settings: WorkerSettings, agent: LitAgent[Any], hooks: list[Hook], tracer: OtelTracer | None = None
) -> int:
    """Run one worker until it is stopped (or recycles); returns the process's exit code.

    `tracer` (default `AgentOpsTracer()`) is the Trainer's or the one `settings.tracer` names.
    """
    store = RedisLightningStore(
        os.environ.get("LQ_REDIS_URL"),
        namespace=settings.namespace,
        lease_seconds=settings.lease_seconds,
        # The lazy sweep before store calls shares the worker's sweep period (and its lock TTL).
        scan_debounce_seconds=min(5.0, settings.lease_seconds / 2),
    )
    worker = Worker(
        agent,
        store,
        concurrency=settings.concurrency,
        max_rollouts=settings.max_rollouts,
        max_rollouts_per_process=settings.max_rollouts_per_process,
        max_memory_mb=settings.max_memory_mb,
        hooks=hooks,
        tracer=tracer,
        grace_seconds=settings.grace_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
    )
    loop = asyncio.get_running_loop()
    signals_seen: list[str] = []

    def on_signal(name: str) -> None:
        signals_seen.append(name)
        logger.info("worker %s: got %s", worker.worker_id, name)
        # First signal: finish in-flight rollouts within the grace period. Second: release them now.
        worker.stop(now=len(signals_seen) > 1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    watcher = asyncio.create_task(_watch_supervisor(worker))
    try:
        await worker.run()
    finally:
        watcher.cancel()
        await asyncio.wait([asyncio.create_task(store.aclose())], timeout=2.0)
    code = 1 if worker.failure is not None else EXIT_RECYCLE if worker.recycle_reason is not None else 0
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and t is not watcher]
    if worker.abandoned_threads or leftover:
        # A sync agent thread that never returns, or a Redis call stuck on a dead server, would keep the
        # process alive (asyncio.run awaits leftover tasks). All that matters is stored or will be reclaimed.
        logger.warning(
            "exiting with %d agent threads and %d Redis calls still running",
            worker.abandoned_threads,
            len(leftover),
        )
        logging.shutdown()
        os._exit(code)
    return code


async def _watch_supervisor(worker: Worker) -> None:
    """Stop gracefully if the supervisor dies: an orphaned worker would otherwise run on unsupervised."""
    expected = int(os.environ.get(SUPERVISOR_ENV, "0") or 0)
    if not expected:
        return
    # No event tells a process its parent died; polling getppid once a second is cheap.
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != expected:
            break
    logger.warning("worker %s: supervisor %d is gone; stopping", worker.worker_id, expected)
    worker.stop()


def main() -> int:
    try:
        settings = WorkerSettings.from_env(os.environ)
    except (ValueError, TypeError) as exc:
        print(f"workers.process: bad settings: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level, f"worker#{os.environ.get(SLOT_ENV, '?')}[{os.getpid()}]")
    try:
        agent = load_agent(settings.agent)
        hooks = [load_hook(spec) for spec in settings.hooks]
        tracer = load_tracer(settings.tracer) if settings.tracer else None
    except AgentLoadError as exc:
        logger.error("%s", exc)
        return EXIT_CONFIG
    return asyncio.run(serve(settings, agent, hooks, tracer))
