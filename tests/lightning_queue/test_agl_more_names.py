"""The v0.3 names issue 13 left for last: `@reward`, `WeaveTracer`, the other stores, `LitAgent.set_trainer`,
`lightning_queue.execution` — each does what v0.3's does, or says what to use instead when called."""

from __future__ import annotations

import gc
import importlib
import threading
from typing import Any

import pytest

import lightning_queue as agl
from lightning_queue.litagent import LitAgent
from lightning_queue.reward import find_final_reward, reward
from lightning_queue.runner import LitAgentRunner
from lightning_queue.store import InMemoryLightningStore, LightningStore
from lightning_queue.types import NamedResources, Rollout, Span


@reward
def exact(answer: int) -> float:
    return 1.0 if answer == 4 else 0.0


@reward
async def exact_async(answer: int) -> float:
    return 1.0 if answer == 4 else 0.0


class Grades(LitAgent[dict[str, int]]):
    def rollout(self, task: dict[str, int], resources: NamedResources, rollout: Any) -> None:
        exact(task["answer"])  # returns None: the decorator alone records the reward


class GradesAsync(LitAgent[dict[str, int]]):
    async def rollout_async(self, task: dict[str, int], resources: NamedResources, rollout: Any) -> None:
        await exact_async(task["answer"])


async def step(agent: LitAgent[Any], store: LightningStore, task: Any) -> tuple[Rollout, list[Span]]:
    runner = LitAgentRunner[Any]()
    with runner.run_context(agent=agent, store=store):
        done = await runner.step(task)
    return done, list((await store.query_spans(done.rollout_id)).items)


@pytest.mark.parametrize("agent", [Grades(), GradesAsync()], ids=["sync", "async"])
async def test_a_reward_function_called_in_a_rollout_stores_its_reward(agent: LitAgent[Any]) -> None:
    store = InMemoryLightningStore()
    done, spans = await step(agent, store, {"answer": 4})
    assert done.status == "succeeded"
    assert find_final_reward(spans) == 1.0
    _, wrong = await step(agent, store, {"answer": 5})
    assert find_final_reward(wrong) == 0.0


async def test_outside_a_rollout_the_decorated_function_returns_its_value_and_keeps_its_name() -> None:
    assert exact(4) == 1.0 and exact(3) == 0.0
    assert await exact_async(4) == 1.0
    assert exact.__name__ == "exact" and exact_async.__name__ == "exact_async"
    assert agl.reward is reward


def test_a_reward_function_returning_a_non_number_is_a_clear_error_and_none_a_warning() -> None:
    @reward
    def text() -> Any:
        return "good"

    @reward
    def nothing() -> Any:
        return None

    with pytest.raises(TypeError, match=r"text must return a number, got str: 'good'"):
        text()

    @reward
    def solved() -> bool:
        return True

    with pytest.warns(UserWarning, match="nothing returned None"):
        assert nothing() is None
    assert solved() is True  # a bool is a 0/1 reward, as emit_reward accepts it


@pytest.mark.parametrize(
    ("module", "name", "instead"),
    [
        ("tracer.weave", "WeaveTracer", "use OtelTracer .* or AgentOpsTracer"),
        ("store", "SqliteLightningStore", "use RedisLightningStore .* InMemoryLightningStore"),
        ("store", "MongoLightningStore", "use RedisLightningStore .* InMemoryLightningStore"),
        ("store", "LightningStoreServer", "`lq store-server`"),
    ],
)
def test_names_with_no_counterpart_import_and_say_what_to_use_when_built(module: str, name: str, instead: str) -> None:
    cls: Any = getattr(importlib.import_module(f"lightning_queue.{module}"), name)
    with pytest.raises(NotImplementedError, match=f"Agent-Lightning's {name} is not available.*{instead}"):
        cls("path.db", host="127.0.0.1")


async def test_the_threaded_wrapper_is_the_store_itself_and_it_is_shared_by_threads() -> None:
    store = InMemoryLightningStore()
    assert agl.LightningStoreThreaded(store) is store
    with pytest.raises(TypeError, match="wraps a LightningStore, got dict"):
        agl.LightningStoreThreaded({})  # type: ignore[arg-type]

    import asyncio

    def enqueue() -> None:
        asyncio.run(store.enqueue_rollout(input={"n": 1}))

    threads = [threading.Thread(target=enqueue) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len((await store.query_rollouts()).items) == 4


class Plain(LitAgent[Any]):
    def rollout(self, task: Any, resources: NamedResources, rollout: Any) -> float:
        return 1.0


class NoSuperInit(LitAgent[Any]):
    def __init__(self) -> None:  # v0.3 examples sometimes skip super().__init__()
        self.prompt = "x"


def test_set_trainer_keeps_a_weak_back_reference_and_get_trainer_says_when_there_is_none() -> None:
    class FakeTrainer:
        pass

    agent = Plain()
    with pytest.raises(ValueError, match=r"Plain has no trainer: it is set by Trainer\.fit"):
        agent.get_trainer()
    trainer = FakeTrainer()
    agent.set_trainer(trainer)
    assert agent.get_trainer() is trainer and agent.trainer is trainer
    del trainer
    gc.collect()
    with pytest.raises(ValueError, match="no longer exists"):
        agent.get_trainer()
    with pytest.raises(ValueError, match="NoSuperInit has no runner"):
        NoSuperInit().get_runner()
    with pytest.raises(ValueError, match="NoSuperInit has no trainer"):
        NoSuperInit().get_trainer()


def test_the_trainer_sets_itself_on_the_agent_it_is_given() -> None:
    from lightning_queue.algorithm import Baseline

    agent = Plain()
    trainer = agl.Trainer(algorithm=Baseline(), n_runners=1)
    trainer._wire(trainer.algorithm, agent)  # what fit/dev do before starting workers
    assert agent.get_trainer() is trainer


def test_the_execution_path_gives_the_trainers_strategies() -> None:
    from lightning_queue import trainer

    execution = importlib.import_module("lightning_queue.execution")
    assert execution.SharedMemoryExecutionStrategy is trainer.SharedMemoryExecutionStrategy
    assert agl.ClientServerExecutionStrategy is trainer.ClientServerExecutionStrategy
    assert isinstance(agl.SharedMemoryExecutionStrategy(n_runners=2), agl.ExecutionStrategy)


def test_env_var_resolvers_prefer_the_override_then_the_variable_then_the_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = agl.LightningEnvVar.AGL_SERVER_PORT
    monkeypatch.delenv(port.value, raising=False)
    assert agl.resolve_int_env_var(port, fallback=4747) == 4747
    monkeypatch.setenv(port.value, "5000")
    assert agl.resolve_int_env_var(port, fallback=4747) == 5000
    assert agl.resolve_int_env_var(port, override=1, fallback=4747) == 1
    monkeypatch.setenv(port.value, "five")
    with pytest.raises(ValueError, match="AGL_SERVER_PORT='five' is not an integer"):
        agl.resolve_int_env_var(port)
    flag = agl.LightningEnvVar.AGL_MANAGED_STORE
    monkeypatch.setenv(flag.value, " Off ")
    assert agl.resolve_bool_env_var(flag, fallback=True) is False
    monkeypatch.setenv(flag.value, "maybe")
    with pytest.raises(ValueError, match="AGL_MANAGED_STORE='maybe' is not a boolean"):
        agl.resolve_bool_env_var(flag)
    monkeypatch.setenv(agl.LightningEnvVar.AGL_SERVER_HOST.value, "0.0.0.0")
    assert agl.resolve_str_env_var(agl.LightningEnvVar.AGL_SERVER_HOST, fallback="x") == "0.0.0.0"
    with pytest.raises(TypeError, match="LightningEnvVar member"):
        agl.resolve_str_env_var("AGL_SERVER_HOST")  # type: ignore[arg-type]


async def test_the_prometheus_metrics_backend_counts_and_observes_with_the_registered_labels() -> None:
    from prometheus_client import CollectorRegistry

    from lightning_queue.utils.metrics import PrometheusMetricsBackend

    registry = CollectorRegistry()
    metrics = PrometheusMetricsBackend(registry)
    metrics.register_counter("agent.calls", ["tool"])
    metrics.register_counter("agent.calls", ["tool"])  # the same registration again is harmless
    metrics.register_histogram("agent.latency", buckets=[0.1, 1.0])
    await metrics.inc_counter("agent.calls", labels={"tool": "search"})
    await metrics.inc_counter("agent.calls", 2, labels={"tool": "search"})
    await metrics.observe_histogram("agent.latency", 0.5)
    assert registry.get_sample_value("agent_calls_total", {"tool": "search"}) == 3.0
    assert registry.get_sample_value("agent_latency_bucket", {"le": "1.0"}) == 1.0
    assert registry.get_sample_value("agent_latency_bucket", {"le": "0.1"}) == 0.0
    with pytest.raises(ValueError, match=r"takes labels \['tool'\], got \['tol'\]"):
        await metrics.inc_counter("agent.calls", labels={"tol": "x"})
    with pytest.raises(ValueError, match=r"'agent\.latency' is a histogram, not a counter"):
        await metrics.inc_counter("agent.latency")
    with pytest.raises(ValueError, match="'nope' is not registered"):
        await metrics.observe_histogram("nope", 1.0)
    with pytest.raises(ValueError, match="already registered as a counter"):
        metrics.register_histogram("agent.calls", ["tool"])
    with pytest.raises(ValueError, match="amount must be a number >= 0"):
        await metrics.inc_counter("agent.calls", -1, labels={"tool": "x"})


async def test_the_console_backend_logs_rate_and_percentiles_grouped_by_label_prefix(
    caplog: pytest.LogCaptureFixture,
) -> None:

    from lightning_queue.utils.metrics import ConsoleMetricsBackend, MultiMetricsBackend, PrometheusMetricsBackend

    console = ConsoleMetricsBackend(window_seconds=100.0, log_interval_seconds=3600.0, group_level=1)
    metrics = MultiMetricsBackend(
        [console, PrometheusMetricsBackend(__import__("prometheus_client").CollectorRegistry())]
    )
    assert metrics.has_prometheus() and not console.has_prometheus()
    metrics.register_histogram("latency", ["method", "path"])
    metrics.register_counter("hits")
    with caplog.at_level("INFO", logger="lightning_queue.utils.metrics"):
        for value in range(1, 101):
            await metrics.observe_histogram("latency", float(value), labels={"method": "GET", "path": f"/{value % 2}"})
        await metrics.inc_counter("hits", 50)
    assert len(caplog.records) == 1  # the first event logs; the interval holds the rest back
    lines = console.snapshot()
    assert lines[0] == "hits rate=0.500/s"
    assert lines[1] == "latency{method=GET} rate=1.000/s p50=50 p95=95 p99=99"
    with pytest.raises(ValueError, match="needs at least one backend"):
        MultiMetricsBackend([])
    with pytest.raises(ValueError, match="window_seconds must be > 0"):
        ConsoleMetricsBackend(window_seconds=0)
