"""A task read from a JSONL file: MATH-500 style or GSM8K style, one problem per line.

Accepted fields (anything else is kept in ``Problem.meta``):

- question: ``problem`` (MATH) or ``question`` (GSM8K)
- answer: ``answer``; a GSM8K answer ``"...reasoning... #### 42"`` gives ``42`` and the full text
  goes to ``meta["solution"]``; without ``answer``, the last ``\\boxed{}`` of ``solution``
- difficulty: ``level`` as ``"Level 3"`` or ``3`` (1..5; MATH's ``"Level ?"`` means unknown)
- id: ``unique_id`` or ``id`` (else ``<file stem>-<index>``); ``subject`` goes to meta

Every line is checked when the task is created, so a bad file fails at once with
``ValueError("FILE:LINE: why")`` rather than in the middle of a run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ttscale.grading.extract import boxed_answer
from ttscale.grading.gradefile import json_object_line
from ttscale.tasks import math_format
from ttscale.tasks.math_format import DEFAULT_PROMPT_TEMPLATE
from ttscale.types import Problem

__all__ = ["DEFAULT_PROMPT_TEMPLATE", "JsonlTask"]

_LEVEL = re.compile(r"\s*(?:level\s*)?([1-5])\s*", re.IGNORECASE)
_KNOWN = {"problem", "question", "answer", "solution", "level", "subject", "unique_id", "id"}


class JsonlTask:
    """Problems from a MATH-500-style or GSM8K-style JSONL file."""

    step_delimiter = math_format.STEP_DELIMITER

    def __init__(self, path: str | Path, prompt_template: str | None = None,
                 limit: int | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        self.prompt_template = DEFAULT_PROMPT_TEMPLATE if prompt_template is None \
            else prompt_template
        if "{question}" not in self.prompt_template:
            raise ValueError("prompt_template must contain '{question}'")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such file")
        self._problems = self._load()

    def _load(self) -> list[Problem]:
        problems: list[Problem] = []
        seen: dict[str, int] = {}
        with self.path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if self.limit is not None and len(problems) >= self.limit:
                    break
                where = f"{self.path}:{lineno}"
                try:
                    problem = self._problem(line, len(problems))
                except ValueError as e:
                    raise ValueError(f"{where}: {e}") from None
                if problem.id in seen:
                    raise ValueError(f"{where}: duplicate id {problem.id!r} "
                                     f"(first on line {seen[problem.id]})")
                seen[problem.id] = lineno
                problems.append(problem)
        if not problems:
            raise ValueError(f"{self.path}: no problems (empty file)")
        return problems

    def _problem(self, line: str, index: int) -> Problem:
        rec = json_object_line(line)
        question = _text_field(rec, ("problem", "question"))
        if question is None:
            raise ValueError("missing field 'problem' (MATH style) or 'question' (GSM8K style)")
        meta: dict[str, Any] = {k: v for k, v in rec.items() if k not in _KNOWN}
        answer = _answer(rec, meta)
        for key in ("subject", "level"):
            if key in rec:
                meta[key] = rec[key]
        pid = rec.get("unique_id", rec.get("id"))
        if pid is None:
            pid = f"{self.name}-{index}"
        elif not isinstance(pid, (str, int)) or isinstance(pid, bool) or str(pid) == "":
            raise ValueError(f"field 'unique_id'/'id' must be a non-empty string or integer, "
                             f"got {pid!r}")
        return Problem(
            id=str(pid),
            question=question,
            answer=answer,
            prompt=self.prompt_template.replace("{question}", question),
            difficulty=_difficulty(rec.get("level")),
            meta=meta,
        )

    def problems(self) -> list[Problem]:
        return list(self._problems)

    def solution_text(self, steps: list[str]) -> str:
        return math_format.solution_text(steps)

    def is_final_step(self, step: str) -> bool:
        return math_format.is_final_step(step)

    def extract_answer(self, solution: str) -> str | None:
        return math_format.extract_answer(solution)


def _text_field(rec: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if key in rec:
            value = rec[key]
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"field {key!r} must be a non-empty string")
            return value
    return None


def _answer(rec: dict[str, Any], meta: dict[str, Any]) -> str:
    solution = rec.get("solution")
    if solution is not None:
        if not isinstance(solution, str):
            raise ValueError("field 'solution' must be a string")
        meta["solution"] = solution
    if "answer" in rec:
        value = rec["answer"]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str) or not value.strip():
            raise ValueError("field 'answer' must be a non-empty string or a number")
        if "####" in value:  # GSM8K: reasoning, then "#### 42"
            final = value.rsplit("####", 1)[1].strip()
            if not final:
                raise ValueError("field 'answer' has nothing after '####'")
            meta.setdefault("solution", value)
            return final
        return value.strip()
    if solution is None:
        raise ValueError("missing field 'answer' (or a 'solution' with \\boxed{})")
    boxed = boxed_answer(solution)  # all boxes of a multi-part answer
    if boxed is None:
        raise ValueError("no 'answer' field and no \\boxed{} in 'solution'")
    return boxed


def _difficulty(level: object) -> int | None:
    if level is None:
        return None
    if isinstance(level, int) and not isinstance(level, bool):
        if 1 <= level <= 5:
            return level
        raise ValueError(f"field 'level' must be 1..5, got {level}")
    if isinstance(level, str):
        m = _LEVEL.fullmatch(level)
        if m:
            return int(m.group(1))
        if level.strip().lower() in ("level ?", "?"):
            return None  # unknown level in the MATH data set
    raise ValueError(f"field 'level' must be 'Level 1'..'Level 5' or 1..5, got {level!r}")
