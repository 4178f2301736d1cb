"""Progress bars for long loops: count, rate and time left, on stderr (stdout stays clean for --json)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second ("?/s" until rich has measured a rate)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "?/s", style="progress.data.speed")


@contextmanager
def bars(enabled: bool = True, console: Console | None = None) -> Iterator[Progress]:
    """A rich Progress on stderr (or `console`) with count, rate and time left; disabled, every call is a no-op.
    Bars vanish when done (transient), so a finished command prints only its results."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(), TimeRemainingColumn())
    console = console or Console(stderr=True)
    # off when stderr is not a terminal: rich cannot redraw there and would leave a stray blank line in logs
    shown = enabled and console.is_terminal
    with Progress(*columns, console=console, disable=not shown, transient=True) as progress:
        yield progress
