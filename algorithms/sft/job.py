"""The fine-tuning step of SFT as an rq job: JSON arguments in, a new checkpoint directory and metrics out.

`lq trainer` runs it in a forked work horse, so torch is imported there and every byte of model and
optimizer memory (GPU memory too) goes back to the system when the job ends. Enqueue it by its path,
`algorithms.sft.job.fine_tune`, with keyword arguments only; every argument is a path, a number or a
list of ints, so the job travels through Redis as JSON.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

JOB_FUNCTION = "algorithms.sft.job.fine_tune"

# What the model server and `load_model` look for to take a tokenizer from a checkpoint directory.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def check_samples(samples: Sequence[Any]) -> list[tuple[list[int], list[int]]]:
    """The (prompt ids, response ids) of every sample, or a ValueError naming the first bad one."""
    if not isinstance(samples, list | tuple) or not samples:
        raise ValueError(f"samples must be a non-empty list of {{prompt_ids, response_ids}}, got {samples!r:.200}")
    pairs = []
    for index, sample in enumerate(samples):
        if not isinstance(sample, dict):
            raise ValueError(f"sample {index} must be an object with prompt_ids and response_ids, got {sample!r:.200}")
        ids = []
        for field in ("prompt_ids", "response_ids"):
            value = sample.get(field)
            if not isinstance(value, list) or not value or not all(_is_token_id(t) for t in value):
                raise ValueError(f"sample {index}: {field} must be a non-empty list of token ids, got {value!r:.200}")
            ids.append(value)
        pairs.append((ids[0], ids[1]))
    return pairs


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def truncate(prompt: list[int], response: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Fit a sample into `max_length` tokens: drop the oldest prompt tokens first, then the response's tail.

    At least one prompt token stays, because the first token of a row is never a prediction target.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length!r}")
    if len(prompt) + len(response) <= max_length:
        return prompt, response
    if len(response) >= max_length:
        return prompt[-1:], response[: max_length - 1]
    return prompt[len(prompt) + len(response) - max_length :], response


def fine_tune(
    *,
    base_model: str,
    output_dir: str,
    samples: list[dict[str, Any]],
    learning_rate: float = 1e-5,
    epochs: int = 1,
    batch_size: int = 4,
    max_length: int = 1024,
    max_steps: int | None = None,
    max_grad_norm: float = 1.0,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
) -> dict[str, Any]:
    """Fine-tune the causal LM at `base_model` on `samples` and save it to `output_dir`.

    Each sample is `{"prompt_ids": [...], "response_ids": [...]}` (other keys, such as the reward, are
    ignored: the algorithm already chose which samples deserve imitation). The loss is the mean
    cross-entropy of the response tokens; prompt tokens are context only (label -100).

    `threads` sets torch's CPU threads (default: torch's choice); on a machine shared with workers and
    a model server, fewer threads that do not wait on each other are often faster.

    Returns `{"checkpoint": output_dir, "metrics": {...}}`. `output_dir` must not exist yet; it
    appears complete or not at all, so a model server never loads half a checkpoint.
    """
    pairs = [truncate(p, r, max_length) for p, r in check_samples(samples)]
    if epochs < 1 or batch_size < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError(
            f"epochs, batch_size and max_steps must be >= 1, got {epochs!r}, {batch_size!r}, {max_steps!r}"
        )
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    source = Path(base_model)
    if not (source / "config.json").is_file():
        raise ValueError(f"base_model {base_model!r} is not a Hugging Face checkpoint directory (no config.json)")
    target = Path(output_dir)
    if target.exists():
        raise ValueError(f"output_dir {output_dir!r} exists already; each fine-tune writes a new checkpoint")

    # Imported here: the trainer process itself never loads torch, only the work horse does.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    chosen = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    model.to(chosen)
    model.train()
    loaded = time.perf_counter()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    per_epoch = math.ceil(len(pairs) / batch_size)
    total_steps = min(max_steps, epochs * per_epoch) if max_steps is not None else epochs * per_epoch
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    while len(losses) < total_steps:
        order = torch.randperm(len(pairs), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            if len(losses) == total_steps:
                break
            batch = [pairs[i] for i in order[start : start + batch_size]]
            input_ids, attention, labels = _tensors(torch, batch, chosen)
            loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
    trained = time.perf_counter()

    # Write beside the target and rename: the directory name appears only once the checkpoint is whole.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.save_pretrained(staging)
        if any((source / name).is_file() for name in _TOKENIZER_FILES):
            AutoTokenizer.from_pretrained(source).save_pretrained(staging)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "checkpoint": str(target),
        "metrics": {
            "steps": len(losses),
            "samples": len(pairs),
            "response_tokens": sum(len(r) for _, r in pairs),
            "loss_first": losses[0],
            "loss_last": losses[-1],
            "loss_mean": sum(losses) / len(losses),
            "load_seconds": round(loaded - started, 3),
            "train_seconds": round(trained - loaded, 3),
            "save_seconds": round(time.perf_counter() - trained, 3),
            "device": chosen,
            "pid": os.getpid(),
        },
    }


def _tensors(torch: Any, batch: list[tuple[list[int], list[int]]], device: str) -> tuple[Any, Any, Any]:
    """Right-padded input ids, attention mask and labels (-100 on prompt and padding) of one batch."""
    width = max(len(p) + len(r) for p, r in batch)
    # The pad id is never attended to nor scored, so any valid id does.
    input_ids = torch.zeros((len(batch), width), dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (prompt, response) in enumerate(batch):
        ids = prompt + response
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[row, : len(ids)] = 1
        labels[row, len(prompt) : len(ids)] = torch.tensor(response, dtype=torch.long)
    return input_ids.to(device), attention.to(device), labels.to(device)
