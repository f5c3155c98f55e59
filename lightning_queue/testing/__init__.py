"""Test doubles. `StandInModelServer` is a scripted OpenAI-compatible server with fake token ids, for fast
tests of everything around a model; it generates nothing.

    from lightning_queue.testing import Reply, StandInModelServer, ToolCall
"""

from .replies import Reply, ToolCall
from .server import StandInModelServer, StandInRequest
from .tokens import encode, render_chat

__all__ = ["Reply", "StandInModelServer", "StandInRequest", "ToolCall", "encode", "render_chat"]
