"""Adapters from stored spans to training data, and the reward helpers they rely on.

from lightning_queue.adapter import LlmProxyTraceToTriplet, TraceToMessages, emit_reward
"""

from ..reward import emit_reward, find_final_reward, find_reward_spans, get_reward_value, get_rewards_from_span
from .base import Adapter, TraceAdapter, TraceToTripletBase
from .messages import OpenAIMessages, TraceToMessages, group_genai_dict
from .pyrepr import parse_python_literal
from .tracer_triplet import TracerTraceToTriplet
from .triplet import LlmProxyTraceToTriplet

__all__ = [
    "Adapter",
    "LlmProxyTraceToTriplet",
    "OpenAIMessages",
    "TraceAdapter",
    "TraceToMessages",
    "TraceToTripletBase",
    "TracerTraceToTriplet",
    "emit_reward",
    "find_final_reward",
    "find_reward_spans",
    "get_reward_value",
    "get_rewards_from_span",
    "group_genai_dict",
    "parse_python_literal",
]
