"""`WeaveTracer` (v0.3's W&B Weave tracer): importable, and saying what to use when built.

Agent-Lightning's WeaveTracer records through the `weave` SDK's own trace server and converts its
calls to spans. Here the worker's tracer is OpenTelemetry (`OtelTracer`, with the OpenAI client
instrumented) or AgentOps (`AgentOpsTracer`); a Weave tracer would be a third recording path with
the same result, so it is not provided.
"""

from __future__ import annotations

from typing import Any


class UnportedTracerError(NotImplementedError):
    """An Agent-Lightning tracer was built that lightning-queue does not implement."""


class WeaveTracer:
    """Agent-Lightning's Weave tracer: use `OtelTracer` (the default) or `AgentOpsTracer` here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise UnportedTracerError(
            "Agent-Lightning's WeaveTracer is not available in lightning-queue; use OtelTracer (the default: "
            "OpenTelemetry spans, OpenAI calls instrumented) or AgentOpsTracer "
            "(see docs/porting-from-agent-lightning.md)"
        )
