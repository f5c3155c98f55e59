"""The agent API of the v0.3 contract (`agentlightning.litagent`): `LitAgent`, the decorators and hooks."""

from .decorator import FunctionalLitAgent, llm_rollout, prompt_rollout, rollout
from .hooks import Hook
from .litagent import LitAgent, RolloutRawResult

__all__ = ["FunctionalLitAgent", "Hook", "LitAgent", "RolloutRawResult", "llm_rollout", "prompt_rollout", "rollout"]
