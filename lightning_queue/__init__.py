"""lightning-queue: a Redis rollout bus for training LLM agents with reinforcement learning."""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .adapter import LlmProxyTraceToTriplet, TraceAdapter, TraceToMessages
from .algorithm import Algorithm, FunctionalAlgorithm, algo, with_llm_proxy, with_store
from .litagent import FunctionalLitAgent, Hook, LitAgent, RolloutRawResult, llm_rollout, prompt_rollout, rollout
from .llm_proxy import LLMProxy
from .reward import emit_reward, find_final_reward, get_reward_value
from .store import LightningStore, LightningStoreClient, RedisLightningStore
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

if TYPE_CHECKING:
    from .trainer import Trainer


def __getattr__(name: str) -> Any:
    # The Trainer stands above the worker runtime; loading it on first use keeps `import
    # lightning_queue.types` in a worker process from importing the runtime back through this facade.
    if name == "Trainer":
        from .trainer import Trainer

        return Trainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LLM",
    "UNSET",
    "Algorithm",
    "Attempt",
    "AttemptedRollout",
    "EnqueueRolloutRequest",
    "FunctionalAlgorithm",
    "FunctionalLitAgent",
    "Hook",
    "LLMProxy",
    "LightningStore",
    "LightningStoreClient",
    "LitAgent",
    "LlmProxyTraceToTriplet",
    "NamedResources",
    "PaginatedResult",
    "PromptTemplate",
    "ProxyLLM",
    "RedisLightningStore",
    "ResourcesUpdate",
    "Rollout",
    "RolloutConfig",
    "RolloutRawResult",
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
    "llm_rollout",
    "prompt_rollout",
    "rollout",
    "with_llm_proxy",
    "with_store",
]
