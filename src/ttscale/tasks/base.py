"""The task interface: where problems come from, how a solution is split and finished."""

from __future__ import annotations

from typing import Protocol

from ttscale.types import Problem


class Task(Protocol):
    name: str
    #: what separates two steps in a solution (a line for the testbed, a blank line for MATH)
    step_delimiter: str

    def problems(self) -> list[Problem]:
        """All problems of this task, in a stable order."""
        ...

    def solution_text(self, steps: list[str]) -> str:
        """Join steps into the text that follows the prompt."""
        ...

    def is_final_step(self, step: str) -> bool:
        """True when this step ends a solution (e.g. it states the final answer)."""
        ...

    def extract_answer(self, solution: str) -> str | None:
        """The final answer stated in a solution, or None."""
        ...
