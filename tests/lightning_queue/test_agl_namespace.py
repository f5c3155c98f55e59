"""`import lightning_queue as agl` and `from lightning_queue.X import Y` give the names Agent-Lightning v0.3's
examples use (shared/reference/agl-v03-names.md; the tracer, emitter and Trainer-keyword rows are tested
with those features)."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

import lightning_queue as agl

TOP_LEVEL = [
    "rollout",
    "llm_rollout",
    "prompt_rollout",
    "LitAgent",
    "Hook",
    "RolloutRawResult",
    "setup_logging",
    "setup_module_logging",
    "configure_logger",
    "Dataset",
    "TaskInput",
    "RolloutMode",
    "RolloutStatus",
    "ResourceUnion",
    "Baseline",
    "TraceToTripletBase",
    "TracerTraceToTriplet",
    "LlmProxyTraceToTriplet",
    "TraceToMessages",
    "LitAgentRunner",
    "InMemoryLightningStore",
    "LightningStore",
    "Trainer",
    "APO",
    "VERL",
    "LLMProxy",
    "ModelConfig",
    "Algorithm",
    "algo",
    "with_store",
    "with_llm_proxy",
    "emit_reward",
    "find_final_reward",
    "find_reward_spans",
    "get_reward_value",
    "get_rewards_from_span",
    "is_reward_span",
    "AGL_OPERATION",
    "LightningSpanAttributes",
    "PromptTemplate",
    "LLM",
    "ProxyLLM",
    "NamedResources",
    "Rollout",
    "AttemptedRollout",
    "Span",
    "SpanCoreFields",
    "Triplet",
    "reward",
    "LightningStoreThreaded",
    "LightningStoreServer",
    "ExecutionStrategy",
    "SharedMemoryExecutionStrategy",
    "ClientServerExecutionStrategy",
    "LightningEnvVar",
    "resolve_bool_env_var",
    "resolve_int_env_var",
    "resolve_str_env_var",
]

SUBMODULE_NAMES = [
    ("litagent", "LitAgent"),
    ("litagent", "rollout"),
    ("runner", "LitAgentRunner"),
    ("store", "InMemoryLightningStore"),
    ("store", "LightningStore"),
    ("types", "Dataset"),
    ("types", "Hook"),
    ("types", "PromptTemplate"),
    ("types", "Rollout"),
    ("types", "TaskInput"),
    ("llm_proxy", "ModelConfig"),
    ("semconv", "AGL_OPERATION"),
    ("semconv", "LightningSpanAttributes"),
    ("semconv", "LightningResourceAttributes"),
    ("utils.otel", "make_link_attributes"),
    ("utils.otel", "make_tag_attributes"),
    ("utils.otel", "flatten_attributes"),
    ("utils.otel", "filter_and_unflatten_attributes"),
    ("algorithm.apo", "APO"),
    ("algorithm.verl", "VERL"),
    ("adapter", "TracerTraceToTriplet"),
    ("adapter", "TraceToTripletBase"),
    ("reward", "reward"),
    ("emitter", "reward"),
    ("tracer.weave", "WeaveTracer"),
    ("store", "LightningStoreThreaded"),
    ("store", "LightningStoreServer"),
    ("store", "SqliteLightningStore"),
    ("store", "MongoLightningStore"),
    ("execution", "ExecutionStrategy"),
    ("execution", "SharedMemoryExecutionStrategy"),
    ("execution", "ClientServerExecutionStrategy"),
    ("env_var", "LightningEnvVar"),
    ("env_var", "resolve_int_env_var"),
    ("utils.metrics", "MetricsBackend"),
    ("utils.metrics", "ConsoleMetricsBackend"),
    ("utils.metrics", "PrometheusMetricsBackend"),
    ("utils.metrics", "MultiMetricsBackend"),
]


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_the_top_level_namespace_has_the_name(name: str) -> None:
    assert getattr(agl, name) is not None


def test_the_public_names_are_listed_in_all_and_exist() -> None:
    missing = [name for name in agl.__all__ if not hasattr(agl, name)]
    assert missing == []
    assert set(TOP_LEVEL) <= set(agl.__all__)


@pytest.mark.parametrize(("module", "name"), SUBMODULE_NAMES)
def test_the_submodule_path_imports_the_name(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(f"lightning_queue.{module}"), name)


def test_the_v03_names_are_the_same_objects_everywhere() -> None:
    from lightning_queue.litagent import Hook as AgentHook
    from lightning_queue.types import Hook as TypesHook

    assert AgentHook is TypesHook is agl.Hook
    assert agl.InMemoryLightningStore is importlib.import_module("lightning_queue.store").InMemoryLightningStore


def test_the_semconv_names_carry_the_v03_wire_strings() -> None:
    assert agl.AGL_OPERATION == "agentlightning.operation"
    assert agl.AGL_REWARD == "agentlightning.reward"
    assert agl.LightningSpanAttributes.REWARD.value == "agentlightning.reward"
    assert agl.LightningSpanAttributes.OPERATION_INPUT.value == "agentlightning.operation.input"
    assert agl.LightningResourceAttributes.ROLLOUT_ID.value == "agentlightning.rollout_id"


def test_a_list_is_a_dataset_and_model_config_is_a_litellm_entry() -> None:
    tasks: agl.Dataset[str] = ["a", "b"]
    assert len(tasks) == 2 and tasks[1] == "b"
    entry: agl.ModelConfig = {"model_name": "m", "litellm_params": {"model": "hosted_vllm/m", "api_base": "http://x"}}
    proxy = agl.LLMProxy(port=0, model_list=[entry])
    assert [m.name for m in proxy.model_list] == ["m"]


@pytest.mark.parametrize(
    ("algorithm", "instead"), [("APO", "algorithms.prompt_search"), ("VERL", "algorithms.reinforce")]
)
def test_unported_algorithms_import_and_say_what_to_use_when_built(algorithm: str, instead: str) -> None:
    cls: Any = getattr(importlib.import_module(f"lightning_queue.algorithm.{algorithm.lower()}"), algorithm)
    with pytest.raises(NotImplementedError, match=instead):
        cls(beam_width=2)
    assert inspect.isclass(cls)


def test_baseline_is_the_run_the_dataset_once_algorithm() -> None:
    assert issubclass(agl.Baseline, agl.Algorithm)
    with pytest.raises(ValueError, match="n_epochs"):
        agl.Baseline(n_epochs=0)
