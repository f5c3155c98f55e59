"""The tracer given to the Trainer is the one its worker processes trace agents with (forked and by name)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.tracer import AttemptTrace, OtelTracer
from lightning_queue.trainer import Trainer
from workers.examples import echo
from workers.loader import AgentLoadError, load_tracer

pytestmark = pytest.mark.slow

MARK = "test.custom_tracer"


class MarkingTracer(OtelTracer):
    """Marks every attempt it traces with a span naming the process, so the stored spans show who traced."""

    def __init__(self, label: str = "by-name") -> None:
        super().__init__()
        self.label = label

    @contextmanager
    def attempt_trace(self, name: str | None = None, *, rollout_id: str, attempt_id: str) -> Iterator[AttemptTrace]:
        with super().attempt_trace(name, rollout_id=rollout_id, attempt_id=attempt_id) as trace:
            self.create_span(MARK, {"label": self.label, "pid": os.getpid()})
            yield trace


TRACER = MarkingTracer()  # module level: workers started by name import it as `...:TRACER`


async def marks(store: RedisLightningStore) -> list[dict[str, Any]]:
    out = []
    for rollout in (await store.query_rollouts()).items:
        spans = (await store.query_spans(rollout.rollout_id, "latest")).items
        out += [dict(s.attributes) for s in spans if s.name == MARK]
    return out


@pytest.mark.parametrize(
    ("start", "tracer", "label"), [("fork", MarkingTracer("forked"), "forked"), ("import", TRACER, "by-name")]
)
def test_workers_trace_with_the_trainers_tracer(redis_url: str, start: str, tracer: OtelTracer, label: str) -> None:
    store = RedisLightningStore(redis_url, namespace=f"trainer-tracer-{uuid.uuid4().hex[:8]}", scan_debounce_seconds=0)
    try:
        trainer = Trainer(store=store, n_runners=1, tracer=tracer, worker_start=start, stop_timeout=3)  # type: ignore[arg-type]
        summary = trainer.dev(echo, [{"reward": 1.0}, {"reward": 0.5}])
        assert summary["train"]["succeeded"] == 2.0
        found = asyncio.run(marks(store))
        assert len(found) == 2 and {m["label"] for m in found} == {label}
        assert {m["pid"] for m in found}.isdisjoint({os.getpid()})  # traced in the worker process
    finally:
        asyncio.run(store.purge())


def test_a_tracer_that_is_not_an_otel_tracer_is_refused_before_workers_start(redis_url: str) -> None:
    from lightning_queue.tracer import Tracer

    class Bare(Tracer):
        def trace_context(self, name: Any = None, **kwargs: Any) -> Any:
            raise AssertionError("never used")

        def get_last_trace(self) -> Any:
            return []

        def create_span(self, name: str, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("never used")

        def operation_context(self, name: str, attributes: Any = None) -> Any:
            raise AssertionError("never used")

    store = RedisLightningStore(redis_url, namespace=f"trainer-tracer-{uuid.uuid4().hex[:8]}")
    with pytest.raises(ValueError, match=r"Bare.*OtelTracer"):
        Trainer(store=store, n_runners=1, tracer=Bare())._plan_workers(echo)


def test_a_tracer_spec_naming_something_else_is_refused() -> None:
    with pytest.raises(AgentLoadError, match=r"--tracer 'workers.examples:echo' is a .*not a .*OtelTracer"):
        load_tracer("workers.examples:echo")
    assert isinstance(load_tracer(f"{__name__}:MarkingTracer"), MarkingTracer)
