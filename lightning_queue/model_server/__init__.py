"""A local OpenAI-compatible server for small Hugging Face causal LMs (`lq serve-model`).

from lightning_queue.model_server import ModelServer, ServerThread, load_default_model
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .background import ServerThread
    from .server import ModelServer
    from .weights import LoadedModel, load_default_model, load_model, resolve_default_model_dir

__all__ = [
    "LoadedModel",
    "ModelServer",
    "ServerThread",
    "load_default_model",
    "load_model",
    "resolve_default_model_dir",
]

# `lq` imports this package for its CLI on every call; torch alone takes seconds to import, so the
# names are only resolved on first use.
_HOMES = {
    "LoadedModel": "weights",
    "ModelServer": "server",
    "ServerThread": "background",
    "load_default_model": "weights",
    "load_model": "weights",
    "resolve_default_model_dir": "weights",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)
