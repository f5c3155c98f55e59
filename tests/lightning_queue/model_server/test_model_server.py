"""The local model server: OpenAI-shaped answers with token ids, reproducible sampling, hot weight loads.

Tests marked `model` run the real SmolLM2-135M-Instruct weights (converted once, about 20 s; cached after).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import torch
from click.testing import CliRunner
from openai.types.chat import ChatCompletionMessageParam

from lightning_queue.model_server import LoadedModel, ModelServer, ServerThread, load_default_model
from lightning_queue.model_server.cli import serve_model_command
from lightning_queue.model_server.detokenize import IncrementalText
from lightning_queue.model_server.protocol import ApiError, ChatRequest, CompletionRequest, parse_request
from lightning_queue.model_server.sampling import _keep_top_p
from lightning_queue.model_server.weights import CheckpointError

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
ADMIN_TOKEN = "model-server-test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# --- without the model -------------------------------------------------------------------------------


class LetterTokenizer:
    """Token i decodes to LETTERS[i]; enough to drive IncrementalText without real weights."""

    LETTERS = ("a", "b", "c", " ", "x", "\ufffd")

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        text = "".join(self.LETTERS[i] for i in ids)
        # Like a byte-level tokenizer, a "half character" (5) followed by anything becomes whole.
        return text.replace("\ufffdx", "é")


def feed(text: IncrementalText, ids: list[int]) -> list[str]:
    return [text.add(token) for token in ids]


def test_text_that_may_start_a_stop_string_is_held_back_until_it_cannot() -> None:
    text = IncrementalText(LetterTokenizer(), stop=["bc"])  # type: ignore[arg-type]
    assert feed(text, [0, 1, 0]) == ["a", "", "ba"]
    assert not text.stopped


def test_text_is_cut_before_the_stop_string() -> None:
    text = IncrementalText(LetterTokenizer(), stop=["bc"])  # type: ignore[arg-type]
    assert feed(text, [0, 1, 2]) == ["a", "", ""]
    assert text.stopped and text.text == "a"
    assert text.flush() == ""


def test_incomplete_character_waits_for_the_next_token() -> None:
    text = IncrementalText(LetterTokenizer())  # type: ignore[arg-type]
    assert feed(text, [0, 5, 4]) == ["a", "", "é"]


def test_flush_releases_held_back_text_when_generation_ends() -> None:
    text = IncrementalText(LetterTokenizer(), stop=["a b"])  # type: ignore[arg-type]
    assert feed(text, [0, 3]) == ["", ""]
    assert text.flush() == "a "


def test_top_p_keeps_the_smallest_set_reaching_the_mass() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    kept = torch.isfinite(_keep_top_p(logits, 0.7)).tolist()
    assert kept == [True, True, False, False]
    assert torch.isfinite(_keep_top_p(logits, 0.01)).tolist() == [True, False, False, False]


@pytest.mark.parametrize(
    ("kind", "body", "named"),
    [
        (ChatRequest, {}, "'messages' is required"),
        (ChatRequest, {"messages": "hi"}, "(got 'hi')"),
        (ChatRequest, {"messages": QUESTION, "temperature": "hot"}, "'temperature'"),
        (ChatRequest, {"messages": QUESTION, "max_tokens": True}, "(got True)"),
        (ChatRequest, {"messages": [{"role": "wizard", "content": "x"}]}, "(got 'wizard')"),
        (ChatRequest, {"messages": QUESTION, "n": 3}, "n=3"),
        (ChatRequest, {"messages": QUESTION, "stop": ["x", ""]}, "must not be empty (got ['x', ''])"),
        (
            ChatRequest,
            {"messages": QUESTION, "tools": [{"type": "function"}]},
            "'tools' is not supported by this server (got [{'type': 'function'}])",
        ),
        (CompletionRequest, {"prompt": {"text": "x"}}, "'prompt'"),
        (CompletionRequest, {"prompt": "x", "logprobs": 99}, "(got 99)"),
    ],
)
def test_invalid_request_is_refused_naming_the_field_and_value(
    kind: type[ChatRequest | CompletionRequest], body: dict[str, Any], named: str
) -> None:
    with pytest.raises(ApiError) as refused:
        parse_request(kind, body)
    assert refused.value.status == 400
    assert named in refused.value.message


def test_server_refuses_to_start_without_a_checkpoint(tmp_path: Path) -> None:
    server = ModelServer(tmp_path, threads=1)
    with pytest.raises(CheckpointError, match=r"has no config\.json"):
        ServerThread(server).start()
    with pytest.raises(RuntimeError, match="before start"):
        _ = server.url


def test_cli_command_documents_its_options() -> None:
    result = CliRunner().invoke(serve_model_command, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--model",
        "--host",
        "--port",
        "--threads",
        "--log-level",
        "--checkpoint-root",
        "--admin-token-file",
    ):
        assert option in result.output


# --- with SmolLM2 ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> LoadedModel:
    return load_default_model()


@pytest.fixture(scope="module")
def base_url(smollm2: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # One torch thread (here and below): steady speed on a shared 2-core machine, where two stall on each other.
    root = tmp_path_factory.mktemp("checkpoints")
    with ServerThread(ModelServer(smollm2, threads=1, admin_token=ADMIN_TOKEN, checkpoint_root=root)) as url:
        yield url


async def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=ADMIN) as response:
        return response.status, await response.json()


async def post_stream(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream's chunks, checking that it ends with [DONE]."""
    chunks: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.post(url, json={**body, "stream": True}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [line.decode().strip() async for line in response.content if line.strip()]
    assert events[-1] == "data: [DONE]"
    for event in events[:-1]:
        assert event.startswith("data: ")
        chunks.append(json.loads(event.removeprefix("data: ")))
    return chunks


def greedy_chat(**extra: Any) -> dict[str, Any]:
    return {"messages": QUESTION, "temperature": 0, "max_tokens": 8, **extra}


@pytest.mark.model
async def test_greedy_chat_is_deterministic(base_url: str) -> None:
    status, first = await post(f"{base_url}/chat/completions", greedy_chat())
    _, second = await post(f"{base_url}/chat/completions", greedy_chat())
    assert status == 200
    assert first["id"].startswith("chatcmpl-") and first["id"] != second["id"]
    assert first["choices"][0]["token_ids"] == second["choices"][0]["token_ids"]
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]
    assert "Paris" in first["choices"][0]["message"]["content"]


@pytest.mark.model
async def test_prompt_token_ids_are_the_templated_prompt(base_url: str, smollm2: LoadedModel) -> None:
    _, body = await post(f"{base_url}/chat/completions", greedy_chat(max_tokens=2))
    expected = smollm2.tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_dict=False)
    assert body["prompt_token_ids"] == expected
    assert body["usage"] == {
        "prompt_tokens": len(expected),
        "completion_tokens": len(body["choices"][0]["token_ids"]),
        "total_tokens": len(expected) + len(body["choices"][0]["token_ids"]),
    }


@pytest.mark.model
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("chat/completions", {"messages": QUESTION}),
        ("completions", {"prompt": "The three primary colours are"}),
    ],
)
async def test_same_seed_gives_the_same_tokens_streamed_or_not(base_url: str, path: str, body: dict[str, Any]) -> None:
    request = {**body, "temperature": 1.0, "top_p": 0.95, "seed": 1234, "max_tokens": 10}
    _, whole = await post(f"{base_url}/{path}", request)
    chunks = await post_stream(f"{base_url}/{path}", request)
    assert chunks[0]["prompt_token_ids"] == whole["prompt_token_ids"]
    streamed_ids = [token for chunk in chunks for token in chunk["choices"][0]["token_ids"]]
    assert streamed_ids == whole["choices"][0]["token_ids"]
    choice = whole["choices"][0]
    if path == "completions":
        assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == choice["text"]
    else:
        assert (
            "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks) == choice["message"]["content"]
        )
    assert chunks[-1]["choices"][0]["finish_reason"] == choice["finish_reason"]


@pytest.mark.model
async def test_logprobs_are_reported_for_each_sampled_token(base_url: str) -> None:
    _, chat = await post(f"{base_url}/chat/completions", greedy_chat(logprobs=True, top_logprobs=3))
    entries = chat["choices"][0]["logprobs"]["content"]
    assert len(entries) == len(chat["choices"][0]["token_ids"])
    for entry in entries:
        assert entry["logprob"] <= 0
        assert len(entry["top_logprobs"]) == 3
        # Greedy picks the most likely token, so it leads its own alternatives.
        assert entry["logprob"] == pytest.approx(entry["top_logprobs"][0]["logprob"])

    _, legacy = await post(f"{base_url}/completions", {"prompt": "Hello", "max_tokens": 4, "logprobs": 2, "seed": 1})
    logprobs = legacy["choices"][0]["logprobs"]
    assert len(logprobs["token_logprobs"]) == len(legacy["choices"][0]["token_ids"]) == 4
    assert all(value <= 0 for value in logprobs["token_logprobs"])
    assert all(len(alternatives) <= 2 for alternatives in logprobs["top_logprobs"])


@pytest.mark.model
async def test_stop_string_ends_the_completion_before_it(base_url: str) -> None:
    request = {"prompt": "1, 2, 3, 4,", "temperature": 0, "max_tokens": 12, "stop": [" 7"]}
    _, body = await post(f"{base_url}/completions", request)
    choice = body["choices"][0]
    assert choice["text"] == " 5, 6,"
    assert choice["finish_reason"] == "stop"


@pytest.mark.model
@pytest.mark.parametrize(
    ("path", "raw", "status", "named"),
    [
        ("chat/completions", b"{not json", 400, "not valid JSON"),
        ("chat/completions", b"[1, 2]", 400, "got list"),
        ("chat/completions", json.dumps({"max_tokens": 3}).encode(), 400, "'messages' is required"),
        ("chat/completions", json.dumps({"messages": QUESTION, "model": "gpt-9"}).encode(), 404, "'gpt-9'"),
        ("chat/completions", json.dumps({"messages": QUESTION, "n": 2}).encode(), 400, "n=2"),
        ("chat/completions", json.dumps({"messages": QUESTION, "max_tokens": 10**6}).encode(), 400, "1000000"),
        ("chat/completions", json.dumps({"messages": QUESTION, "top_logprobs": 2}).encode(), 400, "logprobs=true"),
        ("completions", json.dumps({"prompt": [1, 10**9]}).encode(), 400, "1000000000"),
        ("completions", json.dumps({"prompt": ""}).encode(), 400, "empty"),
        ("load", json.dumps({"path": 7}).encode(), 400, "(got 7)"),
        ("nowhere", b"{}", 404, "/v1/nowhere"),
    ],
)
async def test_bad_request_gets_a_json_error_and_the_server_keeps_serving(
    base_url: str, path: str, raw: bytes, status: int, named: str
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base_url}/{path}", data=raw, headers=ADMIN) as response:
            assert response.status == status
            error = (await response.json())["error"]
        assert named in error["message"]
        assert {"message", "type", "code"} <= error.keys()
        async with session.get(base_url.removesuffix("/v1") + "/health") as health:
            assert (await health.json())["status"] == "ok"


@pytest.mark.model
async def test_models_lists_the_served_name_and_its_alias_is_accepted(base_url: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/models") as response:
        listing = await response.json()
    assert [model["id"] for model in listing["data"]] == ["SmolLM2-135M-Instruct"]
    status, body = await post(f"{base_url}/chat/completions", greedy_chat(model="default", max_tokens=1))
    assert status == 200 and body["model"] == "SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def flattened_checkpoint(smollm2: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 with its final norm halved: same argmax, flatter distribution. Model files only, as a
    trainer saves them, so the server must keep its tokenizer."""
    model = copy.deepcopy(smollm2.model)
    with torch.no_grad():
        model.model.norm.weight.mul_(0.5)
    path = tmp_path_factory.mktemp("flattened")
    model.save_pretrained(path)
    return path


@pytest.mark.model
async def test_load_swaps_weights_without_a_restart(smollm2: LoadedModel, flattened_checkpoint: Path) -> None:
    root = flattened_checkpoint.parent
    async with ModelServer(smollm2, threads=1, admin_token=ADMIN_TOKEN, checkpoint_root=root) as server:
        request = greedy_chat(max_tokens=4, logprobs=True)
        _, before = await post(f"{server.url}/chat/completions", request)

        status, loaded = await post(f"{server.url}/load", {"path": str(flattened_checkpoint)})
        assert status == 200
        assert loaded["version"] == 1 and loaded["model"] == "SmolLM2-135M-Instruct"

        _, after = await post(f"{server.url}/chat/completions", request)
        assert after["system_fingerprint"] == "weights-v1"
        old = [entry["logprob"] for entry in before["choices"][0]["logprobs"]["content"]]
        new = [entry["logprob"] for entry in after["choices"][0]["logprobs"]["content"]]
        assert new != pytest.approx(old, abs=1e-3)


@pytest.mark.model
async def test_load_of_a_bad_path_is_refused_and_the_old_weights_keep_serving(
    smollm2: LoadedModel, tmp_path: Path
) -> None:
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_text((smollm2.path / "config.json").read_text())
    with (smollm2.path / "model.safetensors").open("rb") as weights:
        (truncated / "model.safetensors").write_bytes(weights.read(1000))
    async with ModelServer(smollm2, threads=1, admin_token=ADMIN_TOKEN, checkpoint_root=tmp_path) as server:
        for bad in (tmp_path / "missing", tmp_path, truncated):
            status, body = await post(f"{server.url}/load", {"path": str(bad)})
            assert status == 400
            assert str(bad) in body["error"]["message"]
        status, body = await post(f"{server.url}/chat/completions", greedy_chat(max_tokens=2))
        assert status == 200 and body["system_fingerprint"] == "weights-v0"


@pytest.mark.model
async def test_request_in_flight_during_a_load_finishes_on_the_old_weights(
    smollm2: LoadedModel, flattened_checkpoint: Path
) -> None:
    async with ModelServer(smollm2, threads=1) as server:
        request = greedy_chat(max_tokens=12, logprobs=True)
        _, reference = await post(f"{server.url}/chat/completions", request)
        chunks: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{server.url}/chat/completions", json={**request, "stream": True}) as stream:
                async for line in stream.content:
                    if line.startswith(b"data: {"):
                        chunks.append(json.loads(line.removeprefix(b"data: ")))
                    if len(chunks) == 2 and server.weights.version == 0:
                        # The event loop keeps serving while a generation runs; the load overlaps the stream.
                        await server.load(flattened_checkpoint)
        assert server.weights.version == 1
        streamed = [
            entry["logprob"] for chunk in chunks for entry in (chunk["choices"][0]["logprobs"] or {}).get("content", [])
        ]
        expected = [entry["logprob"] for entry in reference["choices"][0]["logprobs"]["content"]]
        assert streamed == pytest.approx(expected)
        assert {chunk["system_fingerprint"] for chunk in chunks} == {"weights-v0"}


@pytest.mark.model
def test_official_openai_client_chats_and_streams(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="unused")
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION[0]["content"]}]
    completion = client.chat.completions.create(
        model="SmolLM2-135M-Instruct", messages=messages, temperature=0, max_tokens=6
    )
    text = completion.choices[0].message.content
    assert text
    assert completion.usage is not None and completion.usage.completion_tokens == 6
    assert completion.choices[0].model_extra is not None and len(completion.choices[0].model_extra["token_ids"]) == 6

    stream = client.chat.completions.create(
        model="SmolLM2-135M-Instruct",
        messages=messages,
        temperature=0,
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
