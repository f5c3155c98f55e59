"""`Hook`: callbacks a runner calls around each rollout it runs (v0.3 contract: `agentlightning.types.Hook`).

It lives with the data model, below the agent API, because v0.3 scripts import it from `types`; `agent` is
the running `LitAgent` and `runner` the worker or `LitAgentRunner` running it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .core import AttemptedRollout
from .tracer import Span


class Hook:
    """Callbacks around each rollout a worker runs; override the ones you need.

    Exceptions raised by a hook are logged and never fail the rollout. `tracer` is the runner's tracer,
    or None when it runs without one.
    """

    async def on_rollout_start(self, *, agent: Any, runner: Any, rollout: AttemptedRollout) -> None:
        """Called after resources are resolved, before the agent runs."""

    async def on_trace_start(self, *, agent: Any, runner: Any, tracer: Any, rollout: AttemptedRollout) -> None:
        """Called right before the agent call."""

    async def on_trace_end(self, *, agent: Any, runner: Any, tracer: Any, rollout: AttemptedRollout) -> None:
        """Called right after the agent call, whether it returned or raised."""

    async def on_rollout_end(
        self, *, agent: Any, runner: Any, rollout: AttemptedRollout, spans: Sequence[Span]
    ) -> None:
        """Called with the spans the worker is about to store, before the attempt's status is written."""
