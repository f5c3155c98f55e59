"""The REINFORCE loop end to end on a tiny model, its reloaders, and the demo task's reward."""

from __future__ import annotations

import collections
import json
import re
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from algorithms.reinforce import Reinforce, ReinforceConfig
from algorithms.reloaders import LocalServerReloader, VllmReloader
from algorithms.tasks import make_tasks
from lightning_queue import LLMProxy, LlmProxyTraceToTriplet, RedisLightningStore, Trainer
from lightning_queue.testing import StandInModelServer
from lightning_queue.testing.server import StandInRequest


def test_tasks_are_reproducible_and_carry_their_answer() -> None:
    assert make_tasks(5, seed=3) == make_tasks(5, seed=3)
    for task in make_tasks(20, seed=4):
        a, b = map(int, re.findall(r"\d+", task["question"]))
        assert task["answer"] == a + b


class RecordingReloader:
    """A test double for the inference server: remembers which checkpoints it was asked to load."""

    def __init__(self) -> None:
        self.loaded: list[Path] = []

    async def load(self, checkpoint: Path) -> None:
        assert (checkpoint / "config.json").exists()
        self.loaded.append(checkpoint)


def tiny_model_dir(folder: Path) -> Path:
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    # The stand-in's fake token ids span SmolLM2's vocabulary size; everything else is tiny.
    config = LlamaConfig(
        vocab_size=49_152, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=256,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def alternating_answers() -> Any:
    """Answer each question alternately right ("12") and wrong (the first operand), counted per question
    and temperature: the two samples of a task always differ, whatever order the calls arrive in."""
    calls: collections.Counter[tuple[str, Any]] = collections.Counter()

    def respond(request: StandInRequest) -> str:
        question = request.body["messages"][-1]["content"]
        key = (question, request.body.get("temperature"))
        calls[key] += 1
        a, b = map(int, re.findall(r"\d+", question))
        return str(a + b) if calls[key] % 2 == 1 else str(a)

    return respond


@pytest.mark.slow
async def test_reinforce_loop_updates_saves_and_reloads_each_iteration(redis_url: str, tmp_path: Path) -> None:
    model_dir = tiny_model_dir(tmp_path / "tiny")
    store = RedisLightningStore(redis_url, namespace=f"rf-{uuid.uuid4().hex[:8]}", scan_debounce_seconds=0)
    reloader = RecordingReloader()
    config = ReinforceConfig(
        model_dir=str(model_dir), iterations=2, tasks_per_iteration=2, samples_per_task=2,
        checkpoint_dir=str(tmp_path / "ckpt"), metrics_path=str(tmp_path / "metrics.jsonl"), rollout_timeout=60,
        checker="algorithms.tasks:check",
    )  # fmt: skip
    try:
        async with StandInModelServer(responder=alternating_answers(), token_ids="always") as model:
            proxy = LLMProxy(model_list=[{"name": "policy", "base_url": model.url, "model": model.model}])
            trainer = Trainer(
                algorithm=Reinforce(config, reloader), store=store, llm_proxy=proxy,
                adapter=LlmProxyTraceToTriplet(), n_workers=1, worker_concurrency=4, stop_timeout=5,
            )  # fmt: skip
            result = await trainer.fit_async(
                "algorithms.tasks:arithmetic_agent", make_tasks(4, seed=1), val_dataset=make_tasks(2, seed=2)
            )
            requests = list(model.requests)
    finally:
        await store.purge()
        await store.aclose()
    assert [r["iteration"] for r in result["iterations"]] == [1, 2]
    assert all(r["samples"] == 4 and r["succeeded"] == 4 for r in result["iterations"])
    assert all(r["grad_norm"] > 0 for r in result["iterations"])
    assert reloader.loaded == [tmp_path / "ckpt" / "iter-1", tmp_path / "ckpt" / "iter-2"]
    assert result["before"]["n"] == 2 and result["after"]["n"] == 2
    # Each task's samples are one right, one wrong; each held-out question is answered right the first
    # time (before) and wrong the second (after): the checker, reading the replies from the spans, sees it.
    assert all(r["train_accuracy"] == 0.5 for r in result["iterations"])
    assert (result["before"]["accuracy"], result["after"]["accuracy"]) == (1.0, 0.0)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line.get("evaluation") or line.get("iteration") or line.get("training") for line in lines] == [
        "before", 1, 2, "sync", "after"
    ]  # fmt: skip
    # The summary: what was consumed, and how idle the 4 worker slots were over the training window.
    summary = lines[3]
    assert (summary["iterations_done"], summary["rollouts_consumed"], summary["samples_consumed"]) == (2, 8, 8)
    assert summary["worker_slots"] == 4 and summary["attempts"] == 8 and 0 < summary["worker_idle_fraction"] < 1
    assert result["training"] == {k: v for k, v in summary.items() if k not in ("time", "seed", "training")}
    before, after = lines[0], lines[-1]
    assert before["accuracy"] == 1.0 and before["reward_mean"] == 1.0 and before["parts"]["correct"] == 1.0
    assert {s["correct"] for s in before["samples"]} == {True} and {s["correct"] for s in after["samples"]} == {False}
    assert all(len(line["train_replies"]) == 3 and "train_parts" in line for line in lines[1:3])
    # Training rollouts sample at the training temperature, evaluation ones at the evaluation one.
    temperatures = sorted({r.body.get("temperature") for r in requests})  # type: ignore[type-var]
    assert temperatures == [config.eval_temperature, config.temperature]


FAKE_VLLM = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    args = sys.argv[1:]
    assert args[0] == "serve", args
    port = int(args[args.index("--port") + 1])
    with open(args[args.index("--record") + 1], "a") as out:
        out.write(args[1] + "\\n")
    app = web.Application()
    app.router.add_get("/health", lambda request: web.Response(text="ok"))
    web.run_app(app, host="127.0.0.1", port=port, print=None)
    """
)


async def test_vllm_reloader_restarts_the_server_on_each_checkpoint(tmp_path: Path) -> None:
    import psutil

    script, record = tmp_path / "fake_vllm.py", tmp_path / "served.txt"
    script.write_text(FAKE_VLLM)
    from algorithms.serving import free_port

    reloader = VllmReloader(
        port=free_port(), executable=(sys.executable, str(script)), extra_args=("--record", str(record)),
        health_timeout=30,
    )  # fmt: skip
    try:
        await reloader.load(tmp_path / "ckpt-1")
        first = reloader.process
        assert first is not None
        assert "--served-model-name" in reloader.command(tmp_path / "x")
        await reloader.load(tmp_path / "ckpt-2")
        assert first.poll() is not None and reloader.process is not None and reloader.process.poll() is None
        assert record.read_text().split() == [str(tmp_path / "ckpt-1"), str(tmp_path / "ckpt-2")]
    finally:
        last = reloader.process
        await reloader.stop()
    assert last is not None and (last.poll() is not None or not psutil.pid_exists(last.pid))


async def test_vllm_reloader_reports_a_server_that_dies_on_start(tmp_path: Path) -> None:
    from algorithms.serving import free_port

    reloader = VllmReloader(
        port=free_port(), executable=(sys.executable, "-c", "raise SystemExit(3)"), health_timeout=30
    )
    with pytest.raises(RuntimeError, match="exited with code 3"):
        await reloader.load(tmp_path)


async def test_local_reloader_surfaces_a_refused_checkpoint(tmp_path: Path) -> None:
    async with StandInModelServer() as model:  # it has no /v1/load: the refusal path
        with pytest.raises(RuntimeError, match="refused checkpoint"):
            await LocalServerReloader(model.url).load(tmp_path)


@pytest.mark.slow
async def test_reinforce_publishes_an_external_proxy_when_none_is_wired(redis_url: str, tmp_path: Path) -> None:
    model_dir = tiny_model_dir(tmp_path / "tiny")
    store = RedisLightningStore(redis_url, namespace=f"rf-ext-{uuid.uuid4().hex[:8]}", scan_debounce_seconds=0)
    try:
        async with StandInModelServer(responder=alternating_answers(), token_ids="always") as model:
            # A proxy run by someone else (a Procfile's `lq proxy`), recording into the same namespace.
            external = LLMProxy(
                model_list=[{"name": "policy", "base_url": model.url, "model": model.model}], store=store
            )
            await external.start()
            try:
                config = ReinforceConfig(
                    model_dir=str(model_dir), iterations=1, tasks_per_iteration=2, samples_per_task=2,
                    checkpoint_dir=str(tmp_path / "ckpt"), proxy_url=external.as_resource().endpoint,
                )  # fmt: skip
                trainer = Trainer(algorithm=Reinforce(config, RecordingReloader()), store=store, n_workers=1)
                result = await trainer.fit_async("algorithms.tasks:arithmetic_agent", make_tasks(2, seed=1))
            finally:
                await external.stop()
    finally:
        await store.purge()
        await store.aclose()
    assert result["iterations"][0]["samples"] == 4


async def test_reinforce_without_any_proxy_is_a_clear_error(tmp_path: Path) -> None:
    algorithm = Reinforce(ReinforceConfig(checkpoint_dir=str(tmp_path)), RecordingReloader())
    algorithm.set_store(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs an LLM proxy"):
        await algorithm.run(train_dataset=make_tasks(1, seed=1))


def test_reinforce_cli_help_and_argument_errors(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from algorithms.reinforce.cli import reinforce_command

    assert CliRunner().invoke(reinforce_command, ["--help"]).exit_code == 0
    custom = CliRunner().invoke(reinforce_command, ["--agent", "my.mod:agent"])
    assert custom.exit_code == 2 and "--train-tasks" in custom.output
    external = CliRunner().invoke(reinforce_command, ["--upstream", "external"])
    assert external.exit_code == 2 and "--model-server-url" in external.output
    shared = CliRunner().invoke(
        reinforce_command, ["--seeds", "2", "--parallel", "2", "--proxy-url", "http://127.0.0.1:9/"]
    )
    assert shared.exit_code == 2 and "--parallel > 1 needs a model server and a proxy per seed" in shared.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1+1"}\nnot json\n')
    broken = CliRunner().invoke(reinforce_command, ["--train-tasks", str(bad), "--val-tasks", str(bad)])
    assert broken.exit_code == 2 and "line 2" in broken.output
