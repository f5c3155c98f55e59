"""`Hook`, re-exported where the agent API is (it is defined with the data model, in `types.hooks`)."""

from lightning_queue.types.hooks import Hook

__all__ = ["Hook"]
