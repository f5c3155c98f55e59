"""`Trainer`: wire an algorithm to the store and the proxy, start local worker processes, run, clean up.

Its keywords are Agent-Lightning v0.3's (`n_runners`, `strategy`, `tracer`, `runner`, `port`, `hooks`,
`max_rollouts`, and components given as instances, classes, import strings or dicts) plus this
runtime's worker settings; docs/porting-from-agent-lightning.md (Trainer section) says what each maps to here.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from workers.settings import WorkerSettings

from ..algorithm.base import Algorithm
from ..litagent import Hook
from ..llm_proxy import LLMProxy
from ..options import describe
from ..store.base import LightningStore
from ..store.redis import RedisLightningStore
from ..store.settings import fresh_namespace
from ..tracer import OtelTracer
from ..types import NamedResources
from .components import build_component, load_symbol
from .strategy import ExecutionStrategy, resolve_strategy

if TYPE_CHECKING:
    from workers.pool import Launcher, WorkerPool

    from ..adapter import TraceAdapter

logger = logging.getLogger(__name__)

# Agent-Lightning's default adapter, by name: it lives in lightning_queue.adapter once ported. Until
# then the proxy-span triplet adapter stands in (see docs/porting-from-agent-lightning.md).
DEFAULT_ADAPTER = "lightning_queue.adapter.TracerTraceToTriplet"
FALLBACK_ADAPTER = "lightning_queue.adapter.LlmProxyTraceToTriplet"
# Base classes of components other packages define, by name, so the Trainer does not import them early.
TRACER_BASE = "lightning_queue.tracer.Tracer"
CONCRETE_TRACER = "lightning_queue.tracer.OtelTracer"
RUNNER_BASE = "lightning_queue.runner.LitAgentRunner"

WorkerStart = Literal["fork", "import"]


def import_path(obj: Any, what: str = "agent") -> str:
    """`module:attribute` under which `lq worker` processes can import `obj` (they cannot share objects)."""
    if isinstance(obj, str):
        return obj
    module_name = getattr(obj, "__module__", None) or type(obj).__module__
    module = sys.modules.get(module_name)
    if module_name == "__main__" and module is not None:
        spec = getattr(module, "__spec__", None)
        if spec is None:
            raise ValueError(
                f"{what} {obj!r} is defined in a script run as a file; worker processes started by name cannot "
                f"import it. Move it to a module (or run the script with `python -m`), or pass "
                f"{what}='package.module:name'"
            )
        module_name = spec.name
    for name, value in vars(module).items() if module is not None else ():
        if value is obj:
            return f"{module_name}:{name}"
    raise ValueError(
        f"{what} {obj!r} is not a module-level name of {module_name!r}, so worker processes started by name "
        f"cannot import it; define it at module level or pass {what}='package.module:name'"
    )


def agent_import_path(agent: Any) -> str:
    """`module:attribute` of `agent` for `lq worker` processes (see `import_path`)."""
    return import_path(agent, "agent")


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


def _optional_class(path: str) -> type[Any] | None:
    """The class at `path`, or None while the package that defines it does not exist yet."""
    try:
        obj = load_symbol(path, "class")
    except ValueError:
        return None
    return obj if inspect.isclass(obj) else None


def _resolve_n_runners(n_runners: int | None, n_workers: int | None) -> int:
    if n_runners is not None and n_workers is not None and n_runners != n_workers:
        raise ValueError(
            f"n_runners={n_runners!r} and n_workers={n_workers!r} disagree; they are the same setting "
            "(n_workers is the older name): give one"
        )
    value = n_runners if n_runners is not None else n_workers if n_workers is not None else 1
    name = "n_runners" if n_runners is not None else "n_workers"
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return value


def _runner_setting(runner: Any, name: str) -> Any:
    """A LitAgentRunner's `max_rollouts` / `tracer` (Agent-Lightning keeps them as `_max_rollouts`, `_tracer`)."""
    if runner is None:
        return None
    value = getattr(runner, name, None)
    return value if value is not None else getattr(runner, f"_{name}", None)


def _normalize_hooks(hooks: Hook | str | Sequence[Hook | str] | None) -> list[Hook | str]:
    if hooks is None:
        return []
    items: list[Any] = [hooks] if isinstance(hooks, Hook | str) else list(hooks)
    for hook in items:
        if isinstance(hook, type) and issubclass(hook, Hook):
            raise ValueError(f"hooks: {hook.__qualname__} is a Hook class; pass an instance ({hook.__qualname__}())")
        if not isinstance(hook, Hook | str):
            raise ValueError(f"hooks: {hook!r} is a {type(hook).__name__}, not a Hook instance or 'module:attr'")
    return items


class Trainer:
    """Run an `Algorithm` against the store with local worker processes executing the agent.

    Wiring order (as the v0.3 contract): trainer, store, adapter, initial resources, then the proxy
    gets the store and the algorithm gets the proxy; then `run(train_dataset, val_dataset)`.

    `algorithm`, `store`, `llm_proxy`, `adapter`, `tracer`, `runner` and `strategy` each take an
    instance, a class, a zero-argument factory, an import string (`"agentlightning.Baseline"` reads
    as `"lightning_queue.Baseline"`) or a dict (`{"type": "...", **keywords}`).

    Args:
        algorithm: the Algorithm (or `@algo` function) to run; None only with `dev()`.
        store: a `RedisLightningStore`; default: one on the resolved Redis URL in a fresh namespace,
            purged when `fit`/`dev` ends unless `keep=True`.
        llm_proxy: an `LLMProxy` the algorithm may start through `@with_llm_proxy`.
        adapter: a `TraceAdapter` handed to the algorithm; default `TracerTraceToTriplet`.
        tracer: an `OtelTracer` (spec) the worker processes trace agents with (forked: the object;
            started by name: its `module:attr`); default their `AgentOpsTracer()`. Kept as `trainer.tracer`.
        runner: a `LitAgentRunner` (spec); its `max_rollouts` and `tracer` apply to the workers.
        strategy: `"shm"`, `"cs"`, an `ExecutionStrategy` or a dict; see `strategy.py` for the mapping.
        port: Agent-Lightning's store-server port; accepted, but the store here is Redis (no effect).
        initial_resources: resources handed to the algorithm (it decides how to publish them).
        n_runners / n_workers: local worker processes (two names of one setting); 0 means external
            `lq worker` pools do the work.
        max_rollouts: each worker process exits after claiming this many rollouts.
        hooks: `Hook` instances (or `module:attr` names) the workers run around each rollout.
        keep: keep the namespace the Trainer created for itself (default: purge it at the end).
        worker_start: `"import"` starts `python -m workers`, which imports the agent and hooks by
            `module:attr`; `"fork"` forks the Trainer's process, handing them over as objects, so
            agents and hooks defined in `__main__` or built inline work. Default: `"import"` when
            all of them have a `module:attr`, else `"fork"` (where the platform can fork).
        worker_settings: the local workers' `WorkerSettings` (agent and namespace are filled in); the
            keywords below override single fields, and default to it (else to `WorkerSettings`' defaults).
        worker_concurrency: rollouts in flight per worker process (`concurrency`).
        lease_seconds: lease of claimed rollouts (the workers and the store use the same value).
        worker_log_level: log level of the worker processes (`log_level`).
        worker_max_rollouts_per_process: recycle each worker process after it claimed this many rollouts.
        worker_max_memory_mb: recycle a worker process whose RSS is above this many MB after a rollout.
        stop_timeout: seconds the worker processes get to finish in-flight rollouts at the end (`grace_seconds`).
    """

    def __init__(
        self,
        *,
        algorithm: Any = None,
        store: Any = None,
        llm_proxy: Any = None,
        adapter: Any = None,
        tracer: Any = None,
        runner: Any = None,
        strategy: Any = None,
        port: int | None = None,
        initial_resources: NamedResources | None = None,
        n_runners: int | None = None,
        n_workers: int | None = None,
        max_rollouts: int | None = None,
        hooks: Hook | str | Sequence[Hook | str] | None = None,
        keep: bool = False,
        worker_start: WorkerStart | None = None,
        worker_settings: WorkerSettings | None = None,
        worker_concurrency: int | None = None,
        lease_seconds: float | None = None,
        worker_log_level: str | None = None,
        worker_max_rollouts_per_process: int | None = None,
        worker_max_memory_mb: int | None = None,
        stop_timeout: float | None = None,
    ) -> None:
        runners = _resolve_n_runners(n_runners, n_workers)
        self.port = port
        self.strategy: ExecutionStrategy = resolve_strategy(strategy, n_runners=runners, port=port)
        if self.strategy.n_runners != runners and (n_runners is not None or n_workers is not None):
            logger.warning(
                "strategy %r runs %d runners; n_runners=%d is overridden by it (as in Agent-Lightning)",
                self.strategy,
                self.strategy.n_runners,
                runners,
            )
        if port is not None:
            logger.warning("port=%r has no effect: the store's server is Redis (set --redis-url / LQ_REDIS_URL)", port)
        for name, value in self.strategy.ignored.items():
            if value is not None and name != "server_port":
                logger.debug("strategy keyword %s=%r has no counterpart here; ignored", name, value)
        self.tracer = self._make_tracer(tracer)
        self.runner = self._make_runner(runner)
        if max_rollouts is None:
            max_rollouts = _runner_setting(self.runner, "max_rollouts")
        if self.tracer is None:
            self.tracer = _runner_setting(self.runner, "tracer")
        overrides = self.strategy.worker_overrides
        given = {
            "concurrency": worker_concurrency,
            "lease_seconds": lease_seconds,
            "log_level": worker_log_level,
            "max_rollouts": max_rollouts,
            "max_rollouts_per_process": worker_max_rollouts_per_process,
            "max_memory_mb": worker_max_memory_mb,
            "grace_seconds": stop_timeout if stop_timeout is not None else overrides.get("grace_seconds"),
        }
        settings = worker_settings or WorkerSettings()
        try:
            settings = WorkerSettings.model_validate(
                {**settings.model_dump(), **{k: v for k, v in given.items() if v is not None}}
            )
        except ValidationError as exc:
            raise ValueError(_keyword_names(describe(exc))) from None
        if worker_start not in (None, "fork", "import"):
            raise ValueError(f"worker_start must be 'fork' or 'import', got {worker_start!r}")
        self.worker_start: WorkerStart | None = worker_start
        self.hooks: tuple[Hook | str, ...] = (*settings.hooks, *_normalize_hooks(hooks))
        self.worker_settings = settings.model_copy(update={"hooks": ()})
        self.algorithm: Algorithm | None = build_component(algorithm, spec_name="algorithm", expected=Algorithm)
        self._owns_store = store is None
        self.keep = keep
        self.store: LightningStore = build_component(
            store,
            spec_name="store",
            expected=LightningStore,
            default=lambda: RedisLightningStore(namespace=fresh_namespace(), lease_seconds=settings.lease_seconds),
        )
        self.adapter: TraceAdapter[Any] = self._make_adapter(adapter)
        self.llm_proxy: LLMProxy | None = build_component(
            llm_proxy, spec_name="llm_proxy", expected=LLMProxy, optional_defaults={"store": lambda: self.store}
        )
        self.initial_resources = initial_resources
        self.n_runners = 0 if self.strategy.role == "algorithm" else self.strategy.n_runners
        self.max_rollouts = settings.max_rollouts
        self.worker_concurrency = settings.concurrency
        self.lease_seconds = settings.lease_seconds
        self.worker_log_level = settings.log_level
        self.worker_max_rollouts_per_process = settings.max_rollouts_per_process
        self.worker_max_memory_mb = settings.max_memory_mb
        self.stop_timeout = settings.grace_seconds
        # How long each shutdown step (SIGINT, SIGTERM, SIGKILL) waits; a strategy's timeout may set it.
        self._step_seconds = float(overrides.get("stop_timeout", settings.grace_seconds))
        self.pool: WorkerPool | None = None
        self._pool_thread: threading.Thread | None = None
        self._pool_error: BaseException | None = None
        self._pool_code: int | None = None
        self._pool_done: asyncio.Event | None = None

    @property
    def n_workers(self) -> int:
        """The older name of `n_runners`."""
        return self.n_runners

    # --- components ---------------------------------------------------------------------------------
    def _make_tracer(self, tracer: Any) -> Any:
        base = _optional_class(TRACER_BASE)
        return build_component(tracer, spec_name="tracer", expected=base)

    def _make_runner(self, runner: Any) -> Any:
        base = _optional_class(RUNNER_BASE)
        built = build_component(runner, spec_name="runner", expected=base)
        if built is not None and type(built).__name__ != "LitAgentRunner":
            # The worker processes are the runners here; a custom Runner's own loop would never run.
            raise ValueError(
                f"runner {type(built).__qualname__}: only LitAgentRunner (its max_rollouts and tracer) is supported; "
                "lightning-queue's worker processes run the agent, so a custom Runner's code would not run"
            )
        return built

    def _make_adapter(self, adapter: Any) -> TraceAdapter[Any]:
        from ..adapter import TraceAdapter

        default_cls = _optional_class(DEFAULT_ADAPTER)
        if default_cls is None:
            logger.debug("%s is not available; the default adapter is %s", DEFAULT_ADAPTER, FALLBACK_ADAPTER)
            default_cls = load_symbol(FALLBACK_ADAPTER, "adapter")
        result: TraceAdapter[Any] = build_component(
            adapter, spec_name="adapter", expected=TraceAdapter, default=default_cls, dict_default=default_cls
        )
        return result

    # --- entry points -------------------------------------------------------------------------------
    def fit(self, agent: Any, train_dataset: Any = None, *, val_dataset: Any = None) -> Any:
        """Run the algorithm to completion with workers executing `agent`; returns what `run` returned."""
        if self.algorithm is None and self.strategy.role != "runner":
            raise ValueError("Trainer.fit needs an algorithm; use Trainer.dev(...) to just run the agent")
        return asyncio.run(self.fit_async(agent, train_dataset, val_dataset=val_dataset))

    def dev(self, agent: Any, train_dataset: Any = None, *, val_dataset: Any = None) -> Any:
        """Run each task once through the workers (the `Baseline` algorithm unless one was given)."""
        from ..algorithm.baseline import Baseline

        if self.algorithm is None:
            self.algorithm = Baseline()
        return self.fit(agent, train_dataset, val_dataset=val_dataset)

    async def fit_async(self, agent: Any, train_dataset: Any = None, *, val_dataset: Any = None) -> Any:
        algorithm = self.algorithm
        runner_only = self.strategy.role == "runner"
        if algorithm is None and not runner_only:
            raise ValueError("Trainer.fit_async needs an algorithm")
        # Every check that can fail does so here, before anything starts (no half-started pool).
        launcher, agent_path, hook_paths, tracer_path = self._plan_workers(agent)
        if algorithm is not None:
            self._wire(algorithm, agent)
        try:
            if self.n_runners:
                self._start_workers(launcher, agent_path, hook_paths, tracer_path)
            if runner_only or algorithm is None:
                await self._wait_for_pool()
                return None
            return await self._run_algorithm(algorithm, train_dataset, val_dataset)
        finally:
            await asyncio.to_thread(self.stop_workers)
            await self._clean_up_store()

    # --- running ------------------------------------------------------------------------------------
    async def _run_algorithm(self, algorithm: Algorithm, train_dataset: Any, val_dataset: Any) -> Any:
        """The algorithm's result; fails fast (instead of waiting forever) if the worker pool breaks."""
        loop = asyncio.get_running_loop()
        if algorithm.is_async():
            run: asyncio.Future[Any] = asyncio.ensure_future(
                algorithm.run(train_dataset=train_dataset, val_dataset=val_dataset)
            )
        else:
            # A synchronous run blocks: give it a daemon thread, so a broken pool can end fit without it.
            run = loop.create_future()

            def settle(result: Any, error: BaseException | None) -> None:
                if run.done():
                    return
                if error is not None:
                    run.set_exception(error)
                else:
                    run.set_result(result)

            def call() -> None:
                try:
                    result = algorithm.run(train_dataset=train_dataset, val_dataset=val_dataset)
                except BaseException as exc:  # handed to the awaiting loop, which raises it
                    loop.call_soon_threadsafe(settle, None, exc)
                else:
                    loop.call_soon_threadsafe(settle, result, None)

            threading.Thread(target=call, name="lq-algorithm", daemon=True).start()
        watcher = asyncio.ensure_future(self._watch_pool())
        try:
            done, _ = await asyncio.wait({run, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if run not in done:
                run.cancel()
                watcher.result()  # raises the pool's failure
            return run.result()
        finally:
            watcher.cancel()
            if not run.done():
                run.cancel()
                if algorithm.is_async():
                    # Let the cancelled run unwind (its store waits clean up) before this loop ends.
                    await asyncio.wait({run}, timeout=self._step_seconds)

    async def _watch_pool(self) -> None:
        """Return never while the pool is healthy; raise once it ended with an error."""
        if self._pool_done is None:
            await asyncio.Event().wait()  # no local pool: nothing to watch
            return
        await self._pool_done.wait()
        self._raise_pool_failure()
        logger.warning("every local worker process finished (max_rollouts); the algorithm runs on")
        await asyncio.Event().wait()

    async def _wait_for_pool(self) -> None:
        if self._pool_done is not None:
            await self._pool_done.wait()
        self._raise_pool_failure()

    def _raise_pool_failure(self) -> None:
        if self._pool_error is not None:
            raise RuntimeError(f"the worker pool crashed: {self._pool_error!r}") from self._pool_error
        if self._pool_code:
            raise RuntimeError(
                f"the worker processes stopped with exit code {self._pool_code} (their configuration cannot "
                "work; see their log above)"
            )

    async def _clean_up_store(self) -> None:
        if not self._owns_store or not isinstance(self.store, RedisLightningStore):
            return
        try:
            if not self.keep:
                deleted = await self.store.purge()
                logger.info("purged the Trainer's namespace %r (%d keys)", self.store.namespace, deleted)
        finally:
            # The client belongs to this fit's event loop, which ends with it.
            await self.store.aclose()

    # --- wiring -------------------------------------------------------------------------------------
    def _wire(self, algorithm: Algorithm, agent: Any) -> None:
        algorithm.set_trainer(self)
        algorithm.set_store(self.store)
        algorithm.set_adapter(self.adapter)
        if self.initial_resources is not None:
            algorithm.set_initial_resources(self.initial_resources)
        if self.llm_proxy is not None:
            self.llm_proxy.set_store(self.store)
            algorithm.set_llm_proxy(self.llm_proxy)
        if hasattr(agent, "set_trainer") and not isinstance(agent, str):
            agent.set_trainer(self)

    def _plan_workers(self, agent: Any) -> tuple[Launcher | None, str, tuple[str, ...], str]:
        """How the worker processes get the agent, hooks and tracer: by fork (objects) or by `module:attr`."""
        from workers.inline import InlineLauncher, can_fork
        from workers.loader import load_agent, load_hook, load_tracer

        if not self.n_runners:
            objects = [h for h in self.hooks if isinstance(h, Hook)]
            if objects:
                raise ValueError(
                    f"hooks {objects!r} cannot reach the worker processes: this Trainer starts none "
                    "(n_runners=0 or role='algorithm'), and external `lq worker` pools take hooks by name "
                    "(lq worker --hook module:attr)"
                )
            return None, "", (), ""
        if self.tracer is not None and not isinstance(self.tracer, OtelTracer):
            raise ValueError(
                f"tracer {self.tracer!r} cannot trace the workers' agents: they run under an OtelTracer "
                "(AgentOpsTracer by default); give one of those, or a subclass"
            )
        if not isinstance(self.store, RedisLightningStore) or self.store.url is None:
            raise ValueError(
                f"worker processes need a RedisLightningStore with a Redis URL, not {self.store!r}; "
                "give such a store or use n_runners=0 with your own runners"
            )
        start = self.worker_start or self._default_start(agent, can_fork())
        if start == "fork":
            agent_obj = load_agent(agent) if isinstance(agent, str) else self._as_agent(agent)
            hooks = [load_hook(h) if isinstance(h, str) else h for h in self.hooks]
            label = agent if isinstance(agent, str) else f"{type(agent).__module__}:{type(agent).__qualname__}"
            return InlineLauncher(agent_obj, hooks, self.tracer), label, (), ""
        agent_path = agent_import_path(agent)
        hook_paths = tuple(import_path(h, "hook") for h in self.hooks)
        tracer_path = import_path(self.tracer, "tracer") if self.tracer is not None else ""
        # Fail here, with the loader's clear message, not in every child.
        load_agent(agent_path)
        for path in hook_paths:
            load_hook(path)
        if tracer_path:
            load_tracer(tracer_path)
        return None, agent_path, hook_paths, tracer_path

    def _default_start(self, agent: Any, forkable: bool) -> WorkerStart:
        """`import` when the agent, every hook and the tracer have a `module:attr` (as `lq worker`), else fork."""
        try:
            import_path(agent, "agent")
            for hook in self.hooks:
                import_path(hook, "hook")
            if self.tracer is not None:
                import_path(self.tracer, "tracer")
        except ValueError:
            return "fork" if forkable else "import"  # without fork, import_path's error says what to do
        return "import"

    @staticmethod
    def _as_agent(agent: Any) -> Any:
        from lightning_queue.litagent import LitAgent

        if isinstance(agent, LitAgent):
            return agent
        if inspect.isclass(agent) and issubclass(agent, LitAgent):
            return agent()
        raise ValueError(
            f"agent {agent!r} is a {type(agent).__name__}, not an agent: pass a LitAgent, a function decorated "
            "with @rollout, or 'module:attr'"
        )

    def _start_workers(
        self, launcher: Launcher | None, agent_path: str, hook_paths: tuple[str, ...], tracer_path: str
    ) -> None:
        from workers.pool import WorkerPool, exec_worker

        if not isinstance(self.store, RedisLightningStore):
            raise ValueError(f"worker processes need a RedisLightningStore, not {self.store!r}")
        url = self.store.url
        settings = self.worker_settings.model_copy(
            update={"agent": agent_path, "hooks": hook_paths, "tracer": tracer_path, "namespace": self.store.namespace}
        )
        self.pool = pool = WorkerPool(
            settings,
            self.n_runners,
            redis_url=url,
            stop_timeout=self._step_seconds,
            launcher=launcher or exec_worker,
        )
        self._pool_error, self._pool_code = None, None
        loop, self._pool_done = asyncio.get_running_loop(), asyncio.Event()
        done = self._pool_done

        def supervise() -> None:
            try:
                self._pool_code = pool.run()
            except BaseException as exc:  # kept for fit to raise: a thread's exception would be lost
                self._pool_error = exc
                logger.exception("the worker pool crashed")
            finally:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(done.set)

        self._pool_thread = threading.Thread(target=supervise, name="lq-worker-pool", daemon=True)
        self._pool_thread.start()
        how = "forked with the agent object" if launcher is not None else "importing it by name"
        logger.info("started %d worker processes for %s (%s)", self.n_runners, agent_path, how)

    def stop_workers(self) -> None:
        """Ask the worker processes to finish in-flight rollouts and wait until they are gone."""
        pool, thread = self.pool, self._pool_thread
        if pool is None or thread is None:
            return
        pool.request_stop("the algorithm finished")
        # The pool escalates SIGINT -> SIGTERM -> SIGKILL on its own; this join only bounds the wait.
        thread.join(timeout=self.stop_timeout + self._step_seconds * 3 + 30)
        if thread.is_alive():
            logger.error("worker pool did not stop in time; killing its processes")
            pool.request_stop("hurry")
            pool.request_stop("kill")
            thread.join(timeout=10)
        self.pool, self._pool_thread, self._pool_done = None, None, None

    def worker_pids(self) -> list[int]:
        return self.pool.pids() if self.pool is not None else []
