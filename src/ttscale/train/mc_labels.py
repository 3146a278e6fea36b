"""Math-Shepherd style Monte-Carlo step labels, the paper's way of supervising a PRM.

For each question: sample solutions from the policy; for every distinct step prefix, roll out
``k`` completions and label the prefix with the fraction that reach the gold answer (soft) and
whether any did (hard). No human step labels are needed, which is why the paper uses it.

Output is one JSON line per question (all its sampled solutions), appended as each question
finishes, so a killed run resumes where it stopped and a torn last line is dropped on restart.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ttscale.engines.base import Generator, SamplingParams
from ttscale.tasks.base import Task
from ttscale.types import Problem


@dataclass(frozen=True)
class LabelConfig:
    samples_per_question: int = 4
    rollouts_per_prefix: int = 8
    temperature: float = 1.0
    max_solution_tokens: int = 256
    seed: int = 0
    questions_per_batch: int = 32


def split_steps(text: str, delimiter: str) -> list[str]:
    return [s for s in text.split(delimiter) if s.strip()]


def _seed(*parts: object) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def read_done(path: Path) -> set[str]:
    """Problem ids already labelled. Only the last line may be torn (killed mid-write: invalid
    JSON or no trailing newline); it is cut off so the problem is labelled again. A bad line
    before the last is not a torn write: it raises (naming file and line) instead of silently
    discarding every good line after it."""
    if not path.exists():
        return set()
    done: set[str] = set()
    good_bytes = 0
    with path.open("rb") as fh:
        lines = fh.readlines()
    for lineno, raw in enumerate(lines, 1):
        try:
            if not raw.endswith(b"\n"):
                raise ValueError("no newline at the end")
            rec = json.loads(raw)
            if not isinstance(rec, dict) or not isinstance(rec.get("problem_id"), str):
                raise ValueError("no problem_id")
        except ValueError as exc:
            if lineno < len(lines):
                raise ValueError(f"{path}:{lineno}: not a label record ({exc})") from exc
            break
        done.add(rec["problem_id"])
        good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with path.open("r+b") as fh:
            fh.truncate(good_bytes)
    return done


def label_batch(problems: list[Problem], task: Task, generator: Generator, cfg: LabelConfig,
                is_correct: Callable[[str | None, str], bool]) -> list[dict]:
    """Label every step prefix of ``cfg.samples_per_question`` solutions per problem."""
    delim = task.step_delimiter
    sols = generator.generate(
        [p.prompt for p in problems],
        SamplingParams(n=cfg.samples_per_question, temperature=cfg.temperature,
                       max_tokens=cfg.max_solution_tokens,
                       seed=_seed(cfg.seed, "solutions", problems[0].id)),
    )
    # Distinct prefixes across a question's samples are rolled out once.
    prefix_keys: list[tuple[int, tuple[str, ...]]] = []
    index: dict[tuple[int, tuple[str, ...]], int] = {}
    per_problem_steps: list[list[list[str]]] = []
    for qi, comps in enumerate(sols):
        steps_list = [split_steps(c.text, delim) for c in comps]
        per_problem_steps.append(steps_list)
        for steps in steps_list:
            for k in range(1, len(steps)):  # the full solution is judged by its own answer
                key = (qi, tuple(steps[:k]))
                if key not in index:
                    index[key] = len(prefix_keys)
                    prefix_keys.append(key)
    rollouts = generator.generate(
        [problems[qi].prompt + task.solution_text(list(pre)) for qi, pre in prefix_keys],
        SamplingParams(n=cfg.rollouts_per_prefix, temperature=cfg.temperature,
                       max_tokens=cfg.max_solution_tokens,
                       seed=_seed(cfg.seed, "rollouts", problems[0].id)),
    ) if prefix_keys else []
    soft_of: list[float] = []
    for (qi, pre), comps in zip(prefix_keys, rollouts, strict=True):
        base = task.solution_text(list(pre))
        hits = [is_correct(task.extract_answer(base + c.text), problems[qi].answer) for c in comps]
        soft_of.append(sum(hits) / len(hits))
    records = []
    for qi, problem in enumerate(problems):
        solutions = []
        for steps in per_problem_steps[qi]:
            final_ok = is_correct(task.extract_answer(task.solution_text(steps)), problem.answer)
            soft = [soft_of[index[(qi, tuple(steps[:k]))]] for k in range(1, len(steps))]
            if steps:  # one label per step: an empty sample has none
                soft.append(1.0 if final_ok else 0.0)
            sol = {"steps": steps, "soft": soft, "hard": [float(s > 0) for s in soft],
                   "correct": final_ok}
            exact = getattr(task, "step_labels", None)
            if exact is not None:
                sol["exact"] = [float(x) for x in exact(problem, steps)]
            solutions.append(sol)
        records.append({"problem_id": problem.id, "prompt": problem.prompt,
                        "answer": problem.answer, "difficulty": problem.difficulty,
                        "solutions": solutions})
    return records


def label_problems(problems: Iterable[Problem], task: Task, generator: Generator,
                   out_path: Path, cfg: LabelConfig,
                   is_correct: Callable[[str | None, str], bool],
                   on_progress: Callable[[int], None] | None = None) -> int:
    """Label all problems not yet in ``out_path``; returns how many were labelled now."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = read_done(out_path)
    todo = [p for p in problems if p.id not in done]
    if on_progress:
        on_progress(len(done))
    written = 0
    with out_path.open("a") as fh:
        for start in range(0, len(todo), cfg.questions_per_batch):
            batch = todo[start: start + cfg.questions_per_batch]
            for rec in label_batch(batch, task, generator, cfg, is_correct):
                fh.write(json.dumps(rec) + "\n")
            fh.flush()
            written += len(batch)
            if on_progress:
                on_progress(len(done) + written)
    return written
