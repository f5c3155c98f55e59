"""Trainer keywords and component specs as Agent-Lightning v0.3 scripts write them (no Redis needed)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from lightning_queue import LLMProxy, RedisLightningStore, TraceAdapter, TraceToMessages
from lightning_queue.algorithm import Algorithm, algo
from lightning_queue.algorithm.baseline import Baseline
from lightning_queue.litagent import Hook
from lightning_queue.litagent import LitAgent as LitAgentBase
from lightning_queue.trainer import (
    ClientServerExecutionStrategy,
    SharedMemoryExecutionStrategy,
    Trainer,
    build_component,
    own_path,
)
from lightning_queue.trainer.trainer import (
    CONCRETE_TRACER,
    DEFAULT_ADAPTER,
    FALLBACK_ADAPTER,
    RUNNER_BASE,
    _optional_class,
)
from workers.settings import WorkerSettings

# Stand-ins for the tracer and runner classes of packages that may not exist yet: subclasses of the
# real base once it does, so these tests keep meaning the same after the merge.
_TracerBase: Any = _optional_class(CONCRETE_TRACER) or object
_RunnerBase: Any = _optional_class(RUNNER_BASE) or object


class FakeTracer(_TracerBase):  # type: ignore[misc]
    def __init__(self, level: int = 0) -> None:
        super().__init__()
        self.level = level


class LitAgentRunner(_RunnerBase):  # type: ignore[misc]
    """Named as Agent-Lightning's runner, which keeps them private: the Trainer reads its max_rollouts and tracer."""

    def __init__(self, tracer: Any = None, max_rollouts: int | None = None) -> None:
        super().__init__()
        self._tracer = tracer
        self._max_rollouts = max_rollouts


class MyRunner(_RunnerBase):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()


# --- n_runners / n_workers / max_rollouts -------------------------------------------------------------
def test_n_runners_is_n_workers() -> None:
    assert Trainer(n_runners=3).n_runners == 3
    assert Trainer(n_workers=3).n_runners == 3
    assert Trainer(n_runners=2, n_workers=2).n_workers == 2
    assert Trainer().n_runners == 1


def test_n_runners_and_n_workers_that_disagree_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"n_runners=2 and n_workers=3 disagree"):
        Trainer(n_runners=2, n_workers=3)
    with pytest.raises(ValueError, match=r"n_runners must be a whole number >= 0, got -1"):
        Trainer(n_runners=-1)


def test_max_rollouts_sets_each_worker_process_limit() -> None:
    trainer = Trainer(max_rollouts=5)
    assert trainer.max_rollouts == 5 and trainer.worker_settings.max_rollouts == 5
    with pytest.raises(ValueError, match="max_rollouts"):
        Trainer(max_rollouts=0)
    with pytest.raises(ValueError, match="cannot be combined"):
        Trainer(max_rollouts=2, worker_max_rollouts_per_process=1)


# --- component specs ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        Baseline(n_epochs=2),
        {"type": "agentlightning.algorithm.baseline.Baseline", "n_epochs": 2},
        {"type": "lightning_queue.algorithm.baseline:Baseline", "n_epochs": 2},
        {"type": Baseline, "n_epochs": 2},
        lambda: Baseline(n_epochs=2),
    ],
    ids=["instance", "agentlightning-dict", "own-dict", "class-in-dict", "factory"],
)
def test_algorithm_specs_with_keywords(spec: Any) -> None:
    algorithm = Trainer(algorithm=spec).algorithm
    assert isinstance(algorithm, Baseline) and algorithm.n_epochs == 2


@pytest.mark.parametrize(
    "spec", [Baseline, "agentlightning.algorithm.baseline.Baseline", "lightning_queue.algorithm.baseline:Baseline"]
)
def test_algorithm_class_and_import_string_specs(spec: Any) -> None:
    assert isinstance(Trainer(algorithm=spec).algorithm, Baseline)


def test_an_algo_function_named_by_import_string_is_used_as_is() -> None:
    assert Trainer(algorithm=f"{__name__}:enqueue_nothing").algorithm is enqueue_nothing


@algo
async def enqueue_nothing(train_dataset: Any = None) -> None:
    return None


def test_agentlightning_prefix_reads_as_lightning_queue() -> None:
    assert own_path("agentlightning.LLMProxy") == "lightning_queue.LLMProxy"
    assert own_path("agentlightning") == "lightning_queue"
    assert own_path("agentlightningx.Y") == "agentlightningx.Y"
    assert own_path("mypkg.Thing") == "mypkg.Thing"
    assert build_component("agentlightning.LLMProxy", spec_name="llm_proxy", expected=LLMProxy).port is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (42, r"algorithm 42 is a int; expected a Algorithm"),
        ("nowhere_pkg.Algo", r"algorithm nowhere_pkg.Algo: cannot import 'nowhere_pkg'"),
        (
            "agentlightning.NoSuchAlgorithm",
            r"read as 'lightning_queue.NoSuchAlgorithm'.*no attribute 'NoSuchAlgorithm'",
        ),
        ("Baseline", r"algorithm 'Baseline' is not an import path"),
        ({"n_epochs": 2}, r"algorithm dict \{'n_epochs': 2\} needs a 'type' key"),
        ({"type": "lightning_queue.LLMProxy"}, r"gave a LLMProxy, not a Algorithm"),
        (LLMProxy, r"algorithm class LLMProxy is not a Algorithm"),
        ({"type": "agentlightning.algorithm.baseline.Baseline", "bogus": 1}, r"Baseline\(\*\*\['bogus'\]\) failed"),
    ],
)
def test_bad_algorithm_specs_name_what_is_wrong(spec: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Trainer(algorithm=spec)


def test_default_adapter_is_tracer_trace_to_triplet_when_available() -> None:
    expected = _optional_class(DEFAULT_ADAPTER) or _optional_class(FALLBACK_ADAPTER)
    assert expected is not None
    assert type(Trainer().adapter) is expected


def test_default_adapter_falls_back_while_tracer_trace_to_triplet_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lightning_queue.trainer.trainer.DEFAULT_ADAPTER", "lightning_queue.adapter.NotPortedYet")
    assert type(Trainer().adapter).__name__ == "LlmProxyTraceToTriplet"


@pytest.mark.parametrize(
    "spec",
    [
        TraceToMessages(),
        TraceToMessages,
        "agentlightning.TraceToMessages",
        {"type": "agentlightning.adapter.TraceToMessages"},
    ],
)
def test_adapter_specs(spec: Any) -> None:
    assert isinstance(Trainer(adapter=spec).adapter, TraceToMessages)


def test_adapter_dict_without_type_builds_the_default_adapter() -> None:
    adapter = Trainer(adapter={}).adapter
    assert isinstance(adapter, TraceAdapter) and type(adapter) is type(Trainer().adapter)


def test_llm_proxy_dict_gets_the_trainer_store() -> None:
    trainer = Trainer(llm_proxy={"type": "agentlightning.LLMProxy", "model_list": []})
    assert isinstance(trainer.llm_proxy, LLMProxy)
    assert trainer.llm_proxy.store is trainer.store


def test_store_specs_and_who_owns_the_namespace() -> None:
    given = RedisLightningStore("redis://127.0.0.1:1/0", namespace="mine")
    assert Trainer(store=given).store is given and not Trainer(store=given)._owns_store
    built = Trainer(
        store={"type": "agentlightning.RedisLightningStore", "url": "redis://127.0.0.1:1/0", "namespace": "n1"}
    )
    assert isinstance(built.store, RedisLightningStore) and built.store.namespace == "n1" and not built._owns_store
    fresh = Trainer()
    assert fresh._owns_store and fresh.store.namespace.startswith("run-")  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"store 'not a store' is not an import path|store 'not a store'"):
        Trainer(store="not a store")


def test_tracer_specs() -> None:
    tracer = FakeTracer()
    assert Trainer(tracer=tracer).tracer is tracer
    assert Trainer(tracer=FakeTracer).tracer.level == 0
    assert Trainer(tracer={"type": f"{__name__}:FakeTracer", "level": 3}).tracer.level == 3
    assert Trainer(tracer=f"{__name__}.FakeTracer").tracer.level == 0
    assert Trainer().tracer is None


def test_runner_lit_agent_runner_sets_max_rollouts_and_tracer() -> None:
    tracer = FakeTracer()
    trainer = Trainer(runner=LitAgentRunner(tracer=tracer, max_rollouts=3))
    assert trainer.max_rollouts == 3 and trainer.tracer is tracer
    assert Trainer(runner={"type": f"{__name__}:LitAgentRunner", "max_rollouts": 4}).max_rollouts == 4
    assert Trainer(runner=LitAgentRunner(max_rollouts=3), max_rollouts=1).max_rollouts == 1


def test_a_custom_runner_is_refused() -> None:
    with pytest.raises(ValueError, match=r"only LitAgentRunner .* is supported"):
        Trainer(runner=MyRunner())


# --- strategies ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("shm", SharedMemoryExecutionStrategy),
        ("cs", ClientServerExecutionStrategy),
        (None, ClientServerExecutionStrategy),
        ("agentlightning.execution.shared_memory.SharedMemoryExecutionStrategy", SharedMemoryExecutionStrategy),
        ("agentlightning.ClientServerExecutionStrategy", ClientServerExecutionStrategy),
        ({"type": "shm"}, SharedMemoryExecutionStrategy),
        ({"name": "cs"}, ClientServerExecutionStrategy),
        (SharedMemoryExecutionStrategy, SharedMemoryExecutionStrategy),
    ],
)
def test_strategy_names_map_to_local_worker_processes(spec: Any, kind: type[Any]) -> None:
    trainer = Trainer(strategy=spec, n_runners=2)
    assert isinstance(trainer.strategy, kind)
    assert trainer.n_runners == 2  # the trainer's n_runners is the strategy's default


def test_a_strategy_instance_decides_n_runners_as_in_agent_lightning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lightning_queue.trainer.trainer"):
        trainer = Trainer(strategy=SharedMemoryExecutionStrategy(n_runners=3), n_runners=2)
    assert trainer.n_runners == 3
    assert "overridden" in caplog.text
    assert Trainer(strategy={"type": "shm", "n_runners": 4}).n_runners == 4


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ipc", r"unknown strategy 'ipc'"),
        ({"type": "threads"}, r"unknown strategy 'threads'"),
        ({"n_runners": 2}, r"needs a 'type'"),
        (object(), r"strategy <object object .*> is a object"),
        ({"type": "cs", "role": "boss"}, r"role must be 'algorithm', 'runner' or 'both', got 'boss'"),
        ({"type": "shm", "main_thread": "gpu"}, r"main_thread must be 'algorithm' or 'runner', got 'gpu'"),
        ({"type": "shm", "n_runners": -2}, r"n_runners must be a whole number >= 0, got -2"),
        ({"type": "cs", "graceful_timeout": -1}, r"graceful_timeout must be a number of seconds >= 0, got -1"),
    ],
)
def test_unknown_or_bad_strategies_are_named(spec: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Trainer(strategy=spec)


def test_strategy_timeouts_map_to_worker_shutdown() -> None:
    cs = Trainer(strategy={"type": "cs", "graceful_timeout": 3, "terminate_timeout": 2})
    assert cs.worker_settings.grace_seconds == 3.0 and cs.stop_timeout == 3.0 and cs._step_seconds == 2.0
    shm = Trainer(strategy=SharedMemoryExecutionStrategy(graceful_delay=1.5, join_timeout=4))
    assert shm.stop_timeout == 1.5 and shm._step_seconds == 4.0
    # An explicit stop_timeout wins over the strategy's.
    assert Trainer(strategy={"type": "cs", "graceful_timeout": 3}, stop_timeout=7).stop_timeout == 7.0


def test_role_algorithm_runs_no_local_runners() -> None:
    assert Trainer(strategy={"type": "cs", "role": "algorithm", "n_runners": 4}).n_runners == 0


def test_port_is_accepted_and_said_to_have_no_effect(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lightning_queue.trainer.trainer"):
        trainer = Trainer(port=4747)
    assert trainer.port == 4747
    assert isinstance(trainer.strategy, ClientServerExecutionStrategy) and trainer.strategy.server_port == 4747
    assert "port=4747 has no effect" in caplog.text


# --- hooks --------------------------------------------------------------------------------------------
class CountingHook(Hook):
    pass


def test_hooks_take_one_instance_or_a_sequence() -> None:
    one = CountingHook()
    assert Trainer(hooks=one).hooks == (one,)
    assert Trainer(hooks=[one, "pkg.mod:hook"]).hooks == (one, "pkg.mod:hook")
    assert Trainer(hooks=[one], worker_settings=WorkerSettings(hooks=("a.b:c",))).hooks == ("a.b:c", one)


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        ([CountingHook], r"CountingHook is a Hook class; pass an instance"),
        ([42], r"hooks: 42 is a int, not a Hook instance"),
    ],
)
def test_bad_hooks_are_named(hooks: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Trainer(hooks=hooks)


def test_a_hook_instance_with_no_local_workers_is_an_error_at_fit() -> None:
    trainer = Trainer(algorithm=enqueue_nothing, n_runners=0, hooks=[CountingHook()])
    with pytest.raises(ValueError, match=r"cannot reach the worker processes: this Trainer starts none"):
        trainer.fit(None, [1])


def test_an_inline_hook_cannot_be_imported_by_name_workers() -> None:
    class LocalHook(Hook):
        pass

    trainer = Trainer(algorithm=enqueue_nothing, hooks=[LocalHook()], worker_start="import")
    with pytest.raises(ValueError, match=r"hook .*LocalHook.* is not a module-level name"):
        trainer.fit("workers.examples:echo", [1])
    assert trainer.pool is None


def test_local_workers_need_a_store_with_a_redis_url() -> None:
    import fakeredis

    store = RedisLightningStore(client_factory=fakeredis.FakeAsyncRedis, namespace="no-url")
    trainer = Trainer(algorithm=enqueue_nothing, store=store)
    with pytest.raises(ValueError, match=r"worker processes need a RedisLightningStore with a Redis URL"):
        trainer.fit("workers.examples:echo", [1])
    assert trainer.pool is None


def test_worker_start_is_checked() -> None:
    with pytest.raises(ValueError, match=r"worker_start must be 'fork' or 'import', got 'spawn'"):
        Trainer(worker_start="spawn")  # type: ignore[arg-type]


def test_an_algorithm_is_still_an_algorithm_instance() -> None:
    assert isinstance(Trainer(algorithm=Baseline()).algorithm, Algorithm)


# --- how worker processes get the agent -----------------------------------------------------------------
module_hook = CountingHook()


def test_importable_agents_and_hooks_are_imported_by_name_others_are_forked() -> None:
    from workers.examples import echo
    from workers.inline import InlineLauncher

    launcher, agent_path, hook_paths, _ = Trainer(hooks=[module_hook])._plan_workers(echo)
    assert launcher is None and agent_path == "workers.examples:echo"
    assert hook_paths == (f"{__name__}:module_hook",)

    launcher, _, hook_paths, _ = Trainer(hooks=[CountingHook()])._plan_workers(echo)
    assert isinstance(launcher, InlineLauncher) and hook_paths == ()
    assert launcher.agent is echo and isinstance(launcher.hooks[0], CountingHook)

    class Inline(LitAgentBase[Any]):
        pass

    launcher, _, _, _ = Trainer()._plan_workers(Inline)
    assert isinstance(launcher, InlineLauncher) and isinstance(launcher.agent, Inline)


def test_an_object_that_is_not_an_agent_is_refused_before_any_worker_starts() -> None:
    def plain(task: Any) -> float:
        return 1.0

    trainer = Trainer()
    with pytest.raises(ValueError, match=r"agent <function .*plain.*> is a function, not an agent"):
        trainer._plan_workers(plain)
    assert trainer.pool is None
