"""Which upstream serves each public model name: parsing model lists, `--model` specs and YAML files."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit, urlunsplit

DEFAULT_TIMEOUT = 600.0
# LiteLLM provider prefixes that mean "an OpenAI-compatible server"; hosted_vllm also implies token ids.
_LITELLM_PREFIXES = ("hosted_vllm/", "openai/")
_OUR_KEYS = {
    "name",
    "model_name",
    "base_url",
    "model",
    "api_key",
    "api_key_env",
    "api_key_file",
    "extra_body",
    "timeout",
}
_LITELLM_KEYS = {"model", "api_base", "api_key", "timeout", "extra_body"}


class ModelConfig(TypedDict):
    """A LiteLLM-style `model_list` entry (`agentlightning.llm_proxy.ModelConfig`): `LLMProxy(model_list=[...])`
    takes these as they are; `litellm_params` is read for `model`, `api_base`, `api_key`, `timeout`, `extra_body`."""

    model_name: str
    litellm_params: dict[str, Any]


@dataclass(frozen=True)
class UpstreamModel:
    """One upstream behind a public model name.

    `api_key` stays inside the proxy: it is excluded from repr and only ever sent upstream.
    `extra_body` is merged over every request body (e.g. `{"return_token_ids": True}` for vLLM).
    `timeout` bounds the wait for each upstream read, in seconds.
    """

    name: str
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a model needs a non-empty public name, got {self.name!r}")
        parts = urlsplit(self.base_url) if isinstance(self.base_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"model {self.name!r}: base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, "
                f"got {safe_url(str(self.base_url))!r}"
            )
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model {self.name!r}: the upstream model name must be a non-empty string")
        if not isinstance(self.timeout, int | float) or not math.isfinite(self.timeout) or self.timeout <= 0:
            raise ValueError(f"model {self.name!r}: timeout must be a positive number of seconds, got {self.timeout!r}")
        if not isinstance(self.extra_body, Mapping):
            raise ValueError(f"model {self.name!r}: extra_body must be a mapping, got {type(self.extra_body).__name__}")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"


def safe_url(url: str) -> str:
    """`url` without user info, for messages and logs (credentials may hide in it)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


class ModelTable:
    """Public name -> upstreams; several upstreams under one name share the load in turn."""

    def __init__(self, models: Sequence[UpstreamModel]) -> None:
        self.models = list(models)
        grouped: dict[str, list[UpstreamModel]] = {}
        for model in self.models:
            grouped.setdefault(model.name, []).append(model)
        self._cycles: dict[str, Iterator[UpstreamModel]] = {n: itertools.cycle(ms) for n, ms in grouped.items()}

    @property
    def names(self) -> list[str]:
        return list(self._cycles)

    def pick(self, name: str) -> UpstreamModel | None:
        cycle = self._cycles.get(name)
        return next(cycle) if cycle is not None else None

    def api_keys(self) -> list[str]:
        return [m.api_key for m in self.models if m.api_key]


def read_secret_file(path: str | Path, what: str) -> str:
    """A secret kept in a file (first line, surrounding whitespace dropped): never on a command line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    secret = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise ValueError(f"{what}: {path} is empty")
    return secret


def _resolve_key(where: str, api_key: Any, api_key_env: Any, api_key_file: Any = None) -> str | None:
    if sum(v is not None for v in (api_key, api_key_env, api_key_file)) > 1:
        raise ValueError(f"{where}: give only one of api_key, api_key_env, api_key_file (key=, key_env=, key_file=)")
    if api_key_file is not None:
        if not isinstance(api_key_file, str | Path):
            raise ValueError(f"{where}: api_key_file must be a path")
        return read_secret_file(api_key_file, where)
    if api_key_env is not None:
        if not isinstance(api_key_env, str) or api_key_env not in os.environ:
            raise ValueError(f"{where}: api_key_env names the environment variable {api_key_env!r}, which is not set")
        return os.environ[api_key_env]
    if api_key is not None and not isinstance(api_key, str):
        raise ValueError(f"{where}: api_key must be a string")
    return api_key or None


def _from_litellm(where: str, name: Any, params: Any) -> UpstreamModel:
    if not isinstance(params, Mapping):
        raise ValueError(f"{where}: litellm_params must be a mapping")
    unknown = set(params) - _LITELLM_KEYS
    if unknown:
        raise ValueError(f"{where}: unsupported litellm_params {sorted(unknown)}; supported: {sorted(_LITELLM_KEYS)}")
    upstream = str(params.get("model") or "")
    extra: dict[str, Any] = dict(params.get("extra_body") or {})
    for prefix in _LITELLM_PREFIXES:
        if upstream.startswith(prefix):
            upstream = upstream[len(prefix) :]
            if prefix == "hosted_vllm/":
                # Agent-Lightning always asked vLLM for token ids; keep that for its model lists.
                extra.setdefault("return_token_ids", True)
    if "api_base" not in params:
        raise ValueError(f"{where}: litellm_params needs api_base (the upstream's OpenAI base URL)")
    return UpstreamModel(
        name=name,
        base_url=params["api_base"],
        model=upstream,
        api_key=_resolve_key(where, params.get("api_key"), None),
        extra_body=extra,
        timeout=float(params.get("timeout", DEFAULT_TIMEOUT)),
    )


def model_from_mapping(entry: Mapping[str, Any], where: str = "model entry") -> UpstreamModel:
    """Accept our shape (`name`, `base_url`, `model`, ...) or Agent-Lightning's (`model_name`, `litellm_params`)."""
    if "litellm_params" in entry:
        extra_keys = set(entry) - {"model_name", "litellm_params"}
        if extra_keys:
            raise ValueError(f"{where}: unexpected keys {sorted(extra_keys)} next to litellm_params")
        return _from_litellm(where, entry.get("model_name"), entry["litellm_params"])
    unknown = set(entry) - _OUR_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_OUR_KEYS)}")
    name = entry.get("name", entry.get("model_name"))
    if "base_url" not in entry:
        raise ValueError(f"{where}: base_url is required (the upstream's OpenAI base URL, usually ending in /v1)")
    return UpstreamModel(
        name=name,
        base_url=entry["base_url"],
        model=entry.get("model") or name,
        api_key=_resolve_key(where, entry.get("api_key"), entry.get("api_key_env"), entry.get("api_key_file")),
        extra_body=dict(entry.get("extra_body") or {}),
        timeout=float(entry.get("timeout", DEFAULT_TIMEOUT)),
    )


def normalize_model_list(entries: Iterable[UpstreamModel | Mapping[str, Any]] | None) -> list[UpstreamModel]:
    models: list[UpstreamModel] = []
    for i, entry in enumerate(entries or []):
        if isinstance(entry, UpstreamModel):
            models.append(entry)
        elif isinstance(entry, Mapping):
            models.append(model_from_mapping(entry, f"model_list[{i}]"))
        else:
            raise TypeError(f"model_list[{i}] must be an UpstreamModel or a mapping, got {type(entry).__name__}")
    return models


def _flag(where: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("", "1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{where}: expected true or false, got {value!r}")


def spec_has_inline_key(spec: str) -> bool:
    """Whether a `--model` spec carries its key itself (readable by anyone who can list processes)."""
    return any(option.startswith("key=") for option in spec.split(",")[1:])


def parse_model_spec(spec: str) -> UpstreamModel:
    """`NAME=URL[,model=UPSTREAM][,key=KEY|key_env=VAR|key_file=PATH][,token_ids][,timeout=S]` (`lq proxy --model`)."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"--model {spec.split(',')[0]!r}...: expected NAME=URL[,option=value...]")
    url, *options = rest.split(",")
    fields: dict[str, Any] = {"name": name, "base_url": url, "model": name}
    extra: dict[str, Any] = {}
    key_env: str | None = None
    key_file: str | None = None
    where = f"--model {name}"
    for option in options:
        key, _, value = option.partition("=")
        if key == "model":
            fields["model"] = value
        elif key == "key":
            fields["api_key"] = value
        elif key == "key_env":
            key_env = value
        elif key == "key_file":
            key_file = value
        elif key == "token_ids":
            if _flag(where, value):
                extra["return_token_ids"] = True
        elif key == "timeout":
            fields["timeout"] = float(value)
        else:
            raise ValueError(
                f"{where}: unknown option {key!r}; use model=, key=, key_env=, key_file=, token_ids, timeout="
            )
    if key_env is not None or key_file is not None:
        fields["api_key"] = _resolve_key(where, fields.pop("api_key", None), key_env, key_file)
    return UpstreamModel(extra_body=extra, **fields)


def load_config_file(path: str | Path) -> list[UpstreamModel]:
    """Read `models:` (or Agent-Lightning's `model_list:`) from a YAML or JSON file."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        import yaml
    except ImportError as exc:
        raise ValueError(f"reading {path} needs PyYAML: pip install pyyaml") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping with a 'models' list")
    unknown = set(data) - {"models", "model_list"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)}; expected 'models' (or 'model_list')")
    entries = data.get("models", data.get("model_list"))
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: 'models' must be a non-empty list")
    return normalize_model_list(entries)
