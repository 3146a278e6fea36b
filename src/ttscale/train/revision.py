"""Build revision fine-tuning data from a policy's own samples (see ``revision_data``)."""

from __future__ import annotations

import random

from ttscale.engines.base import Generator, SamplingParams
from ttscale.grading import grade
from ttscale.train.revision_data import Fixer, build_trajectories, dedupe, local_fixer

SAMPLE_BATCH = 64


def is_right(task, problem, text: str) -> bool:
    """A target must be right, not lucky: the answer must match and, where the task can check
    steps (the testbed), every step must be right too. On the testbed many wrong solutions reach
    the right answer mod 100 by coincidence; trained on them, a revision model learns wrong
    arithmetic (the first testbed revision model did)."""
    if not grade(task.extract_answer(text), problem.answer).equal:
        return False
    step_labels = getattr(task, "step_labels", None)
    steps = [s for s in text.split(task.step_delimiter) if s.strip()]
    return step_labels is None or all(step_labels(problem, steps))


def build_revision_pairs(task, generator: Generator, samples: int = 16, seed: int = 0,
                         temperature: float = 1.0, max_tokens: int = 256,
                         max_previous: int = 4, per_question: int = 4,
                         use_reference: bool = False, keep_rate: float = 0.0,
                         local_correction: bool = False,
                         repeat_rate: float = 0.0) -> list[tuple[str, str]]:
    """(revision prompt, corrected attempt) pairs; ``task`` must offer ``revision_prompt``.

    The paper keeps only questions where some sample is right. ``use_reference`` (tasks with a
    ``reference_solution`` in the policy's own format, such as the testbed, where the one
    step-correct solution IS the reference) also keeps the others, with the reference as the
    target: without it the data holds mostly easy questions, exactly where revising matters least.

    ``local_correction`` (tasks with ``step_labels``): trajectories that teach local correction
    (``revision_data.local_fixer``): the last attempt shown is the wrong one with the longest
    right prefix, and the target keeps that prefix and fixes its first wrong step.
    ``repeat_rate``: the share of trajectories whose last attempt shown is right and whose
    target repeats it (``revision_data.build_trajectories``).
    """
    if not hasattr(task, "revision_prompt"):
        raise ValueError(f"task {task.name!r} has no revision prompt format")
    if use_reference and not hasattr(task, "reference_solution"):
        raise ValueError(f"task {task.name!r} has no reference solution in the policy's format")
    if local_correction and getattr(task, "step_labels", None) is None:
        raise ValueError(f"task {task.name!r} has no step labels; local correction needs them")
    rng = random.Random(f"revision/{seed}")
    problems = task.problems()
    examples = []
    for start in range(0, len(problems), SAMPLE_BATCH):
        batch = problems[start: start + SAMPLE_BATCH]
        outs = generator.generate([p.prompt for p in batch],
                                  SamplingParams(n=samples, temperature=temperature,
                                                 max_tokens=max_tokens, seed=seed + start))
        for problem, comps in zip(batch, outs, strict=True):
            attempts = [(c.text, is_right(task, problem, c.text)) for c in comps
                        if c.finish_reason == "eos"]
            if use_reference and not any(ok for _, ok in attempts):
                attempts.append((task.reference_solution(problem), True))
            fixer = _fixer(task, problem, attempts) if local_correction else None
            examples += build_trajectories(problem.id, problem.prompt, attempts, rng,
                                           max_previous, per_question, keep_rate, fixer,
                                           repeat_rate)
    by_id = {p.id: p for p in problems}
    return [(task.revision_prompt(by_id[ex.problem_id], list(ex.previous)), ex.target)
            for ex in dedupe(examples)]


def _fixer(task, problem, attempts: list[tuple[str, bool]]) -> Fixer:
    """The local-correction fixer of one question: correct solutions are its right attempts
    and, where the task has one, its reference solution."""
    delim = task.step_delimiter

    def steps_of(text: str) -> list[str]:
        return [s for s in text.split(delim) if s.strip()]

    texts = [t for t, ok in attempts if ok]
    if hasattr(task, "reference_solution"):
        texts.append(task.reference_solution(problem))
    correct = [steps_of(t) for t in texts]
    return local_fixer(steps_of, lambda steps: list(task.step_labels(problem, steps)), correct,
                       lambda steps: "".join(st + delim for st in steps))
