"""Held-out evaluation shared by the ready algorithms: the task's own accuracy beside the reward.

A reward is what training optimises; it can be gamed. Accuracy is what the task asks for, decided
by the task's checker on the reply the policy actually wrote (read back from the rollout's LLM
spans, not from what the agent says about itself). Every ready algorithm reports both, with the
reward's parts and a few replies, so a reader can tell learning from a loophole in the reward.
"""

from __future__ import annotations

import importlib
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightning_queue import TraceToMessages, find_final_reward
from lightning_queue.store.base import LightningStore
from lightning_queue.types import RolloutConfig, Span

from .rollouts import run_tasks

# How many replies a report shows (and the metrics file keeps) per evaluation.
SAMPLE_REPLIES = 5


@dataclass(frozen=True)
class Check:
    """A task checker's verdict on one reply: is it right, and the parts of the reward it earns."""

    correct: bool
    reward: float
    parts: Mapping[str, float] = field(default_factory=dict)


# checker(task, reply) -> Check; the built-in tasks define one each (`algorithms.tasks:check`).
Checker = Callable[[Any, str], Check]


def load_checker(path: str) -> Checker:
    """Import a checker given as `module:name`; a bad path is an error naming it."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"checker {path!r} must be given as 'module:name'")
    try:
        checker = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load checker {path!r}: {exc}") from exc
    if not callable(checker):
        raise ValueError(f"checker {path!r} is not callable")
    return checker  # type: ignore[no-any-return]


def last_reply(spans: Sequence[Span]) -> str | None:
    """The assistant text of the rollout's last recorded chat call, or None if it recorded none."""
    try:
        conversations = TraceToMessages().adapt(spans)
    except ValueError:
        return None
    return last_answer(conversations)


def last_answer(conversations: Sequence[Mapping[str, Any]]) -> str | None:
    """The assistant text that ends the last of `TraceToMessages` conversations, or None."""
    for conversation in reversed(conversations):
        messages = conversation.get("messages") or []
        if messages and messages[-1].get("role") == "assistant":
            content = messages[-1].get("content")
            return content if isinstance(content, str) else ""
    return None


@dataclass(frozen=True)
class Scored:
    """One held-out rollout: its task, the reply read from its spans, the agent's reward, the verdict."""

    task: Any
    reply: str | None
    reward: float | None
    check: Check | None

    @property
    def correct(self) -> bool:
        return self.check is not None and self.check.correct


def score_rollout(task: Any, spans: Sequence[Span] | None, checker: Checker | None) -> Scored:
    """Score a finished rollout (`spans`), or a rollout that did not succeed (`spans=None`: wrong, reward 0)."""
    if spans is None:
        return Scored(task, None, None, None)
    reply = last_reply(spans)
    check = checker(task, reply) if checker is not None and reply is not None else None
    return Scored(task, reply, find_final_reward(spans), check)


def _stderr(values: Sequence[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


@dataclass
class HeldOut:
    """An evaluation over held-out tasks. A rollout that did not succeed is wrong and earns 0."""

    scored: list[Scored]
    checked: bool  # False when no checker was given: accuracy is unknown, not zero

    @property
    def n(self) -> int:
        return len(self.scored)

    @property
    def finished(self) -> int:
        return sum(s.reply is not None for s in self.scored)

    @property
    def rewards(self) -> list[float]:
        return [s.reward if s.reward is not None else 0.0 for s in self.scored]

    @property
    def correct(self) -> list[float]:
        return [float(s.correct) for s in self.scored]

    @property
    def mean(self) -> float:
        """Mean reward (kept under this name: it is what the reward-only reports showed)."""
        return statistics.fmean(self.rewards) if self.scored else float("nan")

    @property
    def std(self) -> float:
        return statistics.pstdev(self.rewards) if self.n > 1 else 0.0

    @property
    def stderr(self) -> float:
        return _stderr(self.rewards)

    @property
    def accuracy(self) -> float | None:
        return statistics.fmean(self.correct) if self.checked and self.scored else None

    @property
    def accuracy_stderr(self) -> float | None:
        return _stderr(self.correct) if self.checked else None

    def parts(self) -> dict[str, float]:
        """Mean of each reward part over the held-out tasks (a reply that was not checked counts 0)."""
        names = sorted({name for s in self.scored if s.check for name in s.check.parts})
        return {
            name: statistics.fmean(s.check.parts.get(name, 0.0) if s.check else 0.0 for s in self.scored)
            for name in names
        }

    def samples(self, count: int = SAMPLE_REPLIES) -> list[dict[str, Any]]:
        return [
            {"task": s.task, "reply": s.reply, "correct": s.correct if self.checked else None}
            for s in self.scored[:count]
        ]

    def record(self) -> dict[str, Any]:
        """The JSON form for metrics files, `--json` output and the reports below."""
        return {
            "n": self.n,
            "finished": self.finished,
            "accuracy": self.accuracy,
            "accuracy_stderr": self.accuracy_stderr,
            "reward_mean": self.mean,
            "reward_std": self.std,
            "reward_stderr": self.stderr,
            "parts": self.parts(),
            "samples": self.samples(),
            # Per task, in task order: what a paired comparison of two evaluations needs.
            "tasks": [_short(s.task) for s in self.scored],
            "correct": [s.correct for s in self.scored] if self.checked else None,
        }


async def evaluate_held_out(
    store: LightningStore,
    tasks: Sequence[Any],
    *,
    resources_id: str,
    checker: Checker | None,
    timeout: float,
    config: RolloutConfig | None = None,
) -> HeldOut:
    """One `val` rollout per task under `resources_id`, each scored by the checker on its recorded reply."""
    scored = []
    for task, rollout_id in await run_tasks(
        store, tasks, resources_id=resources_id, mode="val", timeout=timeout, config=config
    ):
        spans = (await store.query_spans(rollout_id, "latest")).items if rollout_id is not None else None
        scored.append(score_rollout(task, spans, checker))
    return HeldOut(scored, checked=checker is not None)


@dataclass(frozen=True)
class Gain:
    """After minus before on the same tasks; the stderr is that of the per-task paired differences."""

    accuracy: float
    stderr: float

    @property
    def significant(self) -> bool:
        """Above two standard errors (and positive)."""
        return self.accuracy > 2 * self.stderr


def accuracy_gain(before: Mapping[str, Any], after: Mapping[str, Any]) -> Gain | None:
    """The paired accuracy gain of two evaluation records, or None unless both checked the same tasks."""
    if before.get("correct") is None or after.get("correct") is None or not before["tasks"]:
        return None
    if before["tasks"] != after["tasks"]:
        return None
    diffs = [float(a) - float(b) for a, b in zip(after["correct"], before["correct"], strict=True)]
    return Gain(statistics.fmean(diffs), _stderr(diffs))


def held_out_table(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    labels: tuple[str, str] = ("before training", "after training"),
) -> list[str]:
    """Accuracy, reward and its parts before and after, the gain, and a few replies of each (from records)."""
    part_names = sorted(set(before["parts"]) | set(after["parts"]))
    head = "held-out          accuracy (± se)   reward (± se)   " + "  ".join(f"{p:>8}" for p in part_names)
    lines = [head]
    for tag, h in ((labels[0], before), (labels[1], after)):
        if h["accuracy"] is None:
            acc = "     n/a        "
        else:
            acc = f"{h['accuracy']:6.3f} ± {h['accuracy_stderr']:5.3f}  "
        parts = "  ".join(f"{h['parts'].get(p, 0.0):8.3f}" for p in part_names)
        lines.append(f"{tag:<17} {acc}  {h['reward_mean']:6.3f} ± {h['reward_stderr']:5.3f}  {parts}")
    gain = accuracy_gain(before, after)
    if gain is not None:
        verdict = "above 2 se" if gain.significant else "NOT above 2 se"
        lines.append(f"accuracy change   {gain.accuracy:+6.3f} ± {gain.stderr:5.3f} ({verdict}), n={before['n']}")
    else:
        change = after["reward_mean"] - before["reward_mean"]
        lines.append(f"reward change     {change:+6.3f}  (no checker: accuracy not measured)")
    for tag, h in ((labels[0], before), (labels[1], after)):
        lines.append(f"sample replies, {tag}:")
        lines += [f"  {_mark(s['correct'])} {_short(s['task'])} -> {s['reply']!r}" for s in h["samples"]]
    return lines


def _mark(correct: bool | None) -> str:
    return {True: "right", False: "wrong", None: "  -  "}[correct]


def _short(task: Any) -> str:
    if isinstance(task, Mapping):
        for key in ("question", "text", "prompt"):
            if isinstance(task.get(key), str):
                return str(task[key])[:60]
    return str(task)[:60]


def progress_line(record: Mapping[str, Any]) -> str:
    """One metrics record as a short line: an evaluation's accuracy, or an iteration's training figures."""
    if "evaluation" in record:
        accuracy = record.get("accuracy")
        shown = "n/a" if accuracy is None else f"{accuracy:.3f}"
        return f"held-out {record['evaluation']}: accuracy {shown}, reward {record['reward_mean']:.3f}"
    if "training" in record:
        idle = record.get("worker_idle_fraction")
        return (
            f"{record['training']} training: {record.get('iterations_done')} iterations, "
            f"worker idle fraction {'n/a' if idle is None else f'{idle:.3f}'}"
        )
    accuracy = record.get("train_accuracy")
    shown = "" if accuracy is None else f", train accuracy {accuracy:.3f}"
    if "rollout_seconds" in record and "update_seconds" in record:
        shown += f" ({record['rollout_seconds']:.0f} s rollouts, {record['update_seconds']:.0f} s update)"
    return f"iteration {record.get('iteration')}: train reward {record.get('reward_mean', 0.0):.3f}{shown}"
