"""lightning-queue workers: run an agent on rollouts claimed from the store, in a supervised pool."""

from .agent import FunctionalLitAgent, Hook, LitAgent, RolloutRawResult, llm_rollout, prompt_rollout, rollout
from .runner import Worker, WorkerTotals

__all__ = [
    "FunctionalLitAgent",
    "Hook",
    "LitAgent",
    "RolloutRawResult",
    "Worker",
    "WorkerTotals",
    "llm_rollout",
    "prompt_rollout",
    "rollout",
]
