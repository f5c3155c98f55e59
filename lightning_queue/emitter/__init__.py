"""Emitters (`agentlightning.emitter`): spans an agent records in its rollout without returning them."""

from .annotation import OperationContext, emit_annotation, operation
from .exception import emit_exception
from .message import emit_message, get_message_value
from .object import emit_object, get_object_value
from .reward import emit_reward, reward
from .spans import flatten_attributes

__all__ = [
    "OperationContext",
    "emit_annotation",
    "emit_exception",
    "emit_message",
    "emit_object",
    "emit_reward",
    "flatten_attributes",
    "get_message_value",
    "get_object_value",
    "operation",
    "reward",
]
