"""Running an agent in this process (`agentlightning.runner`): `LitAgentRunner` for debugging on any store."""

from .agent import LitAgentRunner, RunnerTracer, StopEvent

__all__ = ["LitAgentRunner", "RunnerTracer", "StopEvent"]
