"""The Procfile's lines are commands that exist, with options their commands accept."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from lightning_queue.cli import main

PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


def procfile_lines() -> dict[str, list[str]]:
    lines = {}
    for raw in PROCFILE.read_text().splitlines():
        if raw.strip() and not raw.startswith("#"):
            name, command = raw.split(":", 1)
            # honcho/foreman expand ${VAR:-default}; take the defaults.
            expanded = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", command)
            lines[name.strip()] = shlex.split(expanded)
    return lines


def test_procfile_has_the_five_processes() -> None:
    assert set(procfile_lines()) == {"redis", "model", "proxy", "worker", "algorithm"}


@pytest.mark.parametrize("name", ["model", "proxy", "worker"])
def test_lq_lines_parse(name: str) -> None:
    argv = procfile_lines()[name]
    assert argv[0] == "lq"
    with click.Context(main) as ctx:
        command = main.get_command(ctx, argv[1])
    assert command is not None
    command.make_context(argv[1], argv[2:])  # raises on an unknown option or a bad value


def test_algorithm_line_parses_and_shares_the_namespace() -> None:
    from algorithms.reinforce.cli import reinforce_command

    lines = procfile_lines()
    argv = lines["algorithm"]
    assert argv[:3] == ["python", "-m", "algorithms.reinforce"]
    reinforce_command.make_context("reinforce", argv[3:])
    namespaces = {line[line.index("--namespace") + 1] for n, line in lines.items() if "--namespace" in line}
    assert len(namespaces) == 1 and {"proxy", "worker", "algorithm"} <= {
        n for n, line in lines.items() if "--namespace" in line
    }


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_services_name_the_procfile_s_redis_so_none_starts_a_private_one() -> None:
    lines = procfile_lines()
    port = option(lines["redis"], "--port")
    for name in ("proxy", "worker", "algorithm"):
        assert option(lines[name], "--redis-url") == f"redis://127.0.0.1:{port}", name


def test_the_algorithm_writes_checkpoints_where_the_model_server_may_load_them_and_holds_its_token() -> None:
    lines = procfile_lines()
    model, algorithm = lines["model"], lines["algorithm"]
    assert option(algorithm, "--checkpoint-dir") == option(model, "--checkpoint-root")
    assert option(algorithm, "--model-server-token-file") == option(model, "--admin-token-file")
