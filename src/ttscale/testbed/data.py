"""Training data streams and quick evaluations for the testbed models."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator

from ttscale.engines.base import Generator, SamplingParams
from ttscale.tasks.testbed import MAX_OPS, MIN_OPS, TestbedTask, random_question, split_of

SOLUTION_TOKENS = 12 * (MAX_OPS + 1)


def gold_pairs(seed: int) -> Iterator[tuple[str, str]]:
    """Endless (prompt, gold solution) pairs from train-split questions only."""
    rng = random.Random(f"gold/{seed}")
    task = TestbedTask("train", n=1)
    while True:
        q = random_question(rng, rng.randint(MIN_OPS, MAX_OPS))
        if split_of(q.text) == "train":
            yield q.text + "\n", task.solution_text(q.gold_steps())


def dev_accuracy(generator: Generator, n_questions: int = 140, samples: int = 4,
                 temperature: float = 1.0, seed: int = 0) -> tuple[float, dict[int, float]]:
    """Accuracy (pass@1) on dev questions, overall and per number of operations."""
    task = TestbedTask("dev", n=n_questions, seed=seed)
    problems = task.problems()
    outs = generator.generate([p.prompt for p in problems],
                              SamplingParams(n=samples, temperature=temperature,
                                             max_tokens=SOLUTION_TOKENS, seed=seed))
    by_ops: dict[int, list[bool]] = defaultdict(list)
    for p, comps in zip(problems, outs, strict=True):
        for c in comps:
            by_ops[p.difficulty or 0].append(task.extract_answer(c.text) == p.answer)
    flat = [x for v in by_ops.values() for x in v]
    return sum(flat) / len(flat), {k: sum(v) / len(v) for k, v in sorted(by_ops.items())}
