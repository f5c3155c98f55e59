"""`agentlightning.algorithm.apo` path: `APO` imports, and says what to use here when built."""

from .unported import APO

__all__ = ["APO"]
