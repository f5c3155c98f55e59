"""The package version, declared once: pyproject reads it from here (`dynamic = ["version"]`)."""

__version__ = "0.1.0"
