"""its_hub's particle filtering vs ttscale's, side by side in one run, on the same models.

Measures, on held-out testbed questions (``TestbedTask(split="test", n=60, seed=0)``), with the
shipped models loaded once in-process on CPU (policy ``policy-small``, the shipped PRM), at
N=16 particles:

* ttscale ``beam`` (beam_width=4), as a reference row;
* ttscale ``particle-filtering`` with its defaults (systematic resampling, argmax selection) and
  with multinomial resampling (what its_hub's ``ParticleFiltering`` always does);
* the peer library its_hub's ``ParticleFiltering`` (its own code: ``ParticleGibbs.ainfer``,
  ``StepGeneration``, multinomial resampling, argmax selection via ``the_one``).

Printed per method: accuracy, accuracy on the two hardest difficulty levels (number of
operations) among the questions, generated tokens and mean wall seconds per question, then the
ratio of its_hub's wall time to ttscale's (default particle filtering, and the multinomial row).
Exits 0 with one line when its_hub is not installed (it is not a ttscale dependency).

Run::

    pip install its-hub==1.2.0
    TTSCALE_THREADS=1 python bench/bench_its_hub.py [--questions 60] [--seed 0] \\
        [--temperature 1.0] [--max-steps 10]

Adapters (no HTTP: its_hub drives the very models ttscale uses):

* ``TtscaleLM`` is an its_hub ``AbstractLanguageModel``. its_hub's ``StepGeneration`` sends,
  per particle, ``[user: problem prompt, assistant: "\\n".join(steps) + "\\n"]`` (no assistant
  message before the first step) with ``stop="\\n"``; the adapter concatenates the two contents,
  which is exactly ``problem.prompt + task.solution_text(steps)``, the raw text the testbed
  policy was trained on (no chat template), and calls ``HFGenerator.generate`` ONCE for the
  whole batch of particles (``n=1`` per conversation, stop ``"\\n"``, the StepGeneration's
  temperature, ``max_tokens`` = ttscale's ``max_step_tokens`` default 64, a seed derived from
  the question seed and a call counter). The reply is one step without its ``"\\n"``.
* ``TtscalePRM`` is an its_hub ``AbstractProcessRewardModel``. its_hub's particle filter calls
  ``ascore(prompt, responses)`` with one response per live particle (its steps joined by
  ``"\\n"``) and wants one float per response, whose logit becomes the particle's log-weight; it
  uses the LAST step's score. The adapter splits each response into steps (empty pieces dropped,
  as ttscale does), scores the distinct ones in one call of ttscale's PRM
  (``StepScorer.score``) and returns each one's last step score (0.0 for a response with no
  step).

its_hub's final step is marked with ``stop_token="A:"`` (the testbed's answer line; its math
recipe uses ``"\\boxed"`` the same way); a particle also stops after ``max_steps`` steps, so
ttscale's searches get ``max_rounds = max_steps + 1`` (the same cap on solution length).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
import zlib
from typing import Any

import numpy as np
import torch
from bench_beyond import load  # the shipped policy-small and PRM, loaded the same way

from ttscale.engines.base import SamplingParams
from ttscale.strategies import SearchContext, get_strategy
from ttscale.tasks.testbed import TestbedTask
from ttscale.types import Problem

N = 16
MAX_STEP_TOKENS = 64  # ttscale's SearchContext.max_step_tokens default


def split_steps(text: str) -> list[str]:
    return [s for s in text.split("\n") if s.strip()]


def its_hub_adapters(gen: Any, prm: Any) -> tuple[Any, Any]:
    """The two adapter classes, built only once its_hub imported."""
    from its_hub.api import AbstractLanguageModel, AbstractProcessRewardModel

    def content(msg: Any) -> str:
        c = msg.content if hasattr(msg, "content") else msg.get("content")
        return c if isinstance(c, str) else ""

    class TtscaleLM(AbstractLanguageModel):
        """Next step of each conversation from ttscale's HFGenerator, one engine call a batch."""

        def __init__(self) -> None:
            self.seed = 0
            self.calls = 0
            self.generated_tokens = 0

        def reset(self, seed: int) -> None:
            self.seed, self.calls = seed, 0

        def raw_prompt(self, messages: list[Any]) -> str:
            # user: the problem prompt; assistant (once a step exists): the steps so far
            return "".join(content(m) for m in messages)

        def _generate(self, convs: list[list[Any]], stop: str | list[str] | None,
                      temperature: float | list[float] | None,
                      max_tokens: int | None) -> list[dict]:
            if isinstance(temperature, list):
                if len(set(temperature)) != 1:
                    raise ValueError("one temperature per batch expected")
                temperature = temperature[0]
            stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
            params = SamplingParams(
                n=1, temperature=1.0 if temperature is None else float(temperature),
                max_tokens=max_tokens or MAX_STEP_TOKENS, stop=stops,
                seed=zlib.crc32(repr((self.seed, self.calls)).encode()) & 0x7FFFFFFF)
            self.calls += 1
            out = gen.generate([self.raw_prompt(c) for c in convs], params)
            self.generated_tokens += sum(row[0].generated_tokens for row in out)
            return [{"role": "assistant", "content": row[0].text} for row in out]

        async def agenerate(self, messages: Any, stop: str | None = None,
                            **kwargs: Any) -> dict | list[dict]:
            single = not messages or not isinstance(messages[0], list)
            convs = [messages] if single else messages
            out = self._generate(convs, stop, kwargs.get("temperature"),
                                 kwargs.get("max_completion_tokens"))
            return out[0] if single else out

        async def agenerate_single(self, messages: Any, stop: str | None = None,
                                   **kwargs: Any) -> dict:
            return self._generate([messages], stop, kwargs.get("temperature"),
                                  kwargs.get("max_completion_tokens"))[0]

    class TtscalePRM(AbstractProcessRewardModel):
        """Last-step score of each response from ttscale's PRM, one verifier call a batch."""

        def score(self, prompt_or_messages: Any, steps: list[str]) -> list[float]:
            prompt = prompt_or_messages
            if not isinstance(prompt, str):
                prompt = prompt.to_prompt() if hasattr(prompt, "to_prompt") else \
                    "".join(content(m) for m in prompt)
            index: dict[tuple[str, ...], int] = {}
            for r in steps:
                index.setdefault(tuple(split_steps(r)), len(index))
            todo = [list(k) for k in index if k]
            scores = prm.score([prompt] * len(todo), todo).scores if todo else []
            last = {tuple(k): float(s[-1]) for k, s in zip(todo, scores, strict=True)}
            return [last.get(tuple(split_steps(r)), 0.0) for r in steps]

        async def ascore(self, prompt_or_messages: Any, steps: list[str]) -> list[float]:
            return self.score(prompt_or_messages, steps)

    return TtscaleLM, TtscalePRM


def summary(label: str, answers: list[str | None], walls: list[float], tokens: list[int],
            problems: list[Problem], hard: tuple[int, int]) -> dict[str, Any]:
    right = [float(a == p.answer) for a, p in zip(answers, problems, strict=True)]
    n = len(problems)
    row: dict[str, Any] = {"method": label, "acc": sum(right) / n,
                           "wall": sum(walls) / n, "tokens": sum(tokens) / n}
    for i, d in enumerate(hard):
        sel = [r for r, p in zip(right, problems, strict=True) if p.difficulty == d]
        row[f"hard{i}"] = sum(sel) / len(sel) if sel else float("nan")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=1.0,
                    help="policy sampling temperature, the same on both sides")
    ap.add_argument("--max-steps", type=int, default=10,
                    help="its_hub StepGeneration max_steps (ttscale: max_rounds = this + 1)")
    args = ap.parse_args()
    try:
        from its_hub.core.algorithms.particle_gibbs import ParticleFiltering
        from its_hub.core.lms.step_generation import StepGeneration
    except ImportError:
        print("its_hub is not importable: pip install its-hub to run this bench")
        return
    torch.set_num_threads(1)
    task = TestbedTask(split="test", n=args.questions, seed=0)
    problems = task.problems()
    levels = sorted({p.difficulty for p in problems if p.difficulty is not None})
    hard = (levels[-2], levels[-1]) if len(levels) > 1 else (levels[-1], levels[-1])
    gen, prm = load()
    rows = []
    t_all = time.perf_counter()

    # ttscale: beam (reference) and particle filtering through their real code
    for label, name, opts in [
            (f"ttscale beam M=4 @{N}", "beam", {"beam_width": 4}),
            (f"ttscale particle-filtering @{N} (systematic)", "particle-filtering", {}),
            (f"ttscale particle-filtering @{N} (multinomial)", "particle-filtering",
             {"resampling": "multinomial"})]:
        fn = get_strategy(name)
        answers, walls, toks = [], [], []
        for p in problems:
            ctx = SearchContext(task=task, generator=gen, scorer=prm, seed=args.seed,
                                temperature=args.temperature, max_step_tokens=MAX_STEP_TOKENS,
                                max_rounds=args.max_steps + 1, options=dict(opts))
            t0 = time.perf_counter()
            r = fn(p, N, ctx)
            walls.append(time.perf_counter() - t0)
            answers.append(r.answer)
            toks.append(r.cost.generated_tokens)
        rows.append(summary(label, answers, walls, toks, problems, hard))
        print(f"done: {label} ({sum(walls):.0f} s)", file=sys.stderr, flush=True)

    # its_hub: its ParticleFiltering over the same models through the adapters
    lm_cls, prm_cls = its_hub_adapters(gen, prm)
    lm = lm_cls()
    sg = StepGeneration(max_steps=args.max_steps, step_token="\n", stop_token="A:",
                        temperature=args.temperature)
    pf = ParticleFiltering(sg, prm_cls())  # resampling: multinomial; selection: argmax
    answers, walls, toks = [], [], []
    for p in problems:
        qseed = zlib.crc32(repr((args.seed, p.id)).encode()) & 0x7FFFFFFF
        random.seed(qseed)
        np.random.seed(qseed)
        lm.reset(qseed)
        tok0 = lm.generated_tokens
        t0 = time.perf_counter()
        res = asyncio.run(pf.ainfer(lm, p.prompt, N, return_response_only=False))
        walls.append(time.perf_counter() - t0)
        answers.append(task.extract_answer(res.the_one["content"]))
        toks.append(lm.generated_tokens - tok0)
    label = f"its_hub ParticleFiltering @{N} (multinomial)"
    rows.append(summary(label, answers, walls, toks, problems, hard))
    print(f"done: {label} ({sum(walls):.0f} s)", file=sys.stderr, flush=True)

    print(f"\n{'method':<48}{'acc':>7}{f'ops={hard[0]}':>7}{f'ops={hard[1]}':>7}"
          f"{'gen tok/q':>10}{'wall s/q':>10}")
    for r in rows:
        h0, h1 = (format(r[k], "7.3f") if not math.isnan(r[k]) else f"{'-':>7}"
                  for k in ("hard0", "hard1"))
        print(f"{r['method']:<48}{r['acc']:7.3f}{h0}{h1}{r['tokens']:10.0f}{r['wall']:10.2f}")
    its = rows[-1]["wall"]
    print(f"\nwall ratio its_hub / ttscale particle-filtering: {its / rows[1]['wall']:.2f}x "
          f"(systematic), {its / rows[2]['wall']:.2f}x (multinomial)")
    print(f"{len(problems)} test questions, seed {args.seed}, N={N}, policy temperature "
          f"{args.temperature} (both sides), PF weight temperature 1, max_steps "
          f"{args.max_steps} (ttscale max_rounds {args.max_steps + 1}), step max_tokens "
          f"{MAX_STEP_TOKENS}; total {time.perf_counter() - t_all:.0f} s", flush=True)


if __name__ == "__main__":
    main()
