"""`setup_logging` / `setup_module_logging` / `configure_logger`: the `lightning_queue` logger tree only, once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import lightning_queue as agl
from lightning_queue.logging import setup_module_logging

TOUCHED = ("lightning_queue", "lightning_queue.store", "workers", "tests.other")


@pytest.fixture(autouse=True)
def _restore_loggers() -> Iterator[None]:
    # caplog and the rest of the suite rely on the loggers propagating to root as before.
    saved = {
        n: (logging.getLogger(n).level, logging.getLogger(n).propagate, list(logging.getLogger(n).handlers))
        for n in TOUCHED
    }
    root = list(logging.getLogger().handlers)
    yield
    for name, (level, propagate, handlers) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers
    assert logging.getLogger().handlers == root
    logging.captureWarnings(False)


def test_setup_logging_gives_the_package_logger_one_console_handler_and_its_level() -> None:
    agl.setup_logging("debug", color=False)
    agl.setup_logging("DEBUG", color=False)
    logger = logging.getLogger("lightning_queue")
    assert logger.level == logging.DEBUG
    assert len(logger.handlers) == 1
    assert logger.propagate is False


def test_setup_logging_prints_records_of_submodules(capsys: pytest.CaptureFixture[str]) -> None:
    agl.setup_logging("INFO", color=False)
    logging.getLogger("lightning_queue.store").info("store says hello")
    logging.getLogger("lightning_queue.store").debug("not at INFO")
    err = capsys.readouterr().err
    assert "store says hello" in err and "[INFO]" in err
    assert "not at INFO" not in err


def test_setup_logging_leaves_the_root_logger_alone() -> None:
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    agl.setup_logging("DEBUG", color=False)
    assert (root.level, list(root.handlers)) == before


def test_a_bad_level_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'LOUD'"):
        agl.setup_logging("LOUD")


def test_submodule_levels_files_and_apply_to(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "run.log"
    agl.setup_logging(
        "WARNING",
        color=False,
        submodule_levels={"lightning_queue.store": "ERROR"},
        files=str(log_file),
        apply_to=["workers"],
    )
    assert logging.getLogger("lightning_queue.store").level == logging.ERROR
    logging.getLogger("lightning_queue").warning("into the file")
    workers = logging.getLogger("workers")
    assert workers.handlers == logging.getLogger("lightning_queue").handlers and workers.propagate is False
    for handler in logging.getLogger("lightning_queue").handlers:
        handler.flush()
    assert "into the file" in log_file.read_text()


def test_setup_module_logging_configures_another_logger_and_returns_it() -> None:
    logger = setup_module_logging("ERROR", name="tests.other", color=False)
    assert logger is logging.getLogger("tests.other")
    assert logger.level == logging.ERROR and len(logger.handlers) == 1


def test_colour_output_uses_rich_when_installed() -> None:
    pytest.importorskip("rich")
    from rich.logging import RichHandler

    agl.setup_logging("INFO")
    assert isinstance(logging.getLogger("lightning_queue").handlers[0], RichHandler)


def test_configure_logger_still_works_but_warns_that_it_is_deprecated() -> None:
    with pytest.warns(DeprecationWarning, match="setup_logging"):
        logger = agl.configure_logger(level=logging.INFO)
    assert logger.name == "lightning_queue" and logger.level == logging.INFO
