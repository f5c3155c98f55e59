"""`agentlightning.algorithm.verl` path: `VERL` imports, and says what to use here when built."""

from .unported import VERL

__all__ = ["VERL"]
