"""Progress of a multi-stage job (a sweep, the demo) on stderr: one rich bar per stage.

Why not the runner's bar: a sweep runs many (strategy, budget) stages in one process and the user
should see the finished ones (with their accuracy) stay on screen while the next one runs, plus
an overall line. Disabled, every method is a no-op, so callers never branch on it.
"""

from __future__ import annotations

from typing import Any

from ttscale.progress import accuracy_bar


class Stage:
    """One bar: ``advance(correct)`` after each problem; shows the running accuracy."""

    def __init__(self, owner: SweepProgress, label: str, total: int, done: int,
                 correct: float) -> None:
        self.owner, self.total, self.done, self.correct = owner, total, done, correct
        self._id: Any = None
        bar = owner.bar
        if bar is not None:
            self._id = bar.add_task(label, total=total, completed=done, acc=self._acc())

    def _acc(self) -> str:
        return f"{self.correct / self.done:.3f}" if self.done else "-"

    def advance(self, correct: float) -> None:
        self.done += 1
        self.correct += float(correct)
        bar = self.owner.bar
        if bar is not None and self._id is not None:
            bar.update(self._id, advance=1, acc=self._acc())


class SweepProgress:
    """A context manager holding a live rich ``Progress`` on stderr (or nothing when disabled)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.console: Any = None

    def __enter__(self) -> SweepProgress:
        if self.enabled:
            self.bar, self.console = accuracy_bar("{task.description:<28}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def stage(self, label: str, total: int, done: int = 0, correct: float = 0.0) -> Stage:
        return Stage(self, label, total, done, correct)

    def note(self, message: str) -> None:
        """A line above the bars (e.g. 'loading the policy ...')."""
        if self.bar is not None:
            self.bar.console.print(message, highlight=False, markup=False)
