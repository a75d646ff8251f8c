"""Progress bars for long work: on stderr, and silent when asked or when stderr is not a terminal."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track as _track

T = TypeVar("T")

#: Status lines and progress go to stderr, so stdout stays clean for what a command prints.
console = Console(stderr=True)


def track(items: Iterable[T], description: str, total: float | None = None, quiet: bool = False) -> Iterator[T]:
    """Iterate over `items`, showing a progress bar unless quiet or stderr is not a terminal."""
    yield from _track(
        items,
        description=description,
        total=total,
        console=console,
        disable=quiet or not console.is_terminal,
        transient=True,
    )
