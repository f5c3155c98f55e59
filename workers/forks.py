"""A process an agent forks never runs the worker's code: it exits where it leaves the agent.

A child returning from (or raising out of, `sys.exit` included) the agent call would carry on as a
second copy of the worker: it would store results, claim rollouts and, on its way out, close the
Redis connections and event loop registrations it shares with its parent, whose replies then go
astray (`Timeout reading`). The store gives a forked child fresh connections of its own
(`connection.PerLoop`); this module stops the child before it gets back to the worker.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def guard_async(call: Awaitable[T], pid: int) -> T:
    """Await the agent's `call` made in process `pid`; a forked child that gets back here exits."""
    try:
        result = await call
    except BaseException as exc:
        _leave_if_child(pid, exc)
        raise
    _leave_if_child(pid, None)
    return result


def guard_sync(call: Callable[[], T], pid: int) -> T:
    """Run the sync agent's `call` made in process `pid` (in its thread); a forked child exits here."""
    try:
        result = call()
    except BaseException as exc:
        _leave_if_child(pid, exc)
        raise
    _leave_if_child(pid, None)
    return result


def _leave_if_child(pid: int, exc: BaseException | None) -> None:
    if os.getpid() != pid:
        _leave(exc, pid)


def _leave(exc: BaseException | None, parent: int) -> NoReturn:
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    else:
        code = 0 if exc is None else 1
        how = "returned from the agent" if exc is None else f"raised {type(exc).__name__} out of the agent"
        logger.warning(
            "process %d, forked by the agent in worker process %d, %s; it exits here (code %d) instead of "
            "running the worker's code. End a forked child with os._exit()",
            os.getpid(),
            parent,
            how,
            code,
        )
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            continue
    # Not sys.exit: unwinding would run the worker's cleanup on the parent's connections.
    os._exit(code)
