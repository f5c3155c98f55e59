"""`--redis-url` and `--namespace` are declared by `RedisSettings` alone; every CLI reuses that option."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from lightning_queue.store.settings import RedisSettings, redis_url_option

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("lightning_queue", "workers", "algorithms")
OWN_OPTION = re.compile(r"""click\.option\(\s*["']--(redis-url|namespace)["']""")


def _sources() -> list[Path]:
    return [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


def test_no_cli_declares_its_own_redis_url_or_namespace_option() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: --{match.group(1)}"
        for path in _sources()
        for match in OWN_OPTION.finditer(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_scan_sees_a_copied_option() -> None:
    copied = '@click.option("--redis-url", envvar="LQ_REDIS_URL", default=None)\n'
    assert OWN_OPTION.search(copied)


@pytest.mark.parametrize(
    "command",
    [
        "algorithms.reinforce.cli:reinforce_command",
        "algorithms.sft.cli:sft_command",
        "algorithms.prompt_search.cli:prompt_search_command",
        "algorithms.reinforce.demo:demo_command",
    ],
)
def test_algorithm_scripts_take_the_shared_redis_url_option(command: str) -> None:
    import importlib

    module_name, attr = command.split(":")
    cmd = getattr(importlib.import_module(module_name), attr)
    assert isinstance(cmd, click.Command)
    (param,) = [p for p in cmd.params if "--redis-url" in getattr(p, "opts", ())]
    shared = redis_url_option(click.Command("probe")).params[0]
    assert param.envvar == shared.envvar == "LQ_REDIS_URL"
    assert param.help == shared.help == RedisSettings.model_fields["url"].description


# Scripts with a click command of their own besides `lq`'s subcommands.
SCRIPTS = (
    "algorithms.reinforce.cli:reinforce_command",
    "algorithms.sft.cli:sft_command",
    "algorithms.prompt_search.cli:prompt_search_command",
    "algorithms.reinforce.demo:demo_command",
)

# Options that share a settings field's name but are another knob, and why.
OTHER_KNOBS = {
    ("algorithms.reinforce.cli:reinforce_command", "--model"): "the checkpoint to start from, not a proxy model",
    ("algorithms.sft.cli:sft_command", "--model"): "the checkpoint to start from, not a proxy model",
    ("algorithms.prompt_search.cli:prompt_search_command", "--model"): "a model name at --base-url",
    ("lq serve-model", "--host"): "the model server's bind address, not the proxy's",
    ("lq serve-model", "--port"): "the model server's port, not the proxy's",
    ("lq serve-model", "--model"): "a Hugging Face directory, not a proxy model",
    ("lq serve-model", "--log-level"): "the model server's logging, not a worker's",
    ("lq metrics", "--host"): "the store exporter's bind address, not the proxy's",
    ("lq metrics", "--port"): "the store exporter's port, not the proxy's",
    ("lq demo", "--workers"): "local rollout worker processes, not store-server processes",
    (
        "algorithms.reinforce.cli:reinforce_command",
        "--workers",
    ): "local rollout worker processes, not store-server processes",
    ("algorithms.sft.cli:sft_command", "--workers"): "local rollout worker processes, not store-server processes",
    (
        "algorithms.prompt_search.cli:prompt_search_command",
        "--workers",
    ): "local rollout worker processes, not store-server processes",
    (
        "algorithms.reinforce.demo:demo_command",
        "--workers",
    ): "local rollout worker processes, not store-server processes",
    ("lq trainer", "--log-level"): "the rq fine-tuning process's logging, not a rollout worker's",
}


def _settings_options() -> dict[str, list[tuple[type, str]]]:
    """Each option name a settings field derives, with the fields that derive it."""
    from lightning_queue.dashboard.settings import DashboardSettings
    from lightning_queue.llm_proxy.limits import ServerLimits
    from lightning_queue.llm_proxy.settings import ProxySettings
    from lightning_queue.options import option_name
    from lightning_queue.store_server.settings import StoreServerSettings
    from workers.settings import WorkerSettings

    owners: dict[str, list[tuple[type, str]]] = {}
    for model in (RedisSettings, WorkerSettings, ProxySettings, ServerLimits, DashboardSettings, StoreServerSettings):
        for field in model.model_fields:
            if (model, field) != (ProxySettings, "limits"):
                owners.setdefault(option_name(model, field), []).append((model, field))
    return owners


def _commands() -> list[tuple[str, click.Command]]:
    import importlib

    from lightning_queue.cli import main

    def walk(command: click.Command, path: str) -> list[tuple[str, click.Command]]:
        if not isinstance(command, click.Group):
            return [(path, command)]
        ctx = click.Context(command)  # `lq` loads its subcommands lazily, by name
        subs = [(name, command.get_command(ctx, name)) for name in command.list_commands(ctx)]
        return [found for name, sub in subs if sub is not None for found in walk(sub, f"{path} {name}")]

    scripts = []
    for spec in SCRIPTS:
        module_name, attr = spec.split(":")
        scripts.append((spec, getattr(importlib.import_module(module_name), attr)))
    return walk(main, "lq") + scripts


def _copies(commands: list[tuple[str, click.Command]]) -> list[str]:
    from lightning_queue.options import SettingOption

    owners = _settings_options()
    copies = []
    for where, command in commands:
        for param in command.params:
            for name in getattr(param, "opts", ()):
                if name not in owners or (where, name) in OTHER_KNOBS:
                    continue
                if not isinstance(param, SettingOption) or param.setting not in owners[name]:
                    copies.append(f"{where}: {name} (declared by {owners[name][0][0].__name__}.{owners[name][0][1]})")
    return copies


def test_no_cli_declares_an_option_a_settings_field_already_declares() -> None:
    commands = _commands()
    assert {"lq worker", "lq proxy", "lq status"} <= {where for where, _ in commands}
    assert _copies(commands) == []


def test_a_hand_written_copy_of_a_settings_option_is_caught() -> None:
    @click.command()
    @click.option("--concurrency", type=int, default=4, help="Rollouts per worker.")
    @click.option("--header-timeout", type=float, default=10.0)
    @redis_url_option
    def copied(**_: object) -> None:
        raise AssertionError("never run")

    assert _copies([("copied", copied)]) == [
        "copied: --concurrency (declared by WorkerSettings.concurrency)",
        "copied: --header-timeout (declared by ServerLimits.header_timeout)",
    ]


def test_every_other_knob_still_exists() -> None:
    """A stale exemption would let a copy in later: each must name an option some command has."""
    present = {
        (where, name) for where, command in _commands() for p in command.params for name in getattr(p, "opts", ())
    }
    assert set(OTHER_KNOBS) <= present
