"""Agent-Lightning algorithms with no counterpart here: importable, and saying what to use when called.

v0.3 scripts import `APO` from `agentlightning.algorithm.apo` and `VERL` from `agentlightning.algorithm.verl`;
the import works so the rest of such a script ports, and building one raises this error naming the
lightning-queue algorithm that does the job (its API differs: see docs/porting-from-agent-lightning.md).
"""

from __future__ import annotations

from typing import Any, NoReturn


class UnportedAlgorithmError(NotImplementedError):
    """An Agent-Lightning algorithm was used that lightning-queue does not implement under that name."""


def _refuse(name: str, instead: str) -> NoReturn:
    raise UnportedAlgorithmError(
        f"Agent-Lightning's {name} is not available in lightning-queue; {instead} "
        "(see docs/porting-from-agent-lightning.md)"
    )


class APO:
    """Agent-Lightning's textual-gradient prompt optimisation: use `algorithms.prompt_search` here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse(
            "APO (textual-gradient beam search)",
            "for prompt optimisation use algorithms.prompt_search.PromptSearch "
            "(or `python -m algorithms.prompt_search`)",
        )


class VERL:
    """Agent-Lightning's VERL (PPO/GRPO on a Ray cluster): use `algorithms.reinforce` here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse(
            "VERL",
            "for RL fine-tuning use algorithms.reinforce.Reinforce (or `python -m algorithms.reinforce`)",
        )
