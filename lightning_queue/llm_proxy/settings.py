"""`ProxySettings`: every knob of `lq proxy` and `LLMProxy`, declared once (the CLI derives its options from it).

The connection bounds are their own model, `ServerLimits` (limits.py), which the server reads; the Redis URL
and namespace are `RedisSettings`'.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..options import Settings, setting
from .limits import ServerLimits

TOKEN_ENV = ("LQ_PROXY_AUTH_TOKEN", "LQ_PROXY_TOKEN")
TOKEN_FILE_ENV = "LQ_PROXY_AUTH_TOKEN_FILE"


class ProxySettings(Settings):
    """What `lq proxy` serves, where, to whom, and how much it accepts."""

    models: tuple[str, ...] = setting(
        (),
        help="A public model name and its upstream OpenAI base URL, with options model=UPSTREAM_NAME, "
        "key_env=ENV_VAR or key_file=PATH (or key=API_KEY, visible to other users), token_ids (ask vLLM for token "
        "ids), timeout=SECONDS. Repeatable.",
        option="--model",
        param="model_specs",
        metavar="NAME=URL[,opt=...]",
    )
    config: str | None = setting(None, help="YAML file with a 'models' list.", file="existing")
    host: str = setting("127.0.0.1", help="Bind address (0.0.0.0 serves other machines).")
    port: int = setting(0, help="Port (0 = a free one).", ge=0, le=65535)
    auth_token: str | None = setting(
        None,
        help="Require 'Authorization: Bearer <token>' on every call (env LQ_PROXY_AUTH_TOKEN, or LQ_PROXY_TOKEN); "
        "prefer the environment or --auth-token-file: arguments are visible to other users.",
        envvar=TOKEN_ENV,
    )
    auth_token_file: str | None = setting(
        None,
        help="Read the bearer token from this file (env LQ_PROXY_AUTH_TOKEN_FILE).",
        envvar=TOKEN_FILE_ENV,
        file="any",
    )
    max_body_bytes: int = setting(
        16 << 20,
        help="Request size limit in MB; larger bodies get 413.",
        option="--max-body-mb",
        scale=1 << 20,
        gt=0,
        strict=True,
    )
    allow_unattributed: bool = setting(
        False,
        help="Serve calls without the /rollout/<rid>/attempt/<aid> prefix (not recorded); by default they get 404.",
    )
    pause_retry_after: float = setting(
        5.0,
        help="While the namespace's claims are paused for a weight sync, new calls get 503 with Retry-After of "
        "this many seconds; OpenAI clients wait that long between their retries (2 by default).",
        gt=0,
        le=60,
        allow_inf_nan=False,
    )
    pause_poll: float = setting(
        0.1,
        help="Seconds between the proxy's reads of the claims pause and the policy version (how soon it sees a "
        "pause or a resume).",
        gt=0,
        le=5,
        allow_inf_nan=False,
    )
    limits: ServerLimits = Field(default_factory=ServerLimits, description="Timeouts and caps of client connections.")

    @classmethod
    def from_options(cls, **values: Any) -> ProxySettings:
        """The settings from `lq proxy`'s keyword arguments (its own fields and `ServerLimits`' flat beside them)."""
        limits = {name: values.pop(name) for name in ServerLimits.model_fields if name in values}
        models = values.pop("model_specs", ())
        return cls(models=models, limits=ServerLimits(**limits), **values)


def default(field: str) -> Any:
    """The default of one `ProxySettings` field (for signatures that take it as a keyword)."""
    return ProxySettings.model_fields[field].default
