"""From a parsed request to prompt token ids and a GenerationRequest, checked against the served model."""

from __future__ import annotations

from typing import TypeVar

from .engine import GenerationRequest, Weights
from .protocol import ApiError, ChatRequest, CompletionRequest
from .sampling import SamplingParams

# The legacy completions API stops after 16 tokens unless told otherwise; chat runs to the context end.
COMPLETION_DEFAULT_MAX_TOKENS = 16

_T = TypeVar("_T")


def chat_generation(weights: Weights, chat: ChatRequest) -> GenerationRequest:
    if chat.top_logprobs and not chat.logprobs:
        raise ApiError(
            400, f"top_logprobs={chat.top_logprobs} needs logprobs=true", code="invalid_value", param="top_logprobs"
        )
    loaded = weights.loaded
    messages = [{"role": message.role, "content": message.text()} for message in chat.messages]
    try:
        templated = loaded.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )
    except ValueError as error:
        # transformers raises ValueError for a tokenizer without a chat template.
        raise ApiError(
            400, f"cannot apply the chat template of {loaded.name!r}: {error}", code="invalid_value"
        ) from error
    sampling = SamplingParams(
        temperature=_or(chat.temperature, 1.0),
        top_p=_or(chat.top_p, 1.0),
        seed=chat.seed,
        top_logprobs=_or(chat.top_logprobs, 0),
    )
    limit_field = "max_completion_tokens" if chat.max_completion_tokens is not None else "max_tokens"
    return _checked(
        weights,
        _token_ids(templated),
        chat.token_limit(),
        limit_field,
        sampling,
        chat.stop_strings(),
        bool(chat.logprobs),
    )


def completion_generation(weights: Weights, completion: CompletionRequest) -> GenerationRequest:
    tokenizer = weights.loaded.tokenizer
    if isinstance(completion.prompt, str):
        prompt_ids = list(tokenizer.encode(completion.prompt))
    else:
        prompt_ids = completion.prompt
        vocabulary = len(tokenizer)
        outside = [token for token in prompt_ids if not 0 <= token < vocabulary]
        if outside:
            raise ApiError(
                400,
                f"prompt token ids {outside[:5]} are outside the vocabulary of {vocabulary} tokens",
                code="invalid_value",
                param="prompt",
            )
    sampling = SamplingParams(
        temperature=_or(completion.temperature, 1.0),
        top_p=_or(completion.top_p, 1.0),
        seed=completion.seed,
        top_logprobs=_or(completion.logprobs, 0),
    )
    return _checked(
        weights,
        prompt_ids,
        _or(completion.max_tokens, COMPLETION_DEFAULT_MAX_TOKENS),
        "max_tokens",
        sampling,
        completion.stop_strings(),
        completion.logprobs is not None,
    )


def _checked(
    weights: Weights,
    prompt_ids: list[int],
    limit: int | None,
    limit_field: str,
    sampling: SamplingParams,
    stop: tuple[str, ...],
    logprobs: bool,
) -> GenerationRequest:
    """The request, once the prompt and the token limit fit the model's context."""
    context = weights.loaded.context_length
    if not prompt_ids:
        raise ApiError(400, "the prompt is empty: it tokenizes to no tokens", code="invalid_value", param="prompt")
    room = context - len(prompt_ids)
    if room < 1:
        raise ApiError(
            400,
            f"the prompt has {len(prompt_ids)} tokens; {weights.loaded.name!r} reads at most {context - 1}"
            " so it can still generate one",
            code="context_length_exceeded",
        )
    if limit is not None and limit > room:
        raise ApiError(
            400,
            f"{limit_field}={limit} does not fit: the prompt has {len(prompt_ids)} tokens and the context"
            f" holds {context}, leaving room for {room}",
            code="context_length_exceeded",
            param=limit_field,
        )
    return GenerationRequest(
        prompt_ids=prompt_ids,
        max_tokens=limit if limit is not None else room,
        sampling=sampling,
        stop=stop,
        logprobs=logprobs,
    )


def _token_ids(templated: object) -> list[int]:
    if not isinstance(templated, list) or not all(isinstance(token, int) for token in templated):
        raise TypeError(f"apply_chat_template returned {type(templated).__name__}, expected a list of token ids")
    return templated


def _or(value: _T | None, default: _T) -> _T:
    return default if value is None else value
