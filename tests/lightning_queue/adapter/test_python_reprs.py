"""Python reprs are read as literals and nothing else."""

from __future__ import annotations

import pytest

from lightning_queue.adapter import parse_python_literal


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("[1, 2, 3]", [1, 2, 3]),
        ("(1,)", [1]),
        ("{'a': None, 'b': True, 'c': False, 'd': -1.5e-05}", {"a": None, "b": True, "c": False, "d": -1.5e-05}),
        (
            "['it\\'s', \"say \\\"hi\\\"\", '\\n\\t\\\\', 'caf\\xe9', '中文', '\\u4e2d']",
            ["it's", 'say "hi"', "\n\t\\", "café", "中文", "中"],
        ),
        ("[[1, 2], []]", [[1, 2], []]),
    ],
)
def test_literals_are_read(text: str, value: object) -> None:
    assert parse_python_literal(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('echo no')",
        "ChatCompletionMessage(content='x')",
        "{1, 2}",
        "[b'bytes']",
        "[1, 2",
        "1 + 2",
        "[1j]",
        "lambda: 0",
    ],
)
def test_anything_but_a_plain_literal_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_python_literal(text)
