"""SFT's data: trainable rows from triplets, the rejection-sampling selection, the optional dataset export."""

from __future__ import annotations

import importlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_queue import Triplet

DATASETS_EXTRA = "datasets"


@dataclass(frozen=True)
class Row:
    """One LLM call worth imitating or not: its token ids and the reward of its rollout."""

    prompt_ids: list[int]
    response_ids: list[int]
    reward: float
    rollout_id: str

    def job_sample(self) -> dict[str, Any]:
        """The JSON form the fine-tuning job takes."""
        return {"prompt_ids": self.prompt_ids, "response_ids": self.response_ids, "reward": self.reward}

    def record(self, iteration: int) -> dict[str, Any]:
        """A training record as Hugging Face trainers take it: loss only on the response (labels -100)."""
        ids = self.prompt_ids + self.response_ids
        return {
            "input_ids": ids,
            "attention_mask": [1] * len(ids),
            "labels": [-100] * len(self.prompt_ids) + self.response_ids,
            "reward": self.reward,
            "rollout_id": self.rollout_id,
            "iteration": iteration,
        }


def _token_ids(side: Any) -> list[int]:
    ids = side.get("token_ids") if isinstance(side, dict) else None
    return list(ids) if isinstance(ids, list) else []


def rows_from_triplets(triplets: Sequence[Triplet], rollout_id: str) -> list[Row]:
    """Rows of one rollout, in call order.

    Walking the calls backwards, the latest reward seen is carried to earlier calls that have none
    (the adapter gives a final reward to the last call only; every call led to it). Calls without
    token ids on either side, or after the last reward, are skipped.
    """
    rows: list[Row] = []
    carried: float | None = None
    for triplet in reversed(triplets):
        if triplet.reward is not None:
            carried = float(triplet.reward)
        prompt, response = _token_ids(triplet.prompt), _token_ids(triplet.response)
        if prompt and response and carried is not None:
            rows.append(Row(prompt, response, carried, rollout_id))
    rows.reverse()
    return rows


def select_best(
    rows: Sequence[Row], keep_fraction: float, rng: random.Random, min_reward: float | None = None
) -> list[Row]:
    """The best `max(1, int(n * keep_fraction))` rows by reward, in random order; ties broken at random.

    With `min_reward`, rows below it are dropped from those kept, which may leave none (nothing
    worth imitating this iteration). No rows at all means the traces had no token ids or rewards,
    which is a setup error, hence ValueError.
    """
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction!r}")
    if not rows:
        raise ValueError(
            "no trainable rows: no LLM call had prompt and response token ids and a reward. Do the agents call "
            "the LLM through the proxy's resource, does the upstream return token ids, and do they emit a reward?"
        )
    shuffled = list(rows)
    rng.shuffle(shuffled)
    # sorted() is stable, so the shuffle decides among equal rewards.
    kept = sorted(shuffled, key=lambda row: row.reward, reverse=True)[: max(1, int(len(rows) * keep_fraction))]
    if min_reward is not None:
        kept = [row for row in kept if row.reward >= min_reward]
    rng.shuffle(kept)
    return kept


def require_datasets() -> None:
    """Fail before any rollout when a dataset export is asked for but `datasets` is missing."""
    try:
        importlib.import_module("datasets")
    except ImportError as exc:
        raise ImportError(
            f"exporting the selected triplets needs the Hugging Face `datasets` package: "
            f"pip install 'lightning-queue[{DATASETS_EXTRA}]' (or pip install datasets)"
        ) from exc


def export_dataset(records: Iterable[dict[str, Any]], path: Path) -> int:
    """Save the records as a `datasets.Dataset` at `path` (`Dataset.load_from_disk` reads it); returns the count."""
    require_datasets()
    # An optional dependency without type information; imported by name so type checking needs no stub.
    dataset_class: Any = importlib.import_module("datasets").Dataset
    rows = list(records)
    dataset_class.from_list(rows).save_to_disk(str(path))
    return len(rows)
