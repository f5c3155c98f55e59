"""An agent whose result may be too big to store (imported from the repository root)."""

from __future__ import annotations

from typing import Any

from lightning_queue.litagent import rollout
from lightning_queue.types import SpanCoreFields

BIG = "reliability.big"


@rollout
async def big_result(task: dict[str, Any]) -> list[SpanCoreFields]:
    """One span of `task["bytes"]` characters: over the store's size limit, or more than Redis has room for."""
    return [SpanCoreFields(name=BIG, attributes={"text": "x" * int(task.get("bytes", 0))})]
