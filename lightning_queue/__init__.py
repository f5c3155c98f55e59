"""lightning-queue: a Redis rollout bus for training LLM agents with reinforcement learning."""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .adapter import (
    Adapter,
    LlmProxyTraceToTriplet,
    TraceAdapter,
    TracerTraceToTriplet,
    TraceToMessages,
    TraceToTripletBase,
)
from .algorithm import APO, VERL, Algorithm, Baseline, FunctionalAlgorithm, algo, with_llm_proxy, with_store
from .emitter import emit_annotation, emit_exception, emit_message, emit_object, operation
from .emitter import reward as _reward_decorator
from .env_var import LightningEnvVar, resolve_bool_env_var, resolve_int_env_var, resolve_str_env_var
from .litagent import FunctionalLitAgent, Hook, LitAgent, RolloutRawResult, llm_rollout, prompt_rollout, rollout
from .llm_proxy import LLMProxy, ModelConfig
from .logging import configure_logger, setup_logging, setup_module_logging
from .reward import (
    emit_reward,
    find_final_reward,
    find_reward_spans,
    get_reward_value,
    get_rewards_from_span,
    is_reward_span,
)
from .runner import LitAgentRunner
from .semconv import (
    AGL_ANNOTATION,
    AGL_EXCEPTION,
    AGL_MESSAGE,
    AGL_OBJECT,
    AGL_OPERATION,
    AGL_REWARD,
    AGL_VIRTUAL,
    LightningResourceAttributes,
    LightningSpanAttributes,
)
from .store import (
    InMemoryLightningStore,
    LightningStore,
    LightningStoreClient,
    LightningStoreServer,
    LightningStoreThreaded,
    RedisLightningStore,
)
from .tracer import AgentOpsTracer, OtelTracer, Tracer, get_active_tracer, get_last_trace
from .types import (
    LLM,
    UNSET,
    Attempt,
    AttemptedRollout,
    AttemptStatus,
    Dataset,
    EnqueueRolloutRequest,
    NamedResources,
    PaginatedResult,
    PromptTemplate,
    ProxyLLM,
    Resource,
    ResourcesUpdate,
    ResourceUnion,
    Rollout,
    RolloutConfig,
    RolloutMode,
    RolloutStatus,
    Span,
    SpanCoreFields,
    TaskInput,
    Triplet,
    Worker,
)

# v0.3 exports the `@reward` decorator as `agl.reward`. Importing the `lightning_queue.reward`
# submodule above bound this attribute to the module; rebinding it here keeps `agl.reward` the
# decorator while `from lightning_queue.reward import ...` still finds the (already loaded) module.
reward = _reward_decorator

if TYPE_CHECKING:
    from .trainer import ClientServerExecutionStrategy, ExecutionStrategy, SharedMemoryExecutionStrategy, Trainer

_TRAINER_NAMES = ("Trainer", "ExecutionStrategy", "SharedMemoryExecutionStrategy", "ClientServerExecutionStrategy")


def __getattr__(name: str) -> Any:
    # The Trainer stands above the worker runtime; loading it on first use keeps `import
    # lightning_queue.types` in a worker process from importing the runtime back through this facade.
    if name in _TRAINER_NAMES:
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AGL_ANNOTATION",
    "AGL_EXCEPTION",
    "AGL_MESSAGE",
    "AGL_OBJECT",
    "AGL_OPERATION",
    "AGL_REWARD",
    "AGL_VIRTUAL",
    "APO",
    "LLM",
    "UNSET",
    "VERL",
    "Adapter",
    "AgentOpsTracer",
    "Algorithm",
    "Attempt",
    "AttemptStatus",
    "AttemptedRollout",
    "Baseline",
    "ClientServerExecutionStrategy",
    "Dataset",
    "EnqueueRolloutRequest",
    "ExecutionStrategy",
    "FunctionalAlgorithm",
    "FunctionalLitAgent",
    "Hook",
    "InMemoryLightningStore",
    "LLMProxy",
    "LightningEnvVar",
    "LightningResourceAttributes",
    "LightningSpanAttributes",
    "LightningStore",
    "LightningStoreClient",
    "LightningStoreServer",
    "LightningStoreThreaded",
    "LitAgent",
    "LitAgentRunner",
    "LlmProxyTraceToTriplet",
    "ModelConfig",
    "NamedResources",
    "OtelTracer",
    "PaginatedResult",
    "PromptTemplate",
    "ProxyLLM",
    "RedisLightningStore",
    "Resource",
    "ResourceUnion",
    "ResourcesUpdate",
    "Rollout",
    "RolloutConfig",
    "RolloutMode",
    "RolloutRawResult",
    "RolloutStatus",
    "SharedMemoryExecutionStrategy",
    "Span",
    "SpanCoreFields",
    "TaskInput",
    "TraceAdapter",
    "TraceToMessages",
    "TraceToTripletBase",
    "Tracer",
    "TracerTraceToTriplet",
    "Trainer",
    "Triplet",
    "Worker",
    "__version__",
    "algo",
    "configure_logger",
    "emit_annotation",
    "emit_exception",
    "emit_message",
    "emit_object",
    "emit_reward",
    "find_final_reward",
    "find_reward_spans",
    "get_active_tracer",
    "get_last_trace",
    "get_reward_value",
    "get_rewards_from_span",
    "is_reward_span",
    "llm_rollout",
    "operation",
    "prompt_rollout",
    "resolve_bool_env_var",
    "resolve_int_env_var",
    "resolve_str_env_var",
    "reward",
    "rollout",
    "setup_logging",
    "setup_module_logging",
    "with_llm_proxy",
    "with_store",
]
