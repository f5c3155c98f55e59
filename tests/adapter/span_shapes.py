"""Types shared by the adapter suite (imported by module name)."""

from __future__ import annotations

from collections.abc import Callable

from lightning_queue.types import Span

SpanMaker = Callable[..., Span]
RewardMaker = Callable[[int, float], Span]
