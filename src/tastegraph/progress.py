"""Progress bars for long commands (rich), silent when disabled or not on a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["Bar", "ingest_progress", "progress_bar", "status_line"]


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        # The average since the bar started, not rich's estimate over the last few updates:
        # work arrives in batches, and two updates a moment apart gave rates like 890 img/s.
        elapsed = task.finished_time if task.finished else task.elapsed
        speed = task.completed / elapsed if elapsed and task.completed else None
        return Text(f"{speed:6.1f} {self.unit}/s" if speed else f"   -- {self.unit}/s")


class Bar:
    def __init__(self, progress: Progress | None, task: Any) -> None:
        self._p = progress
        self._task = task

    def advance(self, n: int = 1, **fields: Any) -> None:
        if self._p is not None:
            self._p.update(self._task, advance=n, **fields)


@contextmanager
def progress_bar(
    description: str, total: int | None, *, unit: str = "it", enabled: bool = True
) -> Iterator[Bar]:
    if not enabled:
        yield Bar(None, None)
        return
    cols: list[Any] = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(unit),
        TimeRemainingColumn(),
    ]
    with Progress(*cols, console=Console(stderr=True), transient=False) as p:
        yield Bar(p, p.add_task(description, total=total))


@contextmanager
def ingest_progress(total: int, enabled: bool = True) -> Iterator[Bar]:
    with progress_bar("ingest", total, unit="img", enabled=enabled) as bar:
        yield bar


@contextmanager
def status_line(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner with a line saying which long step runs (``say("exporting ...")``).

    Not on a terminal, each step is printed once instead, so logs say where the time went too;
    disabled, it says nothing.
    """
    console = Console(stderr=True)
    if not enabled:
        yield lambda _msg: None
        return
    if not console.is_terminal:
        yield lambda msg: console.print(msg)
        return
    with console.status("") as status:
        yield lambda msg: status.update(msg)
