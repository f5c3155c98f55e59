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
