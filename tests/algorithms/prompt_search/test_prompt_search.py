"""Prompt search end to end: a stand-in model whose answers depend on the prompt, real Redis, worker processes."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from algorithms.prompt_search import PromptSearch, PromptSearchConfig
from algorithms.prompt_search.edits import CRITIC_SYSTEM, EDITOR_SYSTEM, extract_template, problem_with_edit
from algorithms.prompt_search.tasks import REVIEWS, SEED_TEMPLATE, score, sentiment_agent
from lightning_queue import LLMProxy, PromptTemplate, RedisLightningStore, TraceToMessages, Trainer
from lightning_queue.testing import Reply, StandInModelServer, StandInRequest

GOOD = "Label the review as positive or negative. Answer with one word.\nReview: {text}"
LABEL_OF = dict(REVIEWS)
TRAIN = [{"text": t, "label": label} for t, label in REVIEWS[:6]]
VAL = [{"text": t, "label": label} for t, label in REVIEWS[6:12]]
REPO = Path(__file__).resolve().parents[3]


def stand_in(edits: Iterator[Reply | str]) -> Callable[[StandInRequest], Reply | str]:
    """A model that answers with the bare label only when the prompt asks for one word, else with a sentence."""

    def respond(request: StandInRequest) -> Reply | str:
        messages = request.body["messages"]
        if messages[0]["content"] == CRITIC_SYSTEM:
            return "The answers are sentences; ask for a one-word answer."
        if messages[0]["content"] == EDITOR_SYSTEM:
            return next(edits)
        prompt = messages[-1]["content"]
        label = next(label for text, label in LABEL_OF.items() if text in prompt)
        return label if "one word" in prompt else f"I think this review is {label}, mostly."

    return respond


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisLightningStore]:
    store = RedisLightningStore(redis_url, namespace=f"prompt-search-{uuid.uuid4().hex[:8]}", scan_debounce_seconds=0)
    yield store
    await store.purge()
    await store.aclose()


async def search(
    store: RedisLightningStore, model: StandInModelServer, config: PromptSearchConfig, *, n_workers: int, **kwargs: Any
) -> tuple[PromptSearch, dict[str, Any]]:
    algorithm = PromptSearch(config, **kwargs)
    trainer = Trainer(
        algorithm=algorithm,
        store=store,
        llm_proxy=LLMProxy(model_list=[{"name": "policy", "base_url": model.url, "model": model.model}]),
        adapter=TraceToMessages(),
        initial_resources={"prompt": PromptTemplate(template=SEED_TEMPLATE, engine="f-string")},
        n_workers=n_workers,
        worker_concurrency=4,
        stop_timeout=5,
    )
    result = await trainer.fit_async(sentiment_agent, TRAIN, val_dataset=VAL)
    return algorithm, result


def metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
async def test_search_finds_a_prompt_that_beats_the_seed(store: RedisLightningStore, tmp_path: Path) -> None:
    # Edits alternate: one drops the {text} placeholder, the next is the better prompt.
    edits = itertools.cycle(["Answer with one word.", f"<prompt>{GOOD}</prompt>"])
    config = PromptSearchConfig(
        beam_width=2, branch_factor=1, beam_rounds=2, train_batch_size=3, val_batch_size=4, progress=True,
        metrics_path=str(tmp_path / "metrics.jsonl"),
    )  # fmt: skip
    async with StandInModelServer(responder=stand_in(edits)) as model:
        algorithm, result = await search(store, model, config, n_workers=2)
    assert result["seed"]["val_score"] == pytest.approx(0.5)
    assert result["best"]["val_score"] == pytest.approx(1.0)
    assert algorithm.get_best_prompt().template == GOOD
    # Each candidate is its own resources snapshot, and its rollouts are pinned to it.
    best_version = result["best"]["version"]
    snapshot = await store.get_resources_by_id(best_version)
    assert snapshot is not None
    template = snapshot.resources["prompt"]
    assert isinstance(template, PromptTemplate) and template.template == GOOD
    pinned = {r.resources_id for r in (await store.query_rollouts()).items}
    assert {"prompt-v0", best_version} <= pinned
    records = metrics(tmp_path / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [0, 1, 2]
    first = records[1]
    assert (first["proposed"], first["accepted"], first["rejected"]) == (2, 1, 1)
    assert "drops placeholders ['text']" in first["rejections"][0]["reason"]
    assert first["best_val_score"] == pytest.approx(1.0) and first["best_template"] == GOOD
    # Round two gets the good prompt again: identical to one parent and a duplicate for the other.
    assert (records[2]["accepted"], records[2]["rejected"]) == (0, 2)


@pytest.mark.slow
async def test_unusable_edits_are_rejected_and_the_seed_stays_best(store: RedisLightningStore, tmp_path: Path) -> None:
    bad = [
        Reply(status=500, error="the critic is down"),
        "<prompt>Review: {text}\nGold label: {label}</prompt>",
        "<prompt>Review: {text.__class__}</prompt>",
        "<prompt>Review: {text} {</prompt>",
        "<prompt></prompt>",
        f"<prompt>{SEED_TEMPLATE}</prompt>",
    ]
    config = PromptSearchConfig(
        beam_width=2, branch_factor=3, beam_rounds=1, train_batch_size=2, val_batch_size=3, progress=False,
        metrics_path=str(tmp_path / "metrics.jsonl"),
    )  # fmt: skip
    async with StandInModelServer(responder=stand_in(iter(bad))) as model:
        async with AsyncOpenAI(base_url=model.url, api_key="unused", max_retries=0, timeout=10) as critic:
            algorithm, result = await search(store, model, config, n_workers=1, client=critic)
    assert result["best"]["version"] == "prompt-v0"
    assert algorithm.get_best_prompt().template == SEED_TEMPLATE
    record = metrics(tmp_path / "metrics.jsonl")[1]
    assert (record["proposed"], record["accepted"], record["rejected"]) == (6, 0, 6)
    reasons = " | ".join(sorted(r["reason"] for r in record["rejections"]))
    for expected in (
        "the edit call failed: InternalServerError",
        "adds placeholders ['label']",
        "fields ['text.__class__'] that are not plain names",
        "not a valid f-string template",
        "the edit is empty",
        "identical to its parent",
    ):
        assert expected in reasons
    # The rejected text is kept for diagnosis.
    assert "Review: {text}\nGold label: {label}" in [r["edit"] for r in record["rejections"]]


@pytest.mark.slow
async def test_max_minutes_stops_before_the_first_round(store: RedisLightningStore) -> None:
    config = PromptSearchConfig(beam_rounds=5, val_batch_size=2, max_minutes=0.0, progress=False)
    async with StandInModelServer(responder=stand_in(iter([]))) as model:
        algorithm, result = await search(store, model, config, n_workers=1)
    assert result["stopped"] == "max_minutes"
    assert [r["iteration"] for r in algorithm.history] == [0]
    assert result["rollouts"] == len(VAL)


@pytest.mark.parametrize(
    ("edited", "reason"),
    [
        ("Classify: {text}", None),
        ("Say {text!r} in {text:>5}", "conversions or format specs ({text:>5}, {text!r})"),
        ("Solve: {text:>300000000}", "conversions or format specs ({text:>300000000})"),
        ("{text!s:.1}", "conversions or format specs"),
        ("{text.__class__}", "not plain names"),
        ("Literal {{braces}} are fine: {text}", None),
        ("Classify this.", "drops placeholders ['text']"),
        ("{text} {0}", "not plain names"),
        ("{text[0]}", "not plain names"),
        ("{text:{width}}", "conversions or format specs ({text:{width}})"),
        ("{text", "not a valid f-string template"),
        ("x" * 50 + "{text}", "over the limit of 40"),
    ],
)
def test_an_edit_must_keep_the_placeholders_as_plain_names(edited: str, reason: str | None) -> None:
    problem = problem_with_edit(edited, "Review: {text}", max_chars=40 if reason and "limit" in reason else 4000)
    assert problem is None if reason is None else reason in (problem or "")


def test_an_edit_may_keep_a_format_spec_its_parent_already_used() -> None:
    assert problem_with_edit("Now review: {text!r:.200}", "Review: {text!r:.200}", max_chars=4000) is None
    assert "format specs" in (problem_with_edit("{text!r:.201}", "Review: {text!r:.200}", max_chars=4000) or "")


@pytest.mark.parametrize(
    ("reply", "template"),
    [
        ("Sure!\n<prompt>\nNew: {text}\n</prompt>\nHope it helps.", "New: {text}"),
        ("<PROMPT>cut short {text}", "cut short {text}"),
        ("Here:\n```text\nFenced {text}\n```", "Fenced {text}"),
        ("  Bare {text}  ", "Bare {text}"),
    ],
)
def test_the_template_is_read_from_tags_then_fences_then_the_whole_reply(reply: str, template: str) -> None:
    assert extract_template(reply) == template


@pytest.mark.parametrize(
    ("reply", "reward"),
    [("negative", 1.0), (" Negative. ", 1.0), ("It is negative, not positive.", 0.5), ("positive", 0.0), ("", 0.0)],
)
def test_the_task_pays_for_the_right_label_and_the_bare_format(reply: str, reward: float) -> None:
    assert score(reply, "negative") == reward


def test_help_runs_as_a_module() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "algorithms.prompt_search", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for option in ("--max-iterations", "--max-minutes", "--metrics-jsonl", "--base-url", "--model"):
        assert option in done.stdout


@pytest.mark.slow
async def test_the_command_searches_through_any_openai_compatible_api(redis_url: str, tmp_path: Path) -> None:
    async with StandInModelServer(responder=stand_in(itertools.repeat(f"<prompt>{GOOD}</prompt>"))) as model:
        args = ["--base-url", model.url, "--model", model.model, "--redis-url", redis_url, "--workers", "1"]
        args += ["--max-iterations", "1", "--beam-width", "1", "--branch-factor", "1", "--val-batch-size", "4"]
        args += ["--metrics-jsonl", str(tmp_path / "m.jsonl"), "--no-progress", "--json"]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "algorithms.prompt_search", *args,
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, err.decode()[-3000:]
    result = json.loads(out)
    assert result["seed"]["val_score"] == pytest.approx(0.5)
    assert result["best"]["val_score"] == pytest.approx(1.0) and result["best"]["template"] == GOOD
    assert [r["iteration"] for r in metrics(tmp_path / "m.jsonl")] == [0, 1]


async def test_a_run_without_a_prompt_template_resource_is_refused(store: RedisLightningStore) -> None:
    algorithm = PromptSearch(PromptSearchConfig(progress=False))
    algorithm.set_store(store)
    algorithm.set_initial_resources({})
    with pytest.raises(ValueError, match="needs a PromptTemplate resource"):
        await algorithm.run(train_dataset=TRAIN, val_dataset=VAL)


@pytest.mark.parametrize(
    "template",
    [
        "Solve: {text:>300000000}",  # a width
        "Solve: {text:.300000000}",  # a precision
        "{n:0300000000d}",  # zero padding
        "Solve: {text:{width}}",  # a width passed in
        "{text:>" + "9" * 5000 + "}",  # more digits than int() converts
    ],
)
def test_formatting_a_template_refuses_a_huge_spec_before_building_it(template: str) -> None:
    with pytest.raises(ValueError, match="over the limit"):
        PromptTemplate(template=template).format(text="x", n=1, width=300_000_000)


def test_formatting_a_template_refuses_an_output_over_the_cap() -> None:
    template = PromptTemplate(template="{text}" * 5)
    limit = PromptTemplate.max_formatted_chars
    assert len(template.format(text="x" * (limit // 5))) == limit // 5 * 5
    with pytest.raises(ValueError, match=f"over the limit of {limit}"):
        template.format(text="x" * (limit // 5 + 1))


def test_formatting_a_template_keeps_str_format_semantics() -> None:
    template = PromptTemplate(template="Say {text!r} in {n:>4} {{braces}} {pi:.2f}")
    assert template.format(text="hi", n=7, pi=3.14159) == "Say 'hi' in    7 {braces} 3.14"
