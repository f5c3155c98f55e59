"""Agents the worker tests run in real worker processes (imported as `tests.support.agents`).

`scripted` / `scripted_sync` do what their task says, so one agent serves every test:
  {"sleep": s}                  sleep s seconds (every attempt)
  {"sleep_first_attempt": s}    sleep s seconds on attempt 1 only (a retry then finishes fast)
  {"raise": "msg"}              raise RuntimeError(msg)
  {"return": value}             return value as is (e.g. a string: the wrong type)
  {"block": s}                  block the event loop s seconds (time.sleep inside the async agent)
  {"fork": how}                 fork a child that then: "store" uses the worker's store and exits,
                                "exit" calls sys.exit(0), "return" returns from the agent as if it were the parent
  {"leak_mb": n}                allocate n MB and keep it for the life of the process
otherwise: return a `test.mark` span naming this process and attempt, and reward 1.0.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from lightning_queue.litagent import LitAgent, rollout
from lightning_queue.reward import emit_reward
from lightning_queue.types import AttemptedRollout, SpanCoreFields

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


_leaked: list[bytes] = []


@rollout
async def scripted(task: dict[str, Any], rollout: AttemptedRollout) -> Any:
    await asyncio.sleep(_delay(task, rollout))
    if "block" in task:
        time.sleep(float(task["block"]))  # noqa: ASYNC251 (blocking the loop is the point)
    if "leak_mb" in task:
        _leaked.append(b"\x01" * (int(task["leak_mb"]) << 20))  # written, so it counts in the RSS
    if "fork" in task:
        await _fork(str(task["fork"]))
    return _outcome(task, rollout)


async def _fork(how: str) -> None:
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        if how == "store":
            store = scripted.runner.store
            asyncio.run(store.query_workers())
            sys.exit(0)
        if how == "exit":
            sys.exit(0)
        return  # "return": carry on as if this were the parent
    deadline = time.monotonic() + 15
    while os.waitpid(pid, os.WNOHANG) == (0, 0):  # noqa: ASYNC222 (WNOHANG does not block)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)  # noqa: ASYNC222 (a killed child is reaped at once)
            raise RuntimeError(f"the child {pid} forked by {parent} did not exit")
        await asyncio.sleep(0.05)


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
