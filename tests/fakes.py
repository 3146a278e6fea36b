"""Deterministic fakes of the policy engine and the PRM for the testbed task.

They let strategy unit tests control exactly what a "model" knows: the generator writes the next
testbed step right with a chosen probability per difficulty, the scorer knows the exact step
labels and adds chosen noise. Both count everything they report, so tests can check that a
strategy's Cost is the sum of what the engine and the verifier said they spent.

Token counts are characters (the testbed tokenizer is character level).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ttscale.engines.base import SamplingParams
from ttscale.tasks.testbed import (
    LABELS,
    STEP_RE,
    Question,
    apply_op,
    parse_question,
    step_correctness,
)
from ttscale.types import Completion
from ttscale.verifiers.base import StepScores

EOS = "\x00"  # marks the end of the model's stream; never part of any text


def split_prompt(prompt: str) -> tuple[Question, list[str]]:
    """The question and the steps written so far in a continuation prompt."""
    head, _, rest = prompt.partition("\n")
    if rest and not rest.endswith("\n"):
        raise ValueError(f"fake generator: a continuation prompt must end with a newline: "
                         f"{prompt!r}")
    return parse_question(head), [line for line in rest.split("\n") if line.strip()]


@dataclass
class FakeGenerator:
    """A testbed "policy": continues a prompt step by step like a model that knows the format.

    Each step computes the next operation on the value the previous step *stated* (so an early
    mistake propagates), correctly with probability ``accuracy`` (a float, or a function of the
    problem's number of operations), else with a uniformly random wrong value; after the last
    operation it writes ``A:<value>`` and ends (eos). Sample ``j`` of a prompt draws from an RNG
    seeded by ``(params.seed, prompt, j)``; at temperature 0 every sample of a prompt is the same
    deterministic "greedy" continuation (seeded by the prompt only), right with probability
    ``greedy_accuracy`` (default: ``accuracy``).
    """

    accuracy: float | Callable[[int], float] = 0.9
    greedy_accuracy: float | Callable[[int], float] | None = None
    num_parameters: int = 1000
    #: with ``params.logprobs=k``: the top token's probability where the fake writes a right
    #: result (``sure``) or a wrong one (``unsure``, the two result digits of a wrong step); the
    #: rest of the top-k share the remaining mass equally (see ``_top_logprobs``)
    sure: float = 0.95
    unsure: float = 0.5
    calls: list[tuple[list[str], SamplingParams]] = field(default_factory=list)
    #: generated tokens of each call, in call order
    call_tokens: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    generated_tokens: int = 0
    completions: int = 0

    def __post_init__(self) -> None:
        self._unseeded = random.Random(12345)

    @staticmethod
    def _p(acc: float | Callable[[int], float], n_ops: int) -> float:
        return acc(n_ops) if callable(acc) else float(acc)

    def _stream(self, q: Question, steps: list[str], rng: random.Random, p: float,
                flags: list[bool] | None = None) -> str:
        """The rest of the solution this sample would write, then EOS. ``flags``, if given,
        receives one bool per character: is the fake sure of it (False on the result digits
        of a wrong step)."""
        out, k = [], len(steps)
        if steps and steps[-1].startswith("A:"):
            if flags is not None:
                flags.append(True)
            return EOS
        if not steps:
            value = q.start
        else:
            m = STEP_RE.match(steps[-1].strip())
            value = int(m.group(5)) if m else rng.randrange(100)
        while k < len(q.ops):
            op, x = q.ops[k]
            right = apply_op(value, op, x)
            if rng.random() < p:
                new = right
            else:
                new = rng.randrange(99)
                new += new >= right
            line = f"{LABELS[k]}:{value:02d}{op}{x}={new:02d}\n"
            out.append(line)
            if flags is not None:
                flags.extend([True] * (len(line) - 3) + [new == right] * 2 + [True])
            value, k = new, k + 1
        out.append(f"A:{value:02d}\n")
        if flags is not None:
            flags.extend([True] * (len(out[-1]) + 1))
        return "".join(out) + EOS

    def _top_logprobs(self, flags: list[bool], k: int) -> tuple[list[float], list[list[float]]]:
        """Chosen-token and top-k log-probabilities of each generated character."""
        chosen, tops = [], []
        for sure in flags:
            p1 = self.sure if sure else self.unsure
            rest = [math.log((1 - p1) / (k - 1))] * (k - 1) if k > 1 else []
            chosen.append(math.log(p1))
            tops.append([math.log(p1), *rest])
        return chosen, tops

    @staticmethod
    def _cut(stream: str, params: SamplingParams) -> tuple[str, str, int]:
        """Apply stop strings, EOS and max_tokens the way an engine does (tokens = chars)."""
        end, reason, extra = len(stream) - 1, "eos", 1  # EOS is one generated token
        for s in params.stop:
            i = stream.find(s)
            if 0 <= i < end:
                end, reason, extra = i, "stop", len(s)
        if end + extra > params.max_tokens:
            n = min(end, params.max_tokens)
            return stream[:n], "length", n
        return stream[:end], reason, end + extra

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        if params.n < 1 or params.max_tokens < 1:
            raise ValueError(f"fake generator: bad params {params}")
        self.calls.append((list(prompts), params))
        before = self.generated_tokens
        out = []
        for prompt in prompts:
            q, steps = split_prompt(prompt)
            greedy = params.temperature == 0
            acc = self.accuracy if not greedy or self.greedy_accuracy is None \
                else self.greedy_accuracy
            p = self._p(acc, len(q.ops))
            comps = []
            for j in range(params.n):
                if greedy:
                    rng = random.Random(f"greedy|{prompt}")
                elif params.seed is None:
                    rng = random.Random(self._unseeded.random())
                else:
                    rng = random.Random(f"{params.seed}|{prompt}|{j}")
                flags: list[bool] = []
                text, reason, gen = self._cut(self._stream(q, steps, rng, p, flags), params)
                comp = Completion(text, reason, len(prompt), gen)
                if params.logprobs is not None:
                    comp.token_logprobs, comp.top_logprobs = self._top_logprobs(flags[:gen],
                                                                                params.logprobs)
                comps.append(comp)
                self.prompt_tokens += len(prompt)
                self.generated_tokens += gen
                self.completions += 1
            out.append(comps)
        self.call_tokens.append(self.generated_tokens - before)
        return out


@dataclass
class FakeScorer:
    """A testbed "PRM" that knows the exact prefix labels (``step_correctness``).

    A step scores ``high`` if it and every step before it are right, else ``low``, plus uniform
    noise in ``[-noise, noise]`` seeded by (seed, prompt, prefix), clipped to [0, 1]; equal
    prefixes always get equal scores. Tokens = prompt chars + step chars + one delimiter each.
    """

    high: float = 0.9
    low: float = 0.1
    noise: float = 0.0
    seed: int = 0
    num_parameters: int = 500
    calls: list[int] = field(default_factory=list)
    tokens: int = 0
    #: every prompt it was asked to score against, in call order
    prompts: list[str] = field(default_factory=list)

    def score(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> StepScores:
        if len(prompts) != len(solutions):
            raise ValueError("fake scorer: prompts and solutions differ in length")
        self.calls.append(len(solutions))
        self.prompts.extend(prompts)
        all_scores, tokens = [], 0
        for prompt, steps in zip(prompts, solutions, strict=True):
            q = parse_question(prompt.partition("\n")[0])
            labels = step_correctness(q, list(steps))
            scores = []
            for k, ok in enumerate(labels):
                s = self.high if ok else self.low
                if self.noise:
                    prefix = "\n".join(steps[: k + 1])
                    s += random.Random(f"{self.seed}|{prompt}|{prefix}").uniform(-self.noise,
                                                                                 self.noise)
                scores.append(min(1.0, max(0.0, s)))
            all_scores.append(scores)
            tokens += len(prompt) + sum(len(s) + 1 for s in steps)
        self.tokens += tokens
        return StepScores(all_scores, tokens)


def split_revision_prompt(prompt: str) -> tuple[Question, list[str]]:
    """The question and the earlier attempts (``P:`` lines, oldest first) of a testbed revision
    prompt (``TestbedTask.revision_prompt``); anything else in it is an error."""
    if not prompt.endswith("\n"):
        raise ValueError(f"fake reviser: a revision prompt must end with a newline: {prompt!r}")
    *lines, question = prompt[:-1].split("\n")
    for line in lines:
        if not line.startswith("P:"):
            raise ValueError(f"fake reviser: not a revision prompt line: {line!r}")
    return parse_question(question), [line[2:] for line in lines]


@dataclass
class FakeReviser(FakeGenerator):
    """A testbed "revision model": reads the question and the earlier attempts of a revision
    prompt and writes a fresh full solution, then EOS.

    Each step is right with probability ``accuracy`` (per number of operations, as for
    ``FakeGenerator``) plus ``gain`` per earlier attempt shown (revisions help), capped at 1.
    With probability ``garbage`` the attempt is malformed text without an answer instead (empty
    or junk). ``previous`` records the earlier attempts of every prompt it was given (the
    ``P:`` lines, steps joined by ``;``), in call order. Seeding as for ``FakeGenerator``.
    """

    gain: float = 0.0
    garbage: float = 0.0
    previous: list[list[str]] = field(default_factory=list)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        if params.n < 1 or params.max_tokens < 1:
            raise ValueError(f"fake reviser: bad params {params}")
        self.calls.append((list(prompts), params))
        before = self.generated_tokens
        out = []
        for prompt in prompts:
            q, previous = split_revision_prompt(prompt)
            self.previous.append(previous)
            p = min(1.0, self._p(self.accuracy, len(q.ops)) + self.gain * len(previous))
            comps = []
            for j in range(params.n):
                if params.temperature == 0:
                    rng = random.Random(f"greedy|{prompt}")
                elif params.seed is None:
                    rng = random.Random(self._unseeded.random())
                else:
                    rng = random.Random(f"{params.seed}|{prompt}|{j}")
                if rng.random() < self.garbage:
                    stream = rng.choice(["", "zz?? no answer", "a:1x\nA:?"]) + EOS
                else:
                    stream = self._stream(q, [], rng, p)
                text, reason, gen = self._cut(stream, params)
                comps.append(Completion(text, reason, len(prompt), gen))
                self.prompt_tokens += len(prompt)
                self.generated_tokens += gen
                self.completions += 1
            out.append(comps)
        self.call_tokens.append(self.generated_tokens - before)
        return out
