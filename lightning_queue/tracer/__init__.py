"""Tracers (`agentlightning.tracer`): the spans an agent makes while it runs become its attempt's spans."""

from .agentops import AgentOpsTracer
from .base import Tracer, get_active_tracer, get_last_trace
from .otel import AttemptTrace, OperationRecorder, OtelTracer

__all__ = [
    "AgentOpsTracer",
    "AttemptTrace",
    "OperationRecorder",
    "OtelTracer",
    "Tracer",
    "get_active_tracer",
    "get_last_trace",
]
