"""Progress for long algorithm loops: a rich bar on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import logging
import sys
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)


class Progress:
    """Iterations done / total, plus the rollouts of the current iteration.

    with Progress(total_iterations, "REINFORCE") as progress:
        progress.rollouts(done, total)
        progress.advance("iteration 1: mean reward 0.41")
    """

    def __init__(self, total: int, title: str, *, enabled: bool | None = None) -> None:
        self.total = total
        self.title = title
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None
        self._iterations: Any = None
        self._rollouts: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=False,
            )
            self._bar.start()
            self._iterations = self._bar.add_task(self.title, total=self.total)
            self._rollouts = self._bar.add_task("rollouts", total=1)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def rollouts(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._rollouts, completed=done, total=total)

    def advance(self, message: str) -> None:
        if self._bar is not None:
            self._bar.update(self._iterations, advance=1, description=f"{self.title}: {message}")
        else:
            logger.info("%s: %s", self.title, message)
