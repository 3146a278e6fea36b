"""The procedural testbed task: chained arithmetic mod 100 with labelled steps.

Format (a ~1M-parameter model learns it in minutes; see docs/testbed.md)::

    Q:72a-5b-6c*5d*4e-3          <- prompt line: start value, then labelled operations
    a:72-5=67                    <- one step per operation, left to right, values mod 100
    b:67-6=61
    ...
    A:17                         <- final step states the answer

Difficulty is the number of operations. Problems are split into train/dev/test by a hash of the
question text, so no held-out question is ever seen in training whatever seeds are used.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from ttscale.types import Problem

LABELS = "abcdefgh"
MIN_OPS, MAX_OPS = 2, 8
SPLITS = {"train": range(0, 8), "dev": range(8, 9), "test": range(9, 10)}
STEP_RE = re.compile(r"^([a-h]):(\d\d)([-+*])(\d)=(\d\d)$")
ANSWER_RE = re.compile(r"^A:(\d\d)$")


def apply_op(value: int, op: str, operand: int) -> int:
    if op == "+":
        return (value + operand) % 100
    if op == "-":
        return (value - operand) % 100
    return (value * operand) % 100


@dataclass(frozen=True)
class Question:
    start: int
    ops: tuple[tuple[str, int], ...]

    @property
    def text(self) -> str:
        body = "".join(f"{LABELS[i]}{op}{x}" for i, (op, x) in enumerate(self.ops))
        return f"Q:{self.start:02d}{body}"

    def gold_steps(self) -> list[str]:
        steps, value = [], self.start
        for i, (op, x) in enumerate(self.ops):
            new = apply_op(value, op, x)
            steps.append(f"{LABELS[i]}:{value:02d}{op}{x}={new:02d}")
            value = new
        steps.append(f"A:{value:02d}")
        return steps

    @property
    def answer(self) -> str:
        return self.gold_steps()[-1][2:]


def parse_question(text: str) -> Question:
    m = re.fullmatch(r"Q:(\d\d)((?:[a-h][-+*]\d)+)", text.strip())
    if not m:
        raise ValueError(f"not a testbed question: {text!r}")
    found = re.findall(r"([a-h])([-+*])(\d)", m.group(2))
    # labels must be a, b, c, ... in order: anything else would parse into a different question
    if "".join(label for label, _, _ in found) != LABELS[: len(found)]:
        raise ValueError(f"not a testbed question (operation labels out of order): {text!r}")
    return Question(int(m.group(1)), tuple((op, int(x)) for _, op, x in found))


def split_of(question_text: str) -> str:
    bucket = int(hashlib.sha256(question_text.encode()).hexdigest(), 16) % 10
    return next(name for name, r in SPLITS.items() if bucket in r)


def random_question(rng: random.Random, n_ops: int) -> Question:
    ops = []
    for _ in range(n_ops):
        op = rng.choice("+-*")
        ops.append((op, rng.randint(2, 9) if op == "*" else rng.randint(1, 9)))
    return Question(rng.randint(10, 99), tuple(ops))


def step_correctness(question: Question, steps: list[str]) -> list[bool]:
    """Exact prefix labels: step k is right iff steps 1..k all equal the gold solution's."""
    gold = question.gold_steps()
    out, ok = [], True
    for k, step in enumerate(steps):
        ok = ok and k < len(gold) and step.strip() == gold[k]
        out.append(ok)
    return out


class TestbedTask:
    """Seeded generator of testbed problems for one split, difficulty-balanced."""

    name = "testbed"
    step_delimiter = "\n"

    def __init__(self, split: str = "test", n: int = 500, seed: int = 0,
                 min_ops: int = MIN_OPS, max_ops: int = MAX_OPS) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if not MIN_OPS <= min_ops <= max_ops <= MAX_OPS:
            raise ValueError(f"ops must satisfy {MIN_OPS} <= min_ops <= max_ops <= {MAX_OPS}")
        self.split, self.n, self.seed = split, n, seed
        self.min_ops, self.max_ops = min_ops, max_ops
        self._problems: list[Problem] | None = None

    def questions(self) -> list[Question]:
        rng = random.Random(f"testbed/{self.split}/{self.seed}")
        seen: set[str] = set()
        out: list[Question] = []
        span = self.max_ops - self.min_ops + 1
        while len(out) < self.n:
            q = random_question(rng, self.min_ops + len(out) % span)
            if q.text not in seen and split_of(q.text) == self.split:
                seen.add(q.text)
                out.append(q)
        return out

    def problems(self) -> list[Problem]:
        if self._problems is None:
            self._problems = [
                Problem(
                    id=f"{self.split}-{self.seed}-{i}",
                    question=q.text,
                    answer=q.answer,
                    prompt=q.text + "\n",
                    difficulty=len(q.ops),
                    meta={"n_ops": len(q.ops)},
                )
                for i, q in enumerate(self.questions())
            ]
        return self._problems

    def solution_text(self, steps: list[str]) -> str:
        return "".join(s + "\n" for s in steps)

    def is_final_step(self, step: str) -> bool:
        return step.startswith("A:")

    def extract_answer(self, solution: str) -> str | None:
        for line in reversed(solution.strip().splitlines()):
            m = ANSWER_RE.match(line.strip())
            if m:
                return m.group(1)
        return None

    def revision_prompt(self, problem: Problem, previous: list[str]) -> str:
        """Prompt for the revision model: each earlier attempt (oldest first) on one ``P:`` line
        with its steps joined by ``;``, then the question line, after which the model writes a
        new attempt. The question comes last so that the new attempt sits right after it, as in
        the policy's own format: the revision model starts from the policy and keeps its skill
        (with the attempts between the question and the answer it lost it)."""
        lines = ["P:" + ";".join(s for s in text.strip().split("\n") if s) for text in previous]
        return "".join(line + "\n" for line in lines) + problem.prompt

    def reference_solution(self, problem: Problem) -> str:
        """The gold solution in the policy's format (the only step-correct one)."""
        return self.solution_text(parse_question(problem.question).gold_steps())

    def step_labels(self, problem: Problem, steps: list[str]) -> list[bool]:
        """Exact per-step labels (the testbed's "human" labels)."""
        return step_correctness(parse_question(problem.question), steps)
