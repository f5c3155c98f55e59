"""REINFORCE with a per-task baseline on the served policy; `python -m algorithms.reinforce` runs it."""

from .algorithm import Reinforce, ReinforceConfig
from .asynchronous import AsyncReinforce

__all__ = ["AsyncReinforce", "Reinforce", "ReinforceConfig"]
