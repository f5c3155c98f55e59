"""The policy-gradient step of REINFORCE on a Hugging Face causal LM, from triplets' token ids."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_queue.types import Triplet


@dataclass(frozen=True)
class Sample:
    """One trainable LLM call: prompt ids, sampled response ids, its reward and its group (the task)."""

    prompt_ids: list[int]
    response_ids: list[int]
    reward: float
    group: str


def samples_from_triplets(triplets: Sequence[Triplet], group: str) -> list[Sample]:
    """Keep the calls that have token ids on both sides and a reward."""
    out = []
    for t in triplets:
        prompt = (t.prompt or {}).get("token_ids") if isinstance(t.prompt, dict) else None
        response = (t.response or {}).get("token_ids") if isinstance(t.response, dict) else None
        if prompt and response and t.reward is not None:
            out.append(Sample(list(prompt), list(response), float(t.reward), group))
    return out


def advantages(samples: Sequence[Sample]) -> list[float]:
    """Reward minus the mean of its group (the baseline), scaled by the batch's spread.

    Groups are the samples of one task, so the baseline removes how hard the task is and only the
    difference between answers to it is reinforced.
    """
    by_group: dict[str, list[float]] = {}
    for s in samples:
        by_group.setdefault(s.group, []).append(s.reward)
    means = {g: statistics.fmean(r) for g, r in by_group.items()}
    raw = [s.reward - means[s.group] for s in samples]
    spread = statistics.pstdev(raw) if len(raw) > 1 else 0.0
    return [a / (spread + 1e-6) if spread > 0 else 0.0 for a in raw]


class PolicyTrainer:
    """Holds the trainable model and its optimizer; `step` applies one REINFORCE update."""

    def __init__(
        self,
        model: Any,
        *,
        learning_rate: float = 2e-5,
        max_grad_norm: float = 1.0,
        micro_batch: int = 8,
        device: str = "cpu",
    ) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.model.train()
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=0.0
        )
        self.max_grad_norm = max_grad_norm
        self.micro_batch = micro_batch

    def sequence_logprobs(self, samples: Sequence[Sample]) -> Any:
        """Mean log-probability per response token of each sample under the current weights (a tensor)."""
        torch = self.torch
        rows = [s.prompt_ids + s.response_ids for s in samples]
        width = max(len(r) for r in rows)
        pad = 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(rows), width), dtype=torch.float32, device=self.device)
        attention = torch.zeros((len(rows), width), dtype=torch.long, device=self.device)
        for i, (row, s) in enumerate(zip(rows, samples, strict=True)):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention[i, : len(row)] = 1
            # Position t predicts token t+1: response tokens are predicted from len(prompt)-1 on.
            mask[i, len(s.prompt_ids) - 1 : len(row) - 1] = 1.0
        logits = self.model(input_ids=ids, attention_mask=attention).logits[:, :-1, :]
        targets = ids[:, 1:]
        token_logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        mask = mask[:, :-1]
        return (token_logprobs * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def step(self, samples: Sequence[Sample]) -> dict[str, float]:
        """One update: maximise advantage-weighted mean token log-probability; returns metrics."""
        torch = self.torch
        if not samples:
            raise ValueError("a REINFORCE step needs at least one sample with token ids and a reward")
        adv = advantages(samples)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total_loss = 0.0
        for start in range(0, len(samples), self.micro_batch):
            chunk = samples[start : start + self.micro_batch]
            weights = torch.tensor(adv[start : start + self.micro_batch], device=self.device)
            logprobs = self.sequence_logprobs(chunk)
            loss = -(weights * logprobs).sum() / len(samples)
            loss.backward()
            total_loss += float(loss.detach())
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm))
        self.optimizer.step()
        rewards = [s.reward for s in samples]
        return {
            "loss": total_loss,
            "grad_norm": grad_norm if math.isfinite(grad_norm) else -1.0,
            "reward_mean": statistics.fmean(rewards),
            "reward_std": statistics.pstdev(rewards) if len(rewards) > 1 else 0.0,
            "samples": float(len(samples)),
        }

    def save(self, directory: Path, tokenizer: Any = None) -> Path:
        """Write the weights (safetensors) where a model server can load them."""
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        return directory
