"""REINFORCE on the real SmolLM2 weights: one step moves the served model's log-probabilities the right way."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from algorithms.reinforce.policy import PolicyTrainer, Sample, advantages, samples_from_triplets
from lightning_queue.types import Triplet


def test_advantages_subtract_the_group_mean() -> None:
    samples = [Sample([1], [2], r, g) for r, g in [(1.0, "a"), (0.0, "a"), (0.5, "b"), (0.5, "b")]]
    adv = advantages(samples)
    assert adv[0] > 0 > adv[1]
    assert adv[2] == adv[3] == 0.0


def test_equal_rewards_give_no_signal() -> None:
    assert advantages([Sample([1], [2], 1.0, "a"), Sample([1], [3], 1.0, "a")]) == [0.0, 0.0]


def test_samples_need_token_ids_on_both_sides_and_a_reward() -> None:
    triplets = [
        Triplet(prompt={"token_ids": [1, 2]}, response={"token_ids": [3]}, reward=1.0),
        Triplet(prompt={"token_ids": [1, 2]}, response={"token_ids": []}, reward=1.0),
        Triplet(prompt={"token_ids": [1, 2]}, response={"token_ids": [3]}, reward=None),
    ]
    assert samples_from_triplets(triplets, "g") == [Sample([1, 2], [3], 1.0, "g")]


ADMIN_TOKEN = "policy-test-admin-token"


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _greedy(url: str, messages: list[dict[str, str]]) -> tuple[list[int], list[int], list[float]]:
    body = {"model": "default", "messages": messages, "max_tokens": 8, "temperature": 0, "logprobs": True}
    status, reply = _post(f"{url}/chat/completions", body)
    assert status == 200, reply
    choice = reply["choices"][0]
    logprobs = [entry["logprob"] for entry in choice["logprobs"]["content"]]
    return reply["prompt_token_ids"], choice["token_ids"], logprobs


@pytest.mark.model
def test_one_reinforce_step_raises_the_served_logprob_of_the_rewarded_answer(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from lightning_queue.model_server import ModelServer, ServerThread, load_default_model

    torch.manual_seed(0)
    messages = [{"role": "user", "content": "Name a colour."}]
    served = load_default_model()
    with ServerThread(ModelServer(served, threads=1, admin_token=ADMIN_TOKEN, checkpoint_root=tmp_path)) as url:
        prompt_ids, rewarded, before = _greedy(url, messages)
        # A different answer to the same prompt, to be discouraged.
        other = served.tokenizer.encode("I could name many colours, for example a dark shade of green")

        policy = load_default_model()
        trainer = PolicyTrainer(policy.model, learning_rate=2e-5)
        samples = [Sample(prompt_ids, rewarded, 1.0, "q"), Sample(prompt_ids, other, 0.0, "q")]
        weights_before = [p.detach().clone() for p in policy.model.parameters()]
        with torch.no_grad():
            own_before = trainer.sequence_logprobs(samples).tolist()
        metrics = trainer.step(samples)
        with torch.no_grad():
            own_after = trainer.sequence_logprobs(samples).tolist()
        changed = sum(not torch.equal(a, b) for a, b in zip(weights_before, policy.model.parameters(), strict=True))
        assert changed > 0 and metrics["grad_norm"] > 0
        assert own_after[0] > own_before[0] and own_after[1] < own_before[1]

        checkpoint = trainer.save(tmp_path / "step-1")
        status, loaded = _post(f"{url}/load", {"path": str(checkpoint)})
        assert status == 200, loaded
        _, again, after = _greedy(url, messages)
    assert again == rewarded
    assert sum(after) > sum(before)
