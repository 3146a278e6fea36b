"""Search-strategy overhead and beam-vs-best-of-N wall time on the in-process engine.

For each strategy, runs the same testbed problems at the same budget N and prints:

* ``overhead``: the share of wall time spent outside engine and verifier calls (the strategy's
  own Python: splitting, ranking, bookkeeping, trace); the target is < 5 %;
* ``wall/bon``: wall time relative to best-of-N at equal N (target for beam: <= 1.5 on real
  engines, where a round's latency is one batched call);
* generated and prompt tokens per problem, and search rounds per problem (one engine call
  each, plus the rollouts of lookahead).

Run::

    python bench/bench_strategies.py [--model PATH] [--prm PATH] [--budget 16] [--problems 8]

Default policy: the shipped ``policy-small`` testbed model if present, else a random-init
testbed-size Llama (its steps are noise, so its beam searches run to ``--max-rounds``: use it for
overhead only). Default verifier: a stand-in that scores a step by a hash of its text (costs
nothing, so ``overhead`` is about the strategy alone); ``--prm`` loads a real one through
``ttscale.verifiers.load_verifier``.
"""

from __future__ import annotations

import argparse
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch

from ttscale.strategies import SearchContext, get_strategy, own_options
from ttscale.tasks.testbed import TestbedTask
from ttscale.verifiers.base import StepScores

MODELS = Path(__file__).resolve().parents[1] / "src/ttscale/testbed/models"


class HashScorer:
    """Deterministic scores in [0, 1] from a hash of each prefix: a free stand-in verifier."""

    num_parameters = 0

    def __init__(self) -> None:
        self.calls = 0

    def score(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> StepScores:
        self.calls += 1
        out = []
        for prompt, steps in zip(prompts, solutions, strict=True):
            acc, scores = prompt, []
            for s in steps:
                acc += s + "\n"
                scores.append(zlib.crc32(acc.encode()) / 2**32)
            out.append(scores)
        return StepScores(out, sum(len(p) for p in prompts))


def load_policy(path: str | None):
    from ttscale.engines.hf import HFGenerator

    p = Path(path) if path else MODELS / "policy-small"
    if p.exists():
        return HFGenerator.from_pretrained(p), str(p)
    from transformers import LlamaConfig, LlamaForCausalLM

    from ttscale.testbed.tokenizer import build_tokenizer

    tok = build_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=384,
                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return HFGenerator(LlamaForCausalLM(cfg), tok), "random-init llama (hidden 128, 4 layers)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--prm")
    ap.add_argument("--budget", type=int, default=16)
    ap.add_argument("--beam-width", type=int, default=4)
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--max-rounds", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--strategies", nargs="+",
                    default=["majority", "best-of-n", "beam", "lookahead", "dvts"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    gen, policy_name = load_policy(args.model)
    if args.prm:
        from ttscale.verifiers import load_verifier

        scorer = load_verifier(args.prm)
    else:
        scorer = HashScorer()
    task = TestbedTask(split="test", n=args.problems)
    problems = task.problems()
    print(f"policy: {policy_name}; verifier: {args.prm or 'hash stand-in'}; N={args.budget}, "
          f"M={args.beam_width}, {len(problems)} problems, {args.threads} thread(s)")
    base = SearchContext(task=task, generator=gen, scorer=scorer, max_step_tokens=16,
                         max_solution_tokens=96, max_rounds=args.max_rounds,
                         options={"beam_width": args.beam_width})
    warm = base.fresh()
    warm.options = {}
    get_strategy("majority")(problems[0], 2, warm)  # warm-up (first call allocations)
    walls: dict[str, float] = {}
    print(f"{'strategy':<20}{'wall s':>9}{'wall/bon':>10}{'overhead':>10}{'gen tok':>10}"
          f"{'prompt tok':>12}{'rounds':>8}")
    for name in args.strategies:
        fn = get_strategy(name)
        wall = engine = scorer_s = 0.0
        gen_tok = prompt_tok = rounds = 0
        for problem in problems:
            ctx = base.fresh()
            ctx.options = own_options(name, {"beam_width": args.beam_width})
            t0 = time.perf_counter()
            result = fn(problem, args.budget, ctx)
            wall += time.perf_counter() - t0
            engine += ctx.engine_s
            scorer_s += ctx.scorer_s
            gen_tok += result.cost.generated_tokens
            prompt_tok += result.cost.prompt_tokens
            rounds += len(result.trace)
        walls[name] = wall
        bon = walls.get("best-of-n")
        ratio = f"{wall / bon:.2f}" if bon else "-"
        k = len(problems)
        print(f"{name:<20}{wall:>9.2f}{ratio:>10}{(wall - engine - scorer_s) / wall:>9.1%} "
              f"{gen_tok / k:>10.0f}{prompt_tok / k:>12.0f}{rounds / k:>8.1f}")


if __name__ == "__main__":
    main()
