"""Tasks: where problems come from. ``load_task`` turns a CLI ``--task`` value into one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ttscale.tasks.base import Task

__all__ = ["Task", "load_task"]


def load_task(spec: str, **kwargs: Any) -> Task:
    """``"testbed"`` -> ``TestbedTask(**kwargs)`` (split, n, seed, ...); a path to an existing
    ``.jsonl`` file -> ``JsonlTask(path, **kwargs)`` (prompt_template, limit)."""
    if spec == "testbed":
        from ttscale.tasks.testbed import TestbedTask

        return TestbedTask(**kwargs)
    path = Path(spec)
    if path.suffix == ".jsonl":
        if not path.is_file():
            raise ValueError(f"task file not found: {spec}")
        from ttscale.tasks.jsonl import JsonlTask

        return JsonlTask(path, **kwargs)
    raise ValueError(f"unknown task {spec!r}: choose 'testbed' or a path to a .jsonl file "
                     "(MATH-500 or GSM8K style)")
