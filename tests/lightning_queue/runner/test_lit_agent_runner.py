"""The debug flow of Agent-Lightning's apo_debug example: `LitAgentRunner.run_context` + `step` / `iter`, with
hooks and a tracer, on `InMemoryLightningStore` and on a real Redis."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from lightning_queue.litagent import LitAgent, prompt_rollout, rollout
from lightning_queue.reward import emit_reward, find_final_reward
from lightning_queue.runner import LitAgentRunner
from lightning_queue.semconv import SPAN_EXCEPTION
from lightning_queue.tracer import AttemptTrace, OtelTracer
from lightning_queue.types import AttemptedRollout, Hook, NamedResources, PromptTemplate, SpanCoreFields
from tests.support.stores import StoreFactory

PROMPT = PromptTemplate(template="You are a helpful assistant. {any_question}", engine="f-string")
QUESTION = "Explain why the sky appears blue in 100 words."


@pytest.fixture(params=["in_memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@prompt_rollout
def apo_like(task: str, prompt_template: PromptTemplate) -> float:
    """A stand-in for apo's agent: formats its prompt and scores it (no model)."""
    text = prompt_template.format(any_question=task)
    return 1.0 if text.startswith("You are a helpful assistant.") and task in text else 0.0


class Scripted(LitAgent[dict[str, Any]]):
    """Does what the task says: return a value, emit spans, or raise."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[Any, str | None, NamedResources]] = []

    async def rollout_async(self, task: dict[str, Any], resources: NamedResources, rollout: AttemptedRollout) -> Any:
        self.seen.append((task, rollout.mode, resources))
        if "raise" in task:
            raise RuntimeError(task["raise"])
        if "spans" in task:
            mark = SpanCoreFields(name="test.step", attributes={"i": task["spans"]})
            return [mark, emit_reward(0.5)]
        return task.get("return", 1.0)


class TrainsAndValidates(Scripted):
    """Overrides the validation path: mode "train" runs `rollout_async`, any other mode (or none) this."""

    async def validation_rollout_async(
        self, task: dict[str, Any], resources: NamedResources, rollout: AttemptedRollout
    ) -> Any:
        self.seen.append((task, "validation method", resources))
        return 0.25


class Recorder(Hook):
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail = fail

    async def on_rollout_start(self, *, agent: Any, runner: Any, rollout: AttemptedRollout) -> None:
        self.calls.append(("on_rollout_start", rollout.rollout_id))
        if self.fail:
            raise RuntimeError("a broken hook")

    async def on_trace_start(self, *, agent: Any, runner: Any, tracer: Any, rollout: AttemptedRollout) -> None:
        self.calls.append(("on_trace_start", tracer))

    async def on_trace_end(self, *, agent: Any, runner: Any, tracer: Any, rollout: AttemptedRollout) -> None:
        self.calls.append(("on_trace_end", tracer))

    async def on_rollout_end(self, *, agent: Any, runner: Any, rollout: AttemptedRollout, spans: Any) -> None:
        self.calls.append(("on_rollout_end", [s.name for s in spans]))


class StandInTracer(OtelTracer):
    """An OtelTracer recording the lifecycle calls Agent-Lightning's runner makes on its tracer."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[Any, ...]] = []
        self.active: tuple[str, str] | None = None

    def init(self, *args: Any, **kwargs: Any) -> None:
        self.events.append(("init",))
        super().init()

    def init_worker(self, worker_id: int | str, store: Any = None) -> None:
        self.events.append(("init_worker", worker_id))
        super().init_worker(worker_id, store)

    @contextlib.contextmanager
    def attempt_trace(self, name: str | None = None, *, rollout_id: str, attempt_id: str) -> Iterator[AttemptTrace]:
        self.active = (rollout_id, attempt_id)
        self.events.append(("enter", rollout_id))
        try:
            with super().attempt_trace(name, rollout_id=rollout_id, attempt_id=attempt_id) as trace:
                yield trace
        finally:
            self.active = None
            self.events.append(("exit", rollout_id))

    def teardown_worker(self, worker_id: int | str) -> None:
        self.events.append(("teardown_worker", worker_id))
        super().teardown_worker(worker_id)

    def teardown(self, *args: Any, **kwargs: Any) -> None:
        self.events.append(("teardown",))
        super().teardown()


async def test_step_runs_the_task_with_the_given_resources_and_stores_its_reward(store) -> None:
    runner = LitAgentRunner[str]()
    with runner.run_context(agent=apo_like, store=store):
        done = await runner.step(QUESTION, resources={"main_prompt": PROMPT})
    assert done.status == "succeeded"
    assert done.input == QUESTION
    spans = (await store.query_spans(done.rollout_id)).items
    assert find_final_reward(spans) == 1.0
    update = await store.get_resources_by_id(done.resources_id)
    assert update.resources["main_prompt"].template == PROMPT.template
    attempt = (await store.query_attempts(done.rollout_id))[0]
    assert attempt.worker_id == "Worker-0"


async def test_step_without_resources_uses_the_latest_snapshot(store) -> None:
    await store.update_resources("default", {"main_prompt": PROMPT})
    runner = LitAgentRunner[str]()
    with runner.run_context(agent=apo_like, store=store):
        done = await runner.step(QUESTION)
    assert find_final_reward((await store.query_spans(done.rollout_id)).items) == 1.0


async def test_step_stores_the_spans_an_agent_returns_in_order(store) -> None:
    agent = Scripted()
    runner = LitAgentRunner[dict[str, Any]]()
    with runner.run_context(agent=agent, store=store):
        done = await runner.step({"spans": 7}, mode="train")
    spans = (await store.query_spans(done.rollout_id)).items
    # As under `lq worker`: the reward traced when emitted comes first, stored once though also returned.
    assert [s.name for s in spans] == ["agentlightning.annotation", "test.step"]
    assert [s.sequence_id for s in spans] == sorted(s.sequence_id for s in spans)
    assert find_final_reward(spans) == 0.5


async def test_the_mode_chooses_the_training_or_validation_rollout(store) -> None:
    agent = TrainsAndValidates()
    runner = LitAgentRunner[dict[str, Any]]()
    with runner.run_context(agent=agent, store=store):
        trained = await runner.step({"return": 1.0}, mode="train")
        validated = await runner.step({"return": 1.0}, mode="val")
    assert [how for _, how, _ in agent.seen] == ["train", "validation method"]
    assert find_final_reward((await store.query_spans(trained.rollout_id)).items) == 1.0
    assert find_final_reward((await store.query_spans(validated.rollout_id)).items) == 0.25


async def test_an_agent_error_fails_the_attempt_records_it_and_reaches_the_caller(store) -> None:
    runner = LitAgentRunner[dict[str, Any]]()
    with runner.run_context(agent=Scripted(), store=store):
        with pytest.raises(RuntimeError, match="the agent broke"):
            await runner.step({"raise": "the agent broke"})
    [failed] = await store.query_rollouts()
    assert failed.status == "failed"
    [attempt] = await store.query_attempts(failed.rollout_id)
    assert attempt.metadata["error"]["message"] == "the agent broke"
    spans = (await store.query_spans(failed.rollout_id)).items
    assert [s.name for s in spans] == [SPAN_EXCEPTION]


async def test_a_result_of_the_wrong_type_fails_the_attempt_naming_it(store) -> None:
    runner = LitAgentRunner[dict[str, Any]]()
    with runner.run_context(agent=Scripted(), store=store):
        with pytest.raises(TypeError, match="agent returned str"):
            await runner.step({"return": "not a reward"})
    [failed] = await store.query_rollouts()
    assert failed.status == "failed"


async def test_a_result_the_store_refuses_fails_the_attempt_saying_why(make_store: StoreFactory) -> None:
    store = make_store(max_span_bytes=2000)

    @rollout
    async def huge(task: str) -> list[SpanCoreFields]:
        return [SpanCoreFields(name="big", attributes={"blob": "x" * 10_000})]

    runner = LitAgentRunner[str]()
    with runner.run_context(agent=huge, store=store):
        with pytest.raises(ValueError, match="span"):
            await runner.step("x")
    [failed] = await store.query_rollouts()
    assert failed.status == "failed"
    [attempt] = await store.query_attempts(failed.rollout_id)
    assert attempt.metadata is not None
    assert "span" in attempt.metadata["error"]["message"]


async def test_hooks_run_around_the_trace_and_get_the_tracer_and_the_spans(store) -> None:
    tracer, hook = StandInTracer(), Recorder()
    runner = LitAgentRunner[dict[str, Any]](tracer)
    with runner.run_context(agent=Scripted(), store=store, hooks=[hook]):
        done = await runner.step({"spans": 1})
    assert hook.calls == [
        ("on_rollout_start", done.rollout_id),
        ("on_trace_start", tracer),
        ("on_trace_end", tracer),
        ("on_rollout_end", ["agentlightning.annotation", "test.step"]),
    ]


async def test_the_tracer_brackets_each_rollout_and_the_runner_lifetime(store) -> None:
    tracer = StandInTracer()
    active_during_call: list[Any] = []

    @rollout
    async def agent(task: str) -> float:
        active_during_call.append(tracer.active)
        return 1.0

    runner = LitAgentRunner[str](tracer)
    with runner.run_context(agent=agent, store=store, worker_id=3):
        done = await runner.step("x")
    assert active_during_call == [(done.rollout_id, (await store.query_attempts(done.rollout_id))[0].attempt_id)]
    assert tracer.events == [
        ("init",),
        ("init_worker", 3),
        ("enter", done.rollout_id),
        ("exit", done.rollout_id),
        ("teardown_worker", 3),
        ("teardown",),
    ]


async def test_a_failing_hook_is_logged_and_the_rollout_still_succeeds(store, caplog) -> None:
    runner = LitAgentRunner[dict[str, Any]]()
    with runner.run_context(agent=Scripted(), store=store, hooks=[Recorder(fail=True)]):
        done = await runner.step({"return": 1.0})
    assert done.status == "succeeded"
    assert "a broken hook" in caplog.text


async def test_iter_runs_queued_rollouts_in_order_and_returns_how_many(store) -> None:
    agent = Scripted()
    queued = [await store.enqueue_rollout({"return": float(i)}) for i in range(3)]
    runner = LitAgentRunner[dict[str, Any]](poll_interval=0.05, interval_jitter=0.0)
    with runner.run_context(agent=agent, store=store):
        assert await runner.iter(n=2) == 2
    assert [task for task, _, _ in agent.seen] == [{"return": 0.0}, {"return": 1.0}]
    statuses = {r.rollout_id: r.status for r in await store.query_rollouts()}
    assert [statuses[r.rollout_id] for r in queued] == ["succeeded", "succeeded", "queuing"]


async def test_iter_goes_on_after_a_failed_rollout(store) -> None:
    await store.enqueue_rollout({"raise": "first one breaks"})
    await store.enqueue_rollout({"return": 1.0})
    runner = LitAgentRunner[dict[str, Any]](max_rollouts=2, poll_interval=0.05, interval_jitter=0.0)
    with runner.run_context(agent=Scripted(), store=store):
        assert await runner.iter() == 2
    assert sorted(r.status for r in await store.query_rollouts()) == ["failed", "succeeded"]


async def test_iter_stops_when_its_event_is_set_even_with_an_empty_queue(store) -> None:
    stop = threading.Event()

    class StopAfterOne(Hook):
        async def on_rollout_end(self, **kwargs: Any) -> None:
            stop.set()

    await store.enqueue_rollout({"return": 1.0})
    await store.enqueue_rollout({"return": 1.0})
    runner = LitAgentRunner[dict[str, Any]](poll_interval=30.0, interval_jitter=0.0)
    with runner.run_context(agent=Scripted(), store=store, hooks=[StopAfterOne()]):
        assert await runner.iter(event=stop) == 1
    stop.clear()
    runner = LitAgentRunner[dict[str, Any]](poll_interval=0.05, interval_jitter=0.0)
    threading.Timer(0.3, stop.set).start()
    with runner.run_context(agent=Scripted(), store=store):
        # One queued rollout, then an empty queue: iter waits until the event is set.
        assert await runner.iter(event=stop) == 1


async def test_a_rollout_with_no_reward_logs_a_warning_naming_it(store, caplog) -> None:
    runner = LitAgentRunner[dict[str, Any]]()
    with caplog.at_level(logging.WARNING, logger="lightning_queue.litagent.results"):
        with runner.run_context(agent=Scripted(), store=store):
            done = await runner.step({"return": None})
    assert done.status == "succeeded"
    # The same warning as under `lq worker` (one rule, lightning_queue.litagent.results).
    [attempt] = await store.query_attempts(done.rollout_id)
    assert f"rollout {done.rollout_id} attempt {attempt.attempt_id} ended with no reward" in caplog.text


async def test_the_runner_refuses_misuse_clearly(make_store: StoreFactory) -> None:
    store = make_store()
    runner = LitAgentRunner[str]()
    with pytest.raises(ValueError, match="no store"):
        await runner.step("x")
    with pytest.raises(TypeError, match="must be a LitAgent"):
        with runner.run_context(agent=lambda task: 1.0, store=store):  # type: ignore[arg-type]
            pytest.fail("entered the context")
    with pytest.raises(TypeError, match="must be Hook instances"):
        with runner.run_context(agent=apo_like, store=store, hooks=[object()]):  # type: ignore[list-item]
            pytest.fail("entered the context")
    with pytest.raises(ValueError, match="n must be at least 1"):
        with runner.run_context(agent=apo_like, store=store):
            await runner.iter(n=0)
    with pytest.raises(ValueError, match="max_rollouts"):
        LitAgentRunner(max_rollouts=0)


async def test_run_context_tears_down_when_the_body_raises(store) -> None:
    tracer = StandInTracer()
    runner = LitAgentRunner[str](tracer)
    with pytest.raises(KeyError):
        with runner.run_context(agent=apo_like, store=store):
            raise KeyError("boom")
    assert tracer.events[-2:] == [("teardown_worker", 0), ("teardown",)]
    with pytest.raises(ValueError, match="no agent"):
        runner.get_agent()


async def test_a_sync_agent_runs_off_the_event_loop(store) -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []

    @rollout
    def blocking(task: str) -> float:
        threads.append(threading.get_ident())
        return 1.0

    runner = LitAgentRunner[str]()
    with runner.run_context(agent=blocking, store=store):
        await runner.step("x")
    assert threads and threads[0] != loop_thread
