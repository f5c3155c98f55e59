"""The import-linter layers contract in pyproject: kept by the tree, broken by one upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lightning_queue", "workers", "algorithms")


def _copy_tree(destination: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", destination / "pyproject.toml")
    return destination


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # A child process, so the copy (not the already imported real packages) is what gets analysed.
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_tree_keeps_the_layers_contract(tmp_path: Path) -> None:
    result = _lint_imports(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "upward"),
    [("lightning_queue/store/__init__.py", "workers"), ("workers/runner.py", "lightning_queue.trainer")],
)
def test_an_upward_import_breaks_the_contract(tmp_path: Path, module: str, upward: str) -> None:
    tree = _copy_tree(tmp_path)
    with (tree / module).open("a") as file:
        file.write(f"\nimport {upward}  # planted upward import\n")
    result = _lint_imports(tree)
    assert result.returncode != 0
    assert f"is not allowed to import {upward}" in result.stdout
