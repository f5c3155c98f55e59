"""lightning-queue workers: run an agent on rollouts claimed from the store, in a supervised pool."""

# The agent API lives in lightning_queue.litagent; re-exported for code that wrote `from workers import rollout`.
from lightning_queue.litagent import (
    FunctionalLitAgent,
    Hook,
    LitAgent,
    RolloutRawResult,
    llm_rollout,
    prompt_rollout,
    rollout,
)

from .loader import AgentLoadError, load_agent
from .pool import WorkerPool
from .runner import Worker, WorkerTotals
from .settings import WorkerSettings

__all__ = [
    "AgentLoadError",
    "FunctionalLitAgent",
    "Hook",
    "LitAgent",
    "RolloutRawResult",
    "Worker",
    "WorkerPool",
    "WorkerSettings",
    "WorkerTotals",
    "llm_rollout",
    "load_agent",
    "prompt_rollout",
    "rollout",
]
