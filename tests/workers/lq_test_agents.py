"""Agents the worker tests run in real worker processes (importable via PYTHONPATH=tests/workers).

`scripted` / `scripted_sync` do what their task says, so one agent serves every test:
  {"sleep": s}                  sleep s seconds (every attempt)
  {"sleep_first_attempt": s}    sleep s seconds on attempt 1 only (a retry then finishes fast)
  {"raise": "msg"}              raise RuntimeError(msg)
  {"return": value}             return value as is (e.g. a string: the wrong type)
otherwise: return a `test.mark` span naming this process and attempt, and reward 1.0.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from lightning_queue.reward import emit_reward
from lightning_queue.types import AttemptedRollout, SpanCoreFields
from workers import LitAgent, rollout

MARK = "test.mark"


def _delay(task: dict[str, Any], attempt: AttemptedRollout) -> float:
    first = attempt.attempt.sequence_id == 1
    return float(task.get("sleep", 0.0)) + (float(task.get("sleep_first_attempt", 0.0)) if first else 0.0)


def _outcome(task: dict[str, Any], attempt: AttemptedRollout) -> Any:
    if "raise" in task:
        raise RuntimeError(task["raise"])
    if "return" in task:
        return task["return"]
    mark = SpanCoreFields(
        name=MARK,
        attributes={"pid": os.getpid(), "attempt_id": attempt.attempt.attempt_id, "mark": str(task.get("mark", ""))},
    )
    return [mark, emit_reward(1.0, propagate=False)]


@rollout
async def scripted(task: dict[str, Any], rollout: AttemptedRollout) -> Any:
    await asyncio.sleep(_delay(task, rollout))
    return _outcome(task, rollout)


@rollout
def scripted_sync(task: dict[str, Any], rollout: AttemptedRollout) -> Any:
    time.sleep(_delay(task, rollout))
    return _outcome(task, rollout)


not_an_agent = 42


def plain_function(task: Any) -> float:
    return 1.0


class NeedsArguments(LitAgent[Any]):
    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model
