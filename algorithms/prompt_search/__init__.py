"""APO-style beam search over a prompt template; `python -m algorithms.prompt_search` runs it."""

from .algorithm import PromptSearch, PromptSearchConfig

__all__ = ["PromptSearch", "PromptSearchConfig"]
