"""lightning-queue: a Redis rollout bus for training LLM agents with reinforcement learning."""

from .adapter import LlmProxyTraceToTriplet, TraceAdapter, TraceToMessages
from .algorithm import Algorithm, FunctionalAlgorithm, algo, with_llm_proxy, with_store
from .llm_proxy import LLMProxy
from .reward import emit_reward, find_final_reward, get_reward_value
from .store import LightningStore, RedisLightningStore
from .trainer import Trainer
from .types import (
    LLM,
    UNSET,
    Attempt,
    AttemptedRollout,
    EnqueueRolloutRequest,
    NamedResources,
    PaginatedResult,
    PromptTemplate,
    ProxyLLM,
    ResourcesUpdate,
    Rollout,
    RolloutConfig,
    Span,
    SpanCoreFields,
    Triplet,
    Worker,
)

__version__ = "0.1.0"

__all__ = [
    "LLM",
    "UNSET",
    "Algorithm",
    "Attempt",
    "AttemptedRollout",
    "EnqueueRolloutRequest",
    "FunctionalAlgorithm",
    "LLMProxy",
    "LightningStore",
    "LlmProxyTraceToTriplet",
    "NamedResources",
    "PaginatedResult",
    "PromptTemplate",
    "ProxyLLM",
    "RedisLightningStore",
    "ResourcesUpdate",
    "Rollout",
    "RolloutConfig",
    "Span",
    "SpanCoreFields",
    "TraceAdapter",
    "TraceToMessages",
    "Trainer",
    "Triplet",
    "Worker",
    "__version__",
    "algo",
    "emit_reward",
    "find_final_reward",
    "get_reward_value",
    "with_llm_proxy",
    "with_store",
]
