"""The token loop: one forward pass per token over a KV cache, sampled with a per-request generator."""

from __future__ import annotations

import secrets
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    top_logprobs: int = 0


@dataclass(frozen=True)
class SampledToken:
    token_id: int
    # Log-probability under the model itself, before temperature and top_p: what a trainer recomputes.
    logprob: float
    top: tuple[tuple[int, float], ...]


def sample_tokens(
    model: PreTrainedModel, prompt_ids: Sequence[int], params: SamplingParams
) -> Generator[SampledToken, None, None]:
    """Yield sampled tokens forever; the caller decides when to stop."""
    seed = params.seed if params.seed is not None else secrets.randbits(63)
    generator = torch.Generator().manual_seed(seed % 2**64)
    step_input = torch.tensor([list(prompt_ids)], dtype=torch.long)
    cache: object = None
    while True:
        logits, cache = _next_logits(model, step_input, cache)
        token = _pick(logits, params, generator)
        yield token
        step_input = torch.tensor([[token.token_id]], dtype=torch.long)


@torch.inference_mode()
def _next_logits(model: PreTrainedModel, step_input: torch.Tensor, cache: object) -> tuple[torch.Tensor, object]:
    # Scoped per step rather than around the generator: grad mode is per thread, and other
    # requests' steps run on the same thread between ours.
    output = model(input_ids=step_input, cache=cache, use_cache=True, logits_to_keep=1)
    return output.logits[0, -1].float(), output.cache


@torch.inference_mode()
def _pick(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> SampledToken:
    logprobs = torch.log_softmax(logits, dim=-1)
    if params.temperature == 0:
        token_id = int(torch.argmax(logits))
    else:
        scaled = _keep_top_p(logits / params.temperature, params.top_p)
        token_id = int(torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator))
    top: tuple[tuple[int, float], ...] = ()
    if params.top_logprobs > 0:
        values, indices = torch.topk(logprobs, params.top_logprobs)
        top = tuple(zip(indices.tolist(), values.tolist(), strict=True))
    return SampledToken(token_id=token_id, logprob=float(logprobs[token_id]), top=top)


def _keep_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask every token outside the smallest set whose probability reaches `top_p`."""
    if top_p >= 1.0:
        return logits
    ordered, order = torch.sort(logits, descending=True)
    probs = torch.softmax(ordered, dim=-1)
    # A token goes once the tokens before it already reach top_p, so the most likely one always stays.
    ordered[torch.cumsum(probs, dim=-1) - probs >= top_p] = float("-inf")
    return torch.empty_like(logits).scatter_(0, order, ordered)
