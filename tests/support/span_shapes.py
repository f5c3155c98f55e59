"""Types shared by the adapter suite's fixtures and tests."""

from __future__ import annotations

from collections.abc import Callable

from lightning_queue.types import Span

SpanMaker = Callable[..., Span]
RewardMaker = Callable[[int, float], Span]
