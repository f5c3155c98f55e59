"""Helpers algorithms share."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from .decorators import with_llm_proxy, with_store

T = TypeVar("T")

__all__ = ["batch_iter_over_dataset", "with_llm_proxy", "with_store"]


def batch_iter_over_dataset(dataset: Sequence[T], batch_size: int, *, seed: Any = None) -> Iterator[list[T]]:
    """Endless batches of `batch_size` (at most the dataset size); every pass over the data is a fresh shuffle."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size!r}")
    if len(dataset) == 0:
        raise ValueError("cannot iterate batches over an empty dataset")
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        batch: list[T] = []
        while len(batch) < min(batch_size, len(dataset)):
            if not order:
                order = list(range(len(dataset)))
                rng.shuffle(order)
            batch.append(dataset[order.pop()])
        yield batch
