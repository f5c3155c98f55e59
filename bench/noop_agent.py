"""The no-op agent for the lifecycle's `workers` row: `lq worker --agent bench.noop_agent:noop`.

It returns the same 3 small spans the bench's own workers write, so the row differs from the `lq` row
only by the worker runtime (`workers`: leases, telemetry, reserved sequence ids, result handling).
"""

from __future__ import annotations

from typing import Any

from lightning_queue.litagent import rollout
from lightning_queue.types import SpanCoreFields

from .workload import SPAN_ATTRIBUTES, SPANS_PER_ROLLOUT, span_name


@rollout
async def noop(task: Any) -> list[SpanCoreFields]:
    return [SpanCoreFields(name=span_name(seq), attributes=SPAN_ATTRIBUTES) for seq in range(1, SPANS_PER_ROLLOUT + 1)]
