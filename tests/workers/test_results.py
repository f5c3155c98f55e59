"""What an agent returns becomes its attempt's spans: rewards, span lists, and clear errors otherwise."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.litagent import results
from lightning_queue.reward import get_reward_value
from lightning_queue.types import AttemptedRollout, Span, SpanCoreFields


@pytest.fixture
async def claimed(store: RedisLightningStore) -> AttemptedRollout:
    await store.enqueue_rollout({"q": 1})
    rollout = await store.dequeue_rollout(worker_id="w-1")
    assert rollout is not None
    return rollout


async def to_spans(store: RedisLightningStore, claimed: AttemptedRollout, result: Any) -> list[Span]:
    return await results.spans_for(store, claimed, results.check_result(result))


async def test_float_becomes_one_primary_reward_span_with_the_next_sequence_id(
    store: RedisLightningStore, claimed: AttemptedRollout
) -> None:
    [span] = await to_spans(store, claimed, 0.25)

    assert span.name == "agentlightning.annotation"
    assert span.attributes == {"agentlightning.reward.0.name": "primary", "agentlightning.reward.0.value": 0.25}
    assert (span.rollout_id, span.attempt_id, span.sequence_id) == (
        claimed.rollout_id,
        claimed.attempt.attempt_id,
        1,
    )


@pytest.mark.parametrize("value", [1, True])
async def test_int_and_bool_rewards_are_converted_with_a_warning(
    store: RedisLightningStore, claimed: AttemptedRollout, value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="lightning_queue.litagent.results"):
        [span] = await to_spans(store, claimed, value)
    assert get_reward_value(span) == 1.0
    assert "converting it to float" in caplog.text


async def test_none_and_empty_list_store_nothing(store: RedisLightningStore, claimed: AttemptedRollout) -> None:
    assert await to_spans(store, claimed, None) == []
    assert await to_spans(store, claimed, []) == []


async def test_core_fields_get_consecutive_sequence_ids(store: RedisLightningStore, claimed: AttemptedRollout) -> None:
    spans = await to_spans(store, claimed, [SpanCoreFields(name="a"), SpanCoreFields(name="b")])
    assert [(s.name, s.sequence_id) for s in spans] == [("a", 1), ("b", 2)]


async def test_spans_keep_their_sequence_id_and_get_this_attempts_ids(
    store: RedisLightningStore, claimed: AttemptedRollout
) -> None:
    given = [Span.from_attributes(attributes={}, name="x", sequence_id=7), Span.from_attributes(attributes={})]
    spans = await to_spans(store, claimed, given)
    assert [s.sequence_id for s in spans] == [7, 1]
    assert {(s.rollout_id, s.attempt_id) for s in spans} == {(claimed.rollout_id, claimed.attempt.attempt_id)}


async def test_span_of_another_attempt_is_refused(store: RedisLightningStore, claimed: AttemptedRollout) -> None:
    foreign = Span.from_attributes(attributes={}, rollout_id=claimed.rollout_id, attempt_id="at-other")
    with pytest.raises(ValueError, match="attempt 'at-other' while running"):
        await to_spans(store, claimed, [foreign])


@pytest.mark.parametrize(
    ("result", "error", "message"),
    [
        ("done", TypeError, "agent returned str 'done'; expected None, a float reward"),
        ({"reward": 1}, TypeError, "agent returned dict"),
        ([SpanCoreFields(name="a"), "x"], TypeError, "a list with str 'x' at index 1"),
        ([SpanCoreFields(name="a"), 1.0, 2.0], ValueError, "two rewards"),
    ],
)
def test_wrong_results_say_what_was_returned(result: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        results.check_result(result)


async def test_a_mixed_list_stores_its_spans_in_order_then_the_reward(
    store: RedisLightningStore, claimed: AttemptedRollout
) -> None:
    # Issue 13: `[span, 1.0]` used to fail the attempt; an Agent-Lightning agent may return both.
    given = [SpanCoreFields(name="a"), 0.5, Span.from_attributes(attributes={}, name="b")]
    spans = await to_spans(store, claimed, given)
    assert [(s.name, s.sequence_id) for s in spans] == [("a", 1), ("b", 2), ("agentlightning.annotation", 3)]
    assert get_reward_value(spans[-1]) == 0.5


def test_a_coroutine_result_says_to_make_the_agent_async() -> None:
    async def forgot_await() -> float:
        return 1.0

    with pytest.raises(TypeError, match="make it async"):
        results.check_result(forgot_await())


def test_error_record_has_type_message_and_a_truncated_traceback() -> None:
    try:
        raise KeyError("x" * 10)
    except KeyError as exc:
        record = results.error_record(exc, max_traceback_chars=50)
    assert record["type"] == "KeyError" and "xxxxxxxxxx" in record["message"]
    assert record["traceback"].startswith("...\n") and len(record["traceback"]) <= 54


def _attempted(i: int) -> AttemptedRollout:
    return AttemptedRollout.model_validate(
        {
            "rollout_id": f"ro-{i}",
            "input": {},
            "start_time": 0.0,
            "attempt": {"rollout_id": f"ro-{i}", "attempt_id": f"at-{i}", "sequence_id": 1, "start_time": 0.0},
        }
    )


def test_no_reward_warnings_name_the_first_rollouts_then_summarize_once_a_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    limiter = results.NoRewardWarnings(first=2, every=60.0, clock=lambda: now[0])
    rewarded = [Span.from_core_fields(SpanCoreFields(name="x"), rollout_id="ro", attempt_id="at", sequence_id=1)]
    with caplog.at_level(logging.WARNING, logger="lightning_queue.litagent.results"):
        for i in range(1, 8):
            results.warn_if_no_reward(_attempted(i), [], limiter)
            now[0] += 5.0
        # A rollout with a reward is neither warned of nor counted.
        results.warn_if_no_reward(_attempted(99), results_with_reward(rewarded), limiter)
        logged = [r.getMessage() for r in caplog.records]
        assert [m.split(" ended")[0] for m in logged] == ["rollout ro-1 attempt at-1", "rollout ro-2 attempt at-2"]
        now[0] = 105.0 + 60.0
        results.warn_if_no_reward(_attempted(8), [], limiter)
        results.warn_if_no_reward(_attempted(9), [], limiter)
        limiter.flush()
    summaries = [r.getMessage() for r in caplog.records][2:]
    # Rollouts 3-8 in the first summary (due at rollout 8), rollout 9 in the one a stopping runtime flushes.
    assert summaries[0].startswith("6 more rollouts ended with no reward in the last 60s (latest: rollout ro-8 ")
    assert summaries[1].startswith("1 more rollouts ended with no reward in the last 0s (latest: rollout ro-9 ")
    assert len(summaries) == 2


def results_with_reward(spans: list[Span]) -> list[Span]:
    reward = Span.from_core_fields(
        SpanCoreFields(name="agentlightning.annotation", attributes={"agentlightning.reward.0.value": 1.0}),
        rollout_id="ro",
        attempt_id="at",
        sequence_id=2,
    )
    return [*spans, reward]


@pytest.mark.parametrize("first, every", [(0, 60.0), (3, 0.0)])
def test_no_reward_warnings_refuse_a_limit_that_would_hide_every_warning(first: int, every: float) -> None:
    with pytest.raises(ValueError, match="first >= 1 and every > 0"):
        results.NoRewardWarnings(first=first, every=every)
