"""`Trainer`: wire an algorithm to the store and the proxy, start local worker processes, run, clean up."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from workers.settings import WorkerSettings

from .algorithm.base import Algorithm
from .options import describe
from .store.redis import RedisLightningStore
from .store.settings import fresh_namespace
from .types import NamedResources

if TYPE_CHECKING:
    from workers.pool import WorkerPool

    from .adapter import TraceAdapter
    from .llm_proxy import LLMProxy

logger = logging.getLogger(__name__)


def agent_import_path(agent: Any) -> str:
    """`module:attribute` under which worker processes can import `agent` (they cannot share objects)."""
    if isinstance(agent, str):
        return agent
    module_name = getattr(agent, "__module__", None) or type(agent).__module__
    module = sys.modules.get(module_name)
    if module_name == "__main__" and module is not None:
        spec = getattr(module, "__spec__", None)
        if spec is None:
            raise ValueError(
                f"agent {agent!r} is defined in a script run as a file; worker processes cannot import it. "
                "Move it to a module (or run the script with `python -m`), or pass agent='package.module:name'"
            )
        module_name = spec.name
    for name, value in vars(module).items() if module is not None else ():
        if value is agent:
            return f"{module_name}:{name}"
    raise ValueError(
        f"agent {agent!r} is not a module-level name of {module_name!r}, so worker processes cannot import it; "
        "define it at module level or pass agent='package.module:name'"
    )


# Trainer keyword -> WorkerSettings field it sets, for errors that name what the caller wrote.
_KEYWORDS = {
    "concurrency": "worker_concurrency",
    "log_level": "worker_log_level",
    "max_rollouts_per_process": "worker_max_rollouts_per_process",
    "max_memory_mb": "worker_max_memory_mb",
    "grace_seconds": "stop_timeout",
}


def _keyword_names(message: str) -> str:
    return re.sub(r"\b(" + "|".join(_KEYWORDS) + r")\b", lambda m: _KEYWORDS[m.group(1)], message)


class Trainer:
    """Run an `Algorithm` against the store with local worker processes executing the agent.

    Wiring order (as the v0.3 contract): trainer, store, adapter, initial resources, then the proxy
    gets the store and the algorithm gets the proxy; then `run(train_dataset, val_dataset)`.

    Args:
        algorithm: the Algorithm (or `@algo` function) to run; None only with `dev()`.
        store: a `RedisLightningStore`; default: one on the resolved Redis URL in a fresh namespace.
        llm_proxy: an `LLMProxy` the algorithm may start through `@with_llm_proxy`.
        adapter: a `TraceAdapter` handed to the algorithm.
        initial_resources: resources handed to the algorithm (it decides how to publish them).
        n_workers: local worker processes; 0 means external `lq worker` pools do the work.
        worker_settings: the local workers' `WorkerSettings` (agent and namespace are filled in); the
            keywords below override single fields, and default to it (else to `WorkerSettings`' defaults).
        worker_concurrency: rollouts in flight per worker process (`concurrency`).
        lease_seconds: lease of claimed rollouts (the workers and the store use the same value).
        worker_log_level: log level of the worker processes (`log_level`).
        worker_max_rollouts_per_process: recycle each worker process after it claimed this many rollouts.
        worker_max_memory_mb: recycle a worker process whose RSS is above this many MB after a rollout.
        stop_timeout: seconds the worker processes get to finish in-flight rollouts at the end (`grace_seconds`).
        hooks: `module:attr` of `workers.Hook`s the workers run.
    """

    def __init__(
        self,
        *,
        algorithm: Algorithm | None = None,
        store: RedisLightningStore | None = None,
        llm_proxy: LLMProxy | None = None,
        adapter: TraceAdapter[Any] | None = None,
        initial_resources: NamedResources | None = None,
        n_workers: int = 1,
        worker_settings: WorkerSettings | None = None,
        worker_concurrency: int | None = None,
        lease_seconds: float | None = None,
        worker_log_level: str | None = None,
        worker_max_rollouts_per_process: int | None = None,
        worker_max_memory_mb: int | None = None,
        stop_timeout: float | None = None,
        hooks: Sequence[str] | None = None,
    ) -> None:
        if n_workers < 0:
            raise ValueError(f"n_workers must be >= 0, got {n_workers!r}")
        given = {
            "concurrency": worker_concurrency,
            "lease_seconds": lease_seconds,
            "log_level": worker_log_level,
            "max_rollouts_per_process": worker_max_rollouts_per_process,
            "max_memory_mb": worker_max_memory_mb,
            "grace_seconds": stop_timeout,
            "hooks": None if hooks is None else tuple(hooks),
        }
        settings = worker_settings or WorkerSettings()
        try:
            settings = WorkerSettings.model_validate(
                {**settings.model_dump(), **{k: v for k, v in given.items() if v is not None}}
            )
        except ValidationError as exc:
            raise ValueError(_keyword_names(describe(exc))) from None
        self.worker_settings = settings
        self.algorithm = algorithm
        self.store = store or RedisLightningStore(namespace=fresh_namespace(), lease_seconds=settings.lease_seconds)
        self.llm_proxy = llm_proxy
        self.adapter = adapter
        self.initial_resources = initial_resources
        self.n_workers = n_workers
        self.worker_concurrency = settings.concurrency
        self.lease_seconds = settings.lease_seconds
        self.worker_log_level = settings.log_level
        self.worker_max_rollouts_per_process = settings.max_rollouts_per_process
        self.worker_max_memory_mb = settings.max_memory_mb
        self.stop_timeout = settings.grace_seconds
        self.hooks = settings.hooks
        self.pool: WorkerPool | None = None
        self._pool_thread: threading.Thread | None = None

    # --- entry points -------------------------------------------------------------------------------
    def fit(self, agent: Any, train_dataset: Any = None, *, val_dataset: Any = None) -> Any:
        """Run the algorithm to completion with workers executing `agent`; returns what `run` returned."""
        if self.algorithm is None:
            raise ValueError("Trainer.fit needs an algorithm; use Trainer.dev(...) to just run the agent")
        return asyncio.run(self.fit_async(agent, train_dataset, val_dataset=val_dataset))

    def dev(self, agent: Any, train_dataset: Any = None, *, val_dataset: Any = None) -> Any:
        """Run each task once through the workers (the `Baseline` algorithm unless one was given)."""
        from .algorithm.baseline import Baseline

        if self.algorithm is None:
            self.algorithm = Baseline()
        return self.fit(agent, train_dataset, val_dataset=val_dataset)

    async def fit_async(self, agent: Any, train_dataset: Any = None, *, val_dataset: Any = None) -> Any:
        algorithm = self.algorithm
        if algorithm is None:
            raise ValueError("Trainer.fit_async needs an algorithm")
        agent_path = agent_import_path(agent) if self.n_workers else None
        self._wire(algorithm, agent)
        try:
            if agent_path is not None:
                self._start_workers(agent_path)
            if algorithm.is_async():
                return await algorithm.run(train_dataset=train_dataset, val_dataset=val_dataset)
            # A synchronous run blocks; keep this loop free for the proxy and the store.
            return await asyncio.to_thread(algorithm.run, train_dataset=train_dataset, val_dataset=val_dataset)
        finally:
            await asyncio.to_thread(self.stop_workers)

    # --- wiring -------------------------------------------------------------------------------------
    def _wire(self, algorithm: Algorithm, agent: Any) -> None:
        algorithm.set_trainer(self)
        algorithm.set_store(self.store)
        if self.adapter is not None:
            algorithm.set_adapter(self.adapter)
        if self.initial_resources is not None:
            algorithm.set_initial_resources(self.initial_resources)
        if self.llm_proxy is not None:
            self.llm_proxy.set_store(self.store)
            algorithm.set_llm_proxy(self.llm_proxy)
        if hasattr(agent, "set_trainer") and not isinstance(agent, str):
            agent.set_trainer(self)

    def _start_workers(self, agent_path: str) -> None:
        from workers.loader import load_agent
        from workers.pool import WorkerPool

        if self.store.url is None:
            raise ValueError(
                "worker processes need a Redis URL, but the store was built from a client factory; "
                "give the store a URL or use n_workers=0 with your own workers"
            )
        load_agent(agent_path)  # fail here, with the loader's clear message, not in every child
        settings = self.worker_settings.model_copy(update={"agent": agent_path, "namespace": self.store.namespace})
        self.pool = WorkerPool(settings, self.n_workers, redis_url=self.store.url, stop_timeout=self.stop_timeout)
        self._pool_thread = threading.Thread(target=self.pool.run, name="lq-worker-pool", daemon=True)
        self._pool_thread.start()
        logger.info("started %d worker processes for %s", self.n_workers, agent_path)

    def stop_workers(self) -> None:
        """Ask the worker processes to finish in-flight rollouts and wait until they are gone."""
        pool, thread = self.pool, self._pool_thread
        if pool is None or thread is None:
            return
        pool.request_stop("the algorithm finished")
        # The pool escalates SIGINT -> SIGTERM -> SIGKILL on its own; this join only bounds the wait.
        thread.join(timeout=self.stop_timeout * 4 + 30)
        if thread.is_alive():
            logger.error("worker pool did not stop in time; killing its processes")
            pool.request_stop("hurry")
            pool.request_stop("kill")
            thread.join(timeout=10)
        self.pool, self._pool_thread = None, None

    def worker_pids(self) -> list[int]:
        return self.pool.pids() if self.pool is not None else []
