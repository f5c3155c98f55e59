"""The demo task's checker and reward, and the held-out evaluation every ready algorithm reports."""

from __future__ import annotations

import re
from typing import Any

import pytest

from algorithms.evaluation import HeldOut, accuracy_gain, held_out_table, last_reply, load_checker, score_rollout
from algorithms.tasks import check, make_tasks, score, split_tasks
from lightning_queue.adapter import emit_reward
from lightning_queue.types import Span

TWO_PLUS_THREE = {"question": "What is 2 + 3?", "answer": 5}


@pytest.mark.parametrize("reply", ["5", "2 + 3 = 5", "2 + 3 = 5.", "The answer is 5.", " 5\n"])
def test_a_reply_ending_with_the_sum_is_correct(reply: str) -> None:
    assert check(TWO_PLUS_THREE, reply).correct


@pytest.mark.parametrize("reply", ["2", "3", "2 + 3", "5 + 1 = 6", "", "To add 2 and 3, you simply add"])
def test_a_reply_not_ending_with_the_sum_is_wrong(reply: str) -> None:
    verdict = check(TWO_PLUS_THREE, reply)
    assert not verdict.correct
    assert verdict.reward == 0.0  # a wrong reply earns nothing, however short


def test_the_reward_pays_right_answers_and_prefers_the_shorter_one() -> None:
    assert score("5", 5) == 1.0
    assert 0.9 < score("2 + 3 = 5", 5) < score("5", 5)
    assert score("2 + 3 = 5", 5) > score("2", 5) == 0.0


def first_operand(task: dict[str, Any]) -> str:
    """The collapsed policy the old reward taught: print the first number of the question."""
    return re.findall(r"\d+", task["question"])[0]


def test_a_collapsed_policy_scores_near_zero_accuracy_and_reward() -> None:
    tasks = split_tasks(seed=0)[1]
    verdicts = [check(task, first_operand(task)) for task in tasks]
    assert sum(v.correct for v in verdicts) == 0
    assert sum(v.reward for v in verdicts) == 0.0
    # ... while writing the sum out scores every task.
    assert all(check(t, f"{t['question'][8:-1]} = {t['answer']}").correct for t in tasks)


def test_held_out_and_training_sums_never_overlap() -> None:
    for seed in range(3):
        train, val = split_tasks(seed=seed)
        facts = [tuple(sorted(map(int, re.findall(r"\d+", t["question"])))) for t in val]
        assert len(val) == 48 and len(set(facts)) == 48  # distinct held-out sums
        assert not set(facts) & {tuple(sorted(map(int, re.findall(r"\d+", t["question"])))) for t in train}
        assert all(t["answer"] == sum(map(int, re.findall(r"\d+", t["question"]))) for t in train + val)
    assert split_tasks(seed=1) == split_tasks(seed=1) != split_tasks(seed=2)


def test_make_tasks_refuses_when_every_sum_is_excluded() -> None:
    everything = [{"question": f"What is {a} + {b}?"} for a in range(1, 3) for b in range(1, 3)]
    with pytest.raises(ValueError, match="nothing is left"):
        make_tasks(1, seed=0, low=1, high=2, exclude=everything)


def chat_spans(reply: str, reward: float, rollout_id: str = "ro-1") -> list[Span]:
    """What the proxy records for one call (the shape `TraceToMessages` reads), then the agent's reward."""
    call = Span.from_attributes(
        attributes={
            "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "What is 2 + 3?",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": reply,
        },
        rollout_id=rollout_id,
        attempt_id="at-1",
        sequence_id=1,
        name="openai.chat.completion",
        start_time=1000.0,
    )
    return [call, Span.from_core_fields(emit_reward(reward), rollout_id=rollout_id, attempt_id="at-1", sequence_id=2)]


def test_the_checker_reads_the_reply_the_model_wrote_not_the_agents_reward() -> None:
    # An agent that claims reward 1.0 for a wrong reply: accuracy comes from the reply itself.
    scored = score_rollout(TWO_PLUS_THREE, chat_spans("2", 1.0), check)
    assert scored.reply == "2" and scored.reward == 1.0 and not scored.correct


def test_last_reply_is_none_for_a_rollout_without_llm_calls() -> None:
    assert last_reply(chat_spans("5", 1.0)[1:]) is None
    assert score_rollout(TWO_PLUS_THREE, [], check).correct is False


def test_rollouts_that_did_not_succeed_count_as_wrong_with_reward_zero() -> None:
    held_out = HeldOut(
        [score_rollout(TWO_PLUS_THREE, chat_spans("5", 1.0), check), score_rollout(TWO_PLUS_THREE, None, check)],
        checked=True,
    )
    assert (held_out.n, held_out.finished, held_out.accuracy, held_out.mean) == (2, 1, 0.5, 0.5)
    assert held_out.parts() == {"brevity": 0.5, "correct": 0.5}


def test_without_a_checker_accuracy_is_unknown_not_zero() -> None:
    held_out = HeldOut([score_rollout(TWO_PLUS_THREE, chat_spans("5", 1.0), None)], checked=False)
    assert held_out.accuracy is None and held_out.mean == 1.0
    assert accuracy_gain(held_out.record(), held_out.record()) is None
    assert "accuracy not measured" in "\n".join(held_out_table(held_out.record(), held_out.record()))


def held_out_of(replies: list[str]) -> dict[str, Any]:
    scored = [score_rollout(TWO_PLUS_THREE, chat_spans(r, score(r, 5)), check) for r in replies]
    return HeldOut(scored, checked=True).record()


def test_the_gain_is_paired_over_the_same_tasks_and_judged_against_two_standard_errors() -> None:
    before = held_out_of(["2"] * 8 + ["5"] * 2)
    after = held_out_of(["2 + 3 = 5"] * 9 + ["2"])
    gain = accuracy_gain(before, after)
    assert gain is not None and gain.accuracy == pytest.approx(0.7)
    assert gain.significant
    noise = accuracy_gain(held_out_of(["2", "5"] * 5), held_out_of(["5", "2"] * 5))
    assert noise is not None and noise.accuracy == 0.0 and not noise.significant
    table = "\n".join(held_out_table(before, after))
    assert "+0.700" in table and "above 2 se" in table and "'2 + 3 = 5'" in table


def test_a_checker_path_is_loaded_or_refused_by_name() -> None:
    assert load_checker("algorithms.tasks:check") is check
    for bad in ("algorithms.tasks", "algorithms.tasks:nope", "no_such_module:x"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            load_checker(bad)
