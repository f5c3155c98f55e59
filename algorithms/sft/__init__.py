"""Rejection-sampling fine-tuning, its fine-tune an rq job on `lq trainer`; `python -m algorithms.sft` runs it."""

from .algorithm import SFT, SFTConfig

__all__ = ["SFT", "SFTConfig"]
