"""REINFORCE with a per-task baseline on the served policy; `python -m algorithms.reinforce` runs it."""

from .algorithm import Reinforce, ReinforceConfig

__all__ = ["Reinforce", "ReinforceConfig"]
