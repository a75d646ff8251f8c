"""Progress bars for long work: on stderr, and silent when asked or when stderr is not a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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
