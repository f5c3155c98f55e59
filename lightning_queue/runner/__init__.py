"""Running an agent in this process (`agentlightning.runner`): `LitAgentRunner` for debugging on any store."""

from .agent import LitAgentRunner, StopEvent

__all__ = ["LitAgentRunner", "StopEvent"]
