"""`agentlightning.env_var`: v0.3's environment variable names and its typed readers for them.

lightning-queue's own settings are the `LQ_*` variables declared in `lightning_queue.options` and the
settings modules; it reads none of these `AGL_*` names. They are here so that a ported script that reads
them (or passes one of these members to the resolvers) keeps working: each resolver returns the caller's
override if given, else the parsed variable, else the fallback, and names the variable when it cannot
parse it.
"""

from __future__ import annotations

import os
from enum import Enum

__all__ = ["LightningEnvVar", "resolve_bool_env_var", "resolve_int_env_var", "resolve_str_env_var"]


class LightningEnvVar(Enum):
    """v0.3's variable names (none of them changes lightning-queue's behaviour; see the module)."""

    AGL_EMITTER_DEBUG = "AGL_EMITTER_DEBUG"
    AGL_MANAGED_STORE = "AGL_MANAGED_STORE"
    AGL_CURRENT_ROLE = "AGL_CURRENT_ROLE"
    AGL_SERVER_HOST = "AGL_SERVER_HOST"
    AGL_SERVER_PORT = "AGL_SERVER_PORT"


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _raw(env_var: LightningEnvVar) -> str | None:
    if not isinstance(env_var, LightningEnvVar):
        raise TypeError(f"expected a LightningEnvVar member, got {env_var!r:.80}")
    return os.environ.get(env_var.value)


def resolve_bool_env_var(
    env_var: LightningEnvVar, override: bool | None = None, fallback: bool | None = None
) -> bool | None:
    if override is not None:
        return override
    raw = _raw(env_var)
    if raw is None:
        return fallback
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{env_var.value}={raw!r} is not a boolean; use one of {sorted(_TRUE | _FALSE)}")


def resolve_int_env_var(
    env_var: LightningEnvVar, override: int | None = None, fallback: int | None = None
) -> int | None:
    if override is not None:
        return override
    raw = _raw(env_var)
    if raw is None:
        return fallback
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{env_var.value}={raw!r} is not an integer") from None


def resolve_str_env_var(
    env_var: LightningEnvVar, override: str | None = None, fallback: str | None = None
) -> str | None:
    if override is not None:
        return override
    raw = _raw(env_var)
    return fallback if raw is None else raw
