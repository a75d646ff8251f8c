"""Progress for long work, on stderr: bars (on a terminal only) and a line per finished stage
with its time (on a terminal and in logs alike); silent when asked (`quiet`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

T = TypeVar("T")

#: Status lines and progress go to stderr, so stdout stays clean for what a command prints.
console = Console(stderr=True)


class _Rate(ProgressColumn):
    """Items per second, in `unit`."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        return Text(f"{task.speed or 0:,.0f} {self.unit}/s", style="progress.data.speed")


def track(items: Iterable[T], description: str, total: float | None = None, quiet: bool = False,
          unit: str = "", step: Callable[[T], float] | None = None) -> Iterator[T]:
    """Iterate over `items`, showing a progress bar unless quiet or stderr is not a terminal.

    With `step`, each item advances the bar by step(item) (rows in a batch, say) and the bar
    shows the rate in `unit` per second.
    """
    columns = [TextColumn("[progress.description]{task.description}"), BarColumn(), TaskProgressColumn()]
    if unit:
        columns += [MofNCompleteColumn(), _Rate(unit)]
    columns.append(TimeRemainingColumn())
    with Progress(*columns, console=console, disable=quiet or not console.is_terminal, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task, step(item) if step is not None else 1)


def stage_done(name: str, seconds: float, quiet: bool = False) -> None:
    """One line when a stage of a command ends, with its time: on a terminal beside the progress
    bars, and in a log (where no bar is drawn) the only sign of how far a long command got."""
    if not quiet:
        console.print(f"  {name}: {seconds:.1f} s", highlight=False)


@contextmanager
def stage(name: str, quiet: bool = False) -> Iterator[None]:
    """Time the block as stage `name` and print its line when it ends (`stage_done`)."""
    start = time.perf_counter()
    yield
    stage_done(name, time.perf_counter() - start, quiet)
