"""lightning-queue: a Redis rollout bus for training LLM agents with reinforcement learning."""

from .store import LightningStore, RedisLightningStore
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
    "Attempt",
    "AttemptedRollout",
    "EnqueueRolloutRequest",
    "LightningStore",
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
    "Triplet",
    "Worker",
    "__version__",
]
