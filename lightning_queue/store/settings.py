"""Where a process finds its Redis and which namespace it works in: `RedisSettings`, declared once.

The URL resolves in one order everywhere: explicit (`--redis-url`, an argument) -> `LQ_REDIS_URL` ->
`REDIS_URL` -> `redis://127.0.0.1:6379/0` (`connection.configured_url`). The namespace: explicit ->
`LQ_NAMESPACE` -> `"default"`; a run that must not mix with others takes `fresh_namespace()`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator, field_validator

from ..options import Settings, field_option, setting
from .connection import DEFAULT_LOCAL_URL, check_url, configured_url
from .keys import check_namespace

NAMESPACE_ENV = "LQ_NAMESPACE"
DEFAULT_NAMESPACE = "default"

# A namespace field, for every settings model that names one.
Namespace = Annotated[str, AfterValidator(check_namespace)]


def resolve_namespace(namespace: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Explicit namespace, then `LQ_NAMESPACE`, then `"default"`."""
    env = os.environ if environ is None else environ
    return check_namespace(namespace or env.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE)


def fresh_namespace(prefix: str = "run") -> str:
    """A namespace of its own for one run (`run-1a2b3c4d`), so its keys never mix with another's."""
    return check_namespace(f"{prefix}-{uuid.uuid4().hex[:8]}")


class RedisSettings(Settings):
    """The Redis a process uses and the namespace it works in."""

    url: str | None = setting(
        None,
        help="Redis URL (env LQ_REDIS_URL, then REDIS_URL; default 127.0.0.1:6379).",
        option="--redis-url",
        param="redis_url",
        envvar="LQ_REDIS_URL",
    )
    namespace: Namespace = setting(DEFAULT_NAMESPACE, help="Run namespace (env LQ_NAMESPACE).", envvar=NAMESPACE_ENV)

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        return None if url is None else check_url(url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **explicit: str | None) -> RedisSettings:
        """Explicit values (None: not given) over the environment over the defaults."""
        env = os.environ if environ is None else environ
        return cls(
            url=configured_url(explicit.get("url"), env),
            namespace=resolve_namespace(explicit.get("namespace"), env),
        )

    def shared_url(self) -> str:
        """The URL, else 127.0.0.1:6379 whether or not it answers yet (never an embedded server)."""
        return self.url or DEFAULT_LOCAL_URL


# The two options every command that talks to Redis takes; declared by the fields above, nowhere else.
redis_url_option = field_option(RedisSettings, "url")
namespace_option = field_option(RedisSettings, "namespace")
