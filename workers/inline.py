"""Worker processes forked from the caller with the agent and hooks in hand, instead of imported by name.

`lq worker` children import the agent from `module:attr`, which an agent defined in a script run as
a file (`__main__`), inside a function, or built inline (`trainer.dev(MyAgent(), ...)`) does not have.
On platforms with `fork`, the Trainer's pool starts its children with `InlineLauncher` instead: the
child is a copy of the caller, so it already holds the objects; nothing is pickled or sent anywhere
(the store's wire stays msgpack). The child then runs exactly what a `python -m workers` child runs.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.process
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from lightning_queue.litagent import Hook, LitAgent
from lightning_queue.tracer import OtelTracer

from .process import EXIT_CONFIG, SLOT_ENV, configure_logging, serve
from .settings import WorkerSettings


def can_fork() -> bool:
    """Whether this platform can start workers by fork (Linux and other Unixes; not Windows)."""
    return "fork" in multiprocessing.get_all_start_methods()


class InlineWorker:
    """A forked worker process, with the `subprocess.Popen` methods the pool uses."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        pid = self._process.pid
        if pid is None:
            raise ValueError("the worker process was never started")
        return pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def kill(self) -> None:
        self._process.kill()

    def wait(self) -> int:
        self._process.join()
        code = self._process.exitcode
        return -1 if code is None else code


class InlineLauncher:
    """Starts each worker process by forking this one; the child runs `agent` with `hooks` and `tracer` as given."""

    def __init__(self, agent: LitAgent[Any], hooks: Sequence[Hook] = (), tracer: OtelTracer | None = None) -> None:
        if not can_fork():
            raise ValueError(
                f"this platform ({sys.platform}) cannot fork, so worker processes cannot be handed the agent "
                "object; define the agent at module level of an importable module and pass its 'module:name'"
            )
        self.agent = agent
        self.hooks = list(hooks)
        self.tracer = tracer

    def __call__(self, command: Sequence[str], env: Mapping[str, str]) -> InlineWorker:
        context = multiprocessing.get_context("fork")
        process = context.Process(target=_child, args=(dict(env), self.agent, self.hooks, self.tracer), daemon=False)
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork in a threaded process (the supervisor is a thread of the
            # Trainer). The child touches no lock of the parent's threads: it builds its own event loop,
            # store and Redis connections, and logging re-creates its locks at fork.
            warnings.filterwarnings(
                "ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning
            )
            process.start()
        return InlineWorker(process)


def _child(env: dict[str, str], agent: LitAgent[Any], hooks: list[Hook], tracer: OtelTracer | None) -> None:
    # Its own session, as an exec'd worker: a terminal's Ctrl-C reaches only the supervisor.
    os.setsid()
    os.environ.clear()
    os.environ.update(env)
    try:
        settings = WorkerSettings.from_env(os.environ)
    except (ValueError, TypeError) as exc:
        print(f"workers.inline: bad settings: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    configure_logging(settings.log_level, f"worker#{os.environ.get(SLOT_ENV, '?')}[{os.getpid()}]")
    # multiprocessing turns SystemExit's code into the exit code the pool reads.
    sys.exit(asyncio.run(serve(settings, agent, hooks, tracer)))
