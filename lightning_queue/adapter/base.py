"""Adapters turn what the store holds (spans) into what an algorithm trains on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, TypeVar

from ..types import Span, Triplet

T_from = TypeVar("T_from")
T_to = TypeVar("T_to")


class Adapter(ABC, Generic[T_from, T_to]):
    """Converts one kind of data into another; calling the adapter calls `adapt`."""

    def __call__(self, source: T_from) -> T_to:
        return self.adapt(source)

    @abstractmethod
    def adapt(self, source: T_from) -> T_to:
        """Convert `source`."""


class TraceAdapter(Adapter[Sequence[Span], T_to], Generic[T_to]):
    """Reads the spans of one rollout (attempt)."""


class TraceToTripletBase(TraceAdapter[list[Triplet]]):
    """Spans in, one triplet per LLM call out."""
