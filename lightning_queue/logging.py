"""Console and file logging for the `lightning_queue` logger tree: `setup_logging`, `setup_module_logging`.

Agent-Lightning v0.3 scripts call `agl.setup_logging("DEBUG")` (or the deprecated `configure_logger()`) before
anything else; these do the same for `lightning_queue` and leave the root logger and other libraries alone
unless asked (`apply_to`). Colour output uses `rich` when it is installed (the `train` extra) and falls back
to plain text otherwise: the records are the same either way.
"""

from __future__ import annotations

# This module shadows the stdlib name inside the package: every import of it is absolute.
import logging
import os
import sys
import warnings
from typing import Any

BASE_LOGGER = "lightning_queue"
DEFAULT_FORMAT = "%(asctime)s [%(levelname)s] (Process-%(process)d %(name)s)   %(message)s"
DATE_FORMAT = "%H:%M:%S"
# Handlers this module installed carry this attribute, so a second setup replaces them instead of doubling.
_OURS = "_lightning_queue_handler"


def level_value(level: int | str) -> int:
    """`logging.DEBUG` or `"debug"` → 10; a ValueError naming anything else."""
    if isinstance(level, bool):
        raise ValueError(f"invalid log level {level!r}: use a level name such as 'INFO' or a number")
    if isinstance(level, int):
        return level
    value = logging.getLevelName(str(level).upper())
    if not isinstance(value, int):
        raise ValueError(f"invalid log level {level!r}: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL or a number")
    return value


def _console_handler(level: int, color: bool | dict[str, Any]) -> logging.Handler:
    if color is not False:
        try:
            from rich.console import Console
            from rich.logging import RichHandler
        except ImportError:
            color = False
        else:
            options: dict[str, Any] = dict(color) if isinstance(color, dict) else {"show_path": True}
            if "console" not in options and not sys.stderr.isatty():
                options["console"] = Console(stderr=True, width=200)  # no terminal (CI): do not wrap at 80
            handler: logging.Handler = RichHandler(level=level, **options)
            return handler
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(DEFAULT_FORMAT, DATE_FORMAT))
    return handler


def setup_module_logging(
    level: int | str = "INFO",
    *,
    name: str = BASE_LOGGER,
    console: bool = True,
    color: bool | dict[str, Any] = True,
    propagate: bool = False,
) -> logging.Logger:
    """Give logger `name` its level and (with `console`) one console handler; return it.

    Handlers installed by an earlier call are replaced, never stacked, so calling it twice logs each
    record once. `color` may be a dict of `rich.logging.RichHandler` options.
    """
    value = level_value(level)
    logger = logging.getLogger(name)
    for handler in [h for h in logger.handlers if getattr(h, _OURS, False)]:
        logger.removeHandler(handler)
    logger.setLevel(value)
    logger.propagate = propagate
    if console:
        handler = _console_handler(value, color)
        setattr(handler, _OURS, True)
        logger.addHandler(handler)
    return logger


def _file_handler(logger: logging.Logger, filename: str, level: int, formatter: logging.Formatter | None) -> None:
    path = os.path.abspath(filename)
    if any(isinstance(h, logging.FileHandler) and h.baseFilename == path for h in logger.handlers):
        return
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(formatter or logging.Formatter(DEFAULT_FORMAT, DATE_FORMAT))
    logger.addHandler(handler)


def setup_logging(
    level: int | str = "INFO",
    *,
    console: bool = True,
    color: bool | dict[str, Any] = True,
    propagate: bool = False,
    capture_warnings: bool = False,
    submodule_levels: dict[str, int | str] | None = None,
    extra_handlers: list[logging.Handler] | None = None,
    formatter: logging.Formatter | None = None,
    apply_to: list[str] | None = None,
    files: str | dict[str, str] | None = None,
) -> None:
    """Configure the `lightning_queue` logger tree (Agent-Lightning's `setup_logging`, same keywords).

    - `submodule_levels`: `{"lightning_queue.store": "DEBUG"}`, levels of loggers below the base;
    - `extra_handlers`: added to the base logger once each; `formatter`: set on its handlers that have none;
    - `apply_to`: other loggers (e.g. `["workers", "algorithms"]`) given the base logger's handlers and level;
    - `files`: one file for the base logger, or `{logger name: file}`;
    - `capture_warnings`: route `warnings.warn` into logging.
    """
    base = setup_module_logging(level, console=console, color=color, propagate=propagate)
    if formatter is not None:
        for handler in base.handlers:
            if handler.formatter is None:
                handler.setFormatter(formatter)
    for handler in extra_handlers or []:
        if handler not in base.handlers:
            base.addHandler(handler)
    for name, sub_level in (submodule_levels or {}).items():
        logging.getLogger(name).setLevel(level_value(sub_level))
    if isinstance(files, str):
        _file_handler(base, files, base.level, formatter)
    elif files is not None:
        for name, filename in files.items():
            target = logging.getLogger(name)
            _file_handler(target, filename, target.getEffectiveLevel(), formatter)
    for name in apply_to or []:
        other = logging.getLogger(name)
        other.handlers.clear()
        for handler in base.handlers:
            other.addHandler(handler)
        other.setLevel(base.level)
        other.propagate = False  # it has the handlers itself: propagating would print each record twice
    if capture_warnings:
        logging.captureWarnings(True)


def configure_logger(level: int = logging.INFO, name: str = BASE_LOGGER) -> logging.Logger:
    """Deprecated (as in Agent-Lightning v0.3): use `setup_logging`. Sets up logger `name` and returns it."""
    warnings.warn(
        "configure_logger is deprecated; use lightning_queue.setup_logging (or setup_module_logging for one logger)",
        DeprecationWarning,
        stacklevel=2,
    )
    return setup_module_logging(level, name=name, console=True, color=True, propagate=False)
