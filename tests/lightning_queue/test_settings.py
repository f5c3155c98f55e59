"""The settings models: bad values are named, the Redis URL and namespace resolve in one order, and each
model's derived click options are its fields (names, defaults, help)."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner
from pydantic import BaseModel, ValidationError

from lightning_queue.llm_proxy.limits import ServerLimits
from lightning_queue.llm_proxy.settings import ProxySettings
from lightning_queue.options import describe, option_name, options
from lightning_queue.store.connection import DEFAULT_LOCAL_URL, configured_url, resolve_shared_url
from lightning_queue.store.settings import RedisSettings, resolve_namespace
from workers.settings import WorkerSettings

# Every settings model with the fields that are not options of their own (ProxySettings.limits is ServerLimits').
MODELS: list[tuple[type[BaseModel], tuple[str, ...]]] = [
    (RedisSettings, ()),
    (WorkerSettings, ()),
    (ProxySettings, ("limits",)),
    (ServerLimits, ()),
]


def _problem(build: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        build()
    return describe(caught.value)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: WorkerSettings(agent="m:a", concurrency=0), ["concurrency", "0"]),
        (lambda: WorkerSettings(agent="m:a", log_level="LOUD"), ["log_level", "'LOUD'"]),
        (lambda: WorkerSettings(agent="m:a", max_memory_mb=0), ["max_memory_mb", "0"]),
        (lambda: WorkerSettings(agent="m:a", lease_seconds=0.01), ["lease_seconds", "0.01"]),
        (lambda: WorkerSettings(agent="m:a", max_rollouts=1, max_memory_mb=10), ["max_rollouts", "max_memory_mb"]),
        (lambda: WorkerSettings(agent="m:a", metrics_port=70000), ["metrics_port", "70000"]),
        (lambda: RedisSettings(url="ftp://h/0"), ["'ftp://h/0'", "scheme"]),
        (lambda: RedisSettings(namespace="bad ns!"), ["'bad ns!'"]),
        (lambda: ProxySettings(port=70000), ["port", "70000"]),
        (lambda: ProxySettings(max_body_bytes=0), ["max_body_bytes", "0"]),
        (lambda: ProxySettings(hots="0.0.0.0"), ["hots", "0.0.0.0"]),  # type: ignore[call-arg]
        (lambda: ServerLimits(header_timeout=0), ["header_timeout", "0"]),
        (lambda: ServerLimits(body_timeout=float("inf")), ["body_timeout", "inf"]),
        (lambda: ServerLimits(max_connections=-1), ["max_connections", "-1"]),
        (lambda: ServerLimits(max_connections=True), ["max_connections", "True"]),
        (lambda: ServerLimits(max_body_bytes_in_flight=0), ["max_body_bytes_in_flight", "0"]),
    ],
)
def test_a_bad_setting_is_named_with_its_value(build: Any, expected: list[str]) -> None:
    problem = _problem(build)
    for part in expected:
        assert part in problem, problem


def test_a_bad_redis_url_is_named_without_its_password() -> None:
    problem = _problem(lambda: RedisSettings(url="ftp://user:hunter2@h/0"))
    assert "hunter2" not in problem and "ftp://user:***@h/0" in problem


def test_settings_are_frozen() -> None:
    settings = ProxySettings()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.limits.header_timeout = 1.0  # type: ignore[misc]


def test_zero_connections_means_the_descriptor_limit() -> None:
    assert ServerLimits().max_connections >= 16
    assert ServerLimits(max_connections=0).max_connections == ServerLimits().max_connections
    assert ServerLimits(max_connections=7).max_connections == 7


@pytest.mark.parametrize(
    ("explicit", "environ", "expected"),
    [
        ("redis://a:1/0", {"LQ_REDIS_URL": "redis://b:2/0", "REDIS_URL": "redis://c:3/0"}, "redis://a:1/0"),
        (None, {"LQ_REDIS_URL": "redis://b:2/0", "REDIS_URL": "redis://c:3/0"}, "redis://b:2/0"),
        (None, {"REDIS_URL": "redis://c:3/0"}, "redis://c:3/0"),
        (None, {"LQ_REDIS_URL": "", "REDIS_URL": "redis://c:3/0"}, "redis://c:3/0"),
        (None, {}, None),
    ],
)
def test_the_redis_url_resolves_explicit_then_lq_redis_url_then_redis_url(
    explicit: str | None, environ: dict[str, str], expected: str | None
) -> None:
    assert configured_url(explicit, environ) == expected
    assert RedisSettings.from_env(environ, url=explicit).url == expected


def test_a_shared_service_without_a_configured_url_uses_the_local_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LQ_REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert resolve_shared_url() == DEFAULT_LOCAL_URL == "redis://127.0.0.1:6379/0"
    monkeypatch.setenv("REDIS_URL", "redis://c:3/0")
    assert resolve_shared_url() == "redis://c:3/0"
    assert resolve_shared_url("redis://a:1/0") == "redis://a:1/0"


def test_a_bad_url_in_the_environment_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'http://h/0'"):
        configured_url(None, {"LQ_REDIS_URL": "http://h/0"})


@pytest.mark.parametrize(
    ("explicit", "environ", "expected"),
    [
        ("mine", {"LQ_NAMESPACE": "theirs"}, "mine"),
        (None, {"LQ_NAMESPACE": "theirs"}, "theirs"),
        (None, {}, "default"),
        (None, {"LQ_NAMESPACE": ""}, "default"),
    ],
)
def test_the_namespace_resolves_explicit_then_lq_namespace_then_default(
    explicit: str | None, environ: dict[str, str], expected: str
) -> None:
    assert resolve_namespace(explicit, environ) == expected
    assert RedisSettings.from_env(environ, namespace=explicit).namespace == expected


def test_a_bad_namespace_in_the_environment_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'no spaces'"):
        resolve_namespace(None, {"LQ_NAMESPACE": "no spaces"})


def _derived(model: type[BaseModel], exclude: tuple[str, ...]) -> click.Command:
    return options(model, exclude=exclude)(click.Command("probe"))


@pytest.mark.parametrize(("model", "exclude"), MODELS, ids=[m.__name__ for m, _ in MODELS])
def test_the_derived_options_are_the_fields(model: type[BaseModel], exclude: tuple[str, ...]) -> None:
    command = _derived(model, exclude)
    fields = [name for name in model.model_fields if name not in exclude]
    params = {p.name: p for p in command.params if isinstance(p, click.Option)}
    assert len(params) == len(fields) == len(command.params)
    for field in fields:
        info = model.model_fields[field]
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        param = params[str(extra.get("param") or field)]
        assert option_name(model, field) in param.opts
        assert param.help == info.description
        scale = int(extra.get("scale") or 1)  # type: ignore[call-overload]
        expected = None if extra.get("required") else info.default
        if isinstance(expected, int | float) and scale != 1:
            expected = expected / scale
        assert param.default == expected, field


@pytest.mark.parametrize(("model", "exclude"), MODELS, ids=[m.__name__ for m, _ in MODELS])
def test_the_derived_defaults_are_valid_settings(model: type[BaseModel], exclude: tuple[str, ...]) -> None:
    """What a command gets when no option is given builds the model's defaults (required ones aside)."""

    @options(model, exclude=exclude)
    def probe(**values: Any) -> None:
        click.echo(repr(values))

    command = click.command("probe")(probe)
    required = [
        option_name(model, f)
        for f, info in model.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("required")
    ]
    args = [arg for name in required for arg in (name, "m:a")]
    result = CliRunner().invoke(command, args, env={"LQ_PROXY_AUTH_TOKEN": "", "LQ_PROXY_TOKEN": ""})
    assert result.exit_code == 0, result.output


def test_mb_options_arrive_in_bytes() -> None:
    seen: dict[str, Any] = {}

    @click.command()
    @options(ProxySettings, exclude=("limits",))
    @options(ServerLimits)
    def probe(**values: Any) -> None:
        seen.update(values)

    result = CliRunner().invoke(
        probe,
        ["--max-inflight-body-mb", "0.5", "--max-body-mb", "2", "--max-connections", "9", "--model", "p=http://h/v1"],
        env={"LQ_PROXY_AUTH_TOKEN": "", "LQ_PROXY_TOKEN": ""},
    )
    assert result.exit_code == 0, result.output
    settings = ProxySettings.from_options(**seen)
    assert settings.limits.max_body_bytes_in_flight == 1 << 19
    assert settings.max_body_bytes == 2 << 20
    assert settings.limits.max_connections == 9
    assert settings.models == ("p=http://h/v1",)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--max-inflight-body-mb", "0"], "0"),
        (["--port", "70000"], "70000"),
        (["--header-timeout", "-1"], "-1"),
        (["--config", "/nonexistent/models.yaml"], "/nonexistent/models.yaml"),
    ],
)
def test_lq_proxy_names_a_bad_option_value(args: list[str], named: str) -> None:
    from lightning_queue.llm_proxy.cli import proxy_command

    result = CliRunner().invoke(proxy_command, [*args, "--redis-url", "redis://127.0.0.1:1/0"])
    assert result.exit_code == 2 and named in result.output, result.output


def test_lq_proxy_refuses_a_byte_limit_that_rounds_to_nothing() -> None:
    from lightning_queue.llm_proxy.cli import proxy_command

    result = CliRunner().invoke(proxy_command, ["--max-body-mb", "1e-9", "--redis-url", "redis://127.0.0.1:1/0"])
    assert result.exit_code == 2 and "max_body_bytes" in result.output, result.output
