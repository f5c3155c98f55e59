"""No pickle, eval, exec or unsafe YAML on stored or received data anywhere in the shipped packages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("lightning_queue", "workers", "algorithms")
FORBIDDEN = {
    "pickle": re.compile(r"\b(c?pickle|dill|cloudpickle)\b"),
    "eval/exec": re.compile(r"(?<![\w.])(eval|exec)\s*\("),
    "literal_eval": re.compile(r"literal_eval"),
    "marshal": re.compile(r"\bmarshal\.loads?\b"),
    "unsafe yaml": re.compile(r"yaml\.(load|load_all)\s*\((?![^)]*SafeLoader)"),
}


def shipped_sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_the_packages_have_sources() -> None:
    assert len(shipped_sources()) > 10


@pytest.mark.parametrize("rule", sorted(FORBIDDEN))
def test_no_unsafe_deserialisation(rule: str) -> None:
    pattern = FORBIDDEN[rule]
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in shipped_sources()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line.split("#", 1)[0])  # comments may mention the words
    ]
    assert hits == [], f"{rule} found:\n" + "\n".join(hits)


def test_the_check_catches_what_it_looks_for() -> None:
    assert FORBIDDEN["pickle"].search("import pickle")
    assert FORBIDDEN["eval/exec"].search("x = eval(text)")
    assert not FORBIDDEN["eval/exec"].search("model.eval()")
    assert FORBIDDEN["unsafe yaml"].search("yaml.load(f)")
    assert not FORBIDDEN["unsafe yaml"].search("yaml.load(f, Loader=yaml.SafeLoader)")
