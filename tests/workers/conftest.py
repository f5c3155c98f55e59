"""Fixtures of the worker tests."""

import sys
from pathlib import Path

# pytest puts `tests/` on sys.path, where this directory passes for a namespace package named
# `workers` that hides the real one; the repository root must come first (`python -m pytest` does it).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
