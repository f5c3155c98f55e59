"""`AgentOpsTracer`: Agent-Lightning's default tracer, here without AgentOps.

In Agent-Lightning this tracer starts the AgentOps SDK (and a local AgentOps server) so that AgentOps
instruments the LLM clients. lightning-queue does not depend on AgentOps: this is an `OtelTracer`
with the OpenAI client instrumented by `opentelemetry-instrumentation-openai-v2`. What differs:
- LLM spans follow the OpenTelemetry GenAI conventions (`gen_ai.*` attributes, messages in
  `gen_ai.input.messages` / `gen_ai.output.messages`), not AgentOps' attribute names;
- only the OpenAI client is instrumented (AgentOps also patches other providers and frameworks);
- nothing is sent to AgentOps: `agentops_managed` and `daemon` are accepted and have no effect.
"""

from __future__ import annotations

import logging

from .otel import OtelTracer

logger = logging.getLogger(__name__)


class AgentOpsTracer(OtelTracer):
    """`OtelTracer` with the OpenAI client instrumented (unless `instrument_managed=False`)."""

    def __init__(self, *, agentops_managed: bool = True, instrument_managed: bool = True, daemon: bool = True) -> None:
        super().__init__(instrument_openai=instrument_managed)
        self.agentops_managed = agentops_managed
        self.instrument_managed = instrument_managed
        self.daemon = daemon
        if not instrument_managed:
            logger.warning("AgentOpsTracer(instrument_managed=False): LLM client calls are not instrumented")
