"""Fixtures of the adapter suite: spans built by hand in the shapes different tracers write."""

from __future__ import annotations

from typing import Any

import pytest

from lightning_queue.adapter import emit_reward
from lightning_queue.types import Span
from tests.support.span_shapes import RewardMaker, SpanMaker


@pytest.fixture
def make_span() -> SpanMaker:
    def factory(
        sequence_id: int,
        attributes: dict[str, Any],
        *,
        name: str = "openai.chat.completion",
        start_time: float | None = None,
        span_id: str | None = None,
        parent_id: str | None = None,
    ) -> Span:
        return Span.from_attributes(
            attributes=attributes,
            rollout_id="ro-1",
            attempt_id="at-1",
            sequence_id=sequence_id,
            name=name,
            span_id=span_id,
            parent_id=parent_id,
            start_time=start_time if start_time is not None else 1000.0 + sequence_id,
        )

    return factory


@pytest.fixture
def make_reward() -> RewardMaker:
    def factory(sequence_id: int, value: float) -> Span:
        return Span.from_core_fields(emit_reward(value), rollout_id="ro-1", attempt_id="at-1", sequence_id=sequence_id)

    return factory
