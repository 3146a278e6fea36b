"""The progress bar every long command shows: done/total, running accuracy, elapsed, remaining."""

from __future__ import annotations

from typing import Any


def accuracy_bar(description: str = "{task.description}") -> tuple[Any, Any]:
    """A started rich ``Progress`` on stderr with an ``acc`` field column, and its console.

    rich is imported here, not at module level, so the CLI stays fast to start."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    bar = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(),
                   TextColumn("acc {task.fields[acc]}"), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=console)
    bar.start()
    return bar, console
