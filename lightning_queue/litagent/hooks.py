"""`Hook`: callbacks a worker calls around each rollout it runs (v0.3 contract)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning_queue.types import AttemptedRollout, Span

from .litagent import LitAgent


class Hook:
    """Callbacks around each rollout a worker runs; override the ones you need.

    Exceptions raised by a hook are logged and never fail the rollout. `tracer` is the worker's
    tracer; `on_trace_start` and `on_trace_end` run inside the attempt's trace.
    """

    async def on_rollout_start(self, *, agent: LitAgent[Any], runner: Any, rollout: AttemptedRollout) -> None:
        """Called after resources are resolved, before the agent runs."""

    async def on_trace_start(
        self, *, agent: LitAgent[Any], runner: Any, tracer: Any, rollout: AttemptedRollout
    ) -> None:
        """Called right before the agent call."""

    async def on_trace_end(self, *, agent: LitAgent[Any], runner: Any, tracer: Any, rollout: AttemptedRollout) -> None:
        """Called right after the agent call, whether it returned or raised."""

    async def on_rollout_end(
        self, *, agent: LitAgent[Any], runner: Any, rollout: AttemptedRollout, spans: Sequence[Span]
    ) -> None:
        """Called with the spans the worker is about to store, before the attempt's status is written."""
