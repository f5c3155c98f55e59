"""Fixtures of the store behaviour suite.

The `store`, `make_store` and `redis_url` fixtures come from `tests/conftest.py`; `backend` is widened here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lightning_queue.types import Span

SpanFactory = Callable[..., Span]


@pytest.fixture(params=["fakeredis", "redis", "in_memory"])
def backend(request: pytest.FixtureRequest) -> str:
    """The store suite also runs on `InMemoryLightningStore`, which must behave as the Redis store does."""
    return str(request.param)


@pytest.fixture
def make_span() -> SpanFactory:
    """Build a `Span` of one attempt; trace and span ids are random unless given."""

    def factory(
        rollout_id: str,
        attempt_id: str,
        sequence_id: int = 1,
        *,
        name: str = "step",
        span_id: str | None = None,
        trace_id: str | None = None,
        parent_id: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Span:
        return Span.from_attributes(
            attributes=attributes or {},
            rollout_id=rollout_id,
            attempt_id=attempt_id,
            sequence_id=sequence_id,
            name=name,
            span_id=span_id,
            trace_id=trace_id,
            parent_id=parent_id,
        )

    return factory
