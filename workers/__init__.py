"""lightning-queue workers: run an agent on rollouts claimed from the store, in a supervised pool."""

from .agent import FunctionalLitAgent, Hook, LitAgent, RolloutRawResult, llm_rollout, prompt_rollout, rollout

__all__ = [
    "FunctionalLitAgent",
    "Hook",
    "LitAgent",
    "RolloutRawResult",
    "llm_rollout",
    "prompt_rollout",
    "rollout",
]
