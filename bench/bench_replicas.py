"""Throughput of the OpenAI-compatible engine against 1, 2, ... replicas of a policy server.

Starts R ``ttscale serve-policy`` processes (one torch thread each, EOS ignored so every sample
costs the same), gives ``OpenAIGenerator`` all their URLs, and sends the same workload
(``--prompts`` prompts x ``--n`` samples of ``--max-tokens`` tokens, all at once) for each R.
Prints generated tokens per second and the speed-up over one replica, and how the requests were
spread over the replicas.

Run::

    python bench/bench_replicas.py [--replicas 1,2] [--prompts 32] [--n 4] [--max-tokens 48]

Throughput can only grow while there are free cores: on a 2-core machine (shared with other
work) expect at most ~2x at 2 replicas. On GPUs the same client spreads load over vLLM replicas
(see docs/engines.md).
"""

from __future__ import annotations

import argparse
import time

from serve_procs import policy_dir, policy_servers

from ttscale.engines.base import SamplingParams
from ttscale.engines.openai import OpenAIGenerator


def measure(urls: list[str], prompts: list[str], params: SamplingParams,
            repeats: int) -> tuple[float, int, dict[str, int]]:
    gen = OpenAIGenerator(urls, max_concurrency=2)
    gen.generate(prompts[:2], SamplingParams(n=1, max_tokens=4, seed=0))  # warm up
    best, tokens = float("inf"), 0
    for r in range(repeats):
        t0 = time.perf_counter()
        out = gen.generate(prompts, SamplingParams(**{**params.__dict__, "seed": r}))
        best = min(best, time.perf_counter() - t0)
        tokens = sum(c.generated_tokens for row in out for c in row)
    spread = dict(gen.pool.stats.per_replica)
    gen.close()
    return best, tokens, spread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="policy folder (default: testbed policy-small, else a "
                    "random-init model)")
    ap.add_argument("--hidden", type=int, default=0,
                    help="serve a random-init model of this width instead (more work per token)")
    ap.add_argument("--replicas", default="1,2")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    model = policy_dir(args.model) if not args.hidden else \
        policy_dir(None, hidden=args.hidden, layers=4, force_random=True)
    prompts = [f"Q:{10 + 3 * i}a+{i % 9 + 1}b*{i % 8 + 2}\n" for i in range(args.prompts)]
    params = SamplingParams(n=args.n, temperature=1.0, max_tokens=args.max_tokens)
    print(f"model {model}; {args.prompts} prompts x n={args.n} x {args.max_tokens} tokens")
    print(f"{'replicas':>8} {'wall s':>8} {'tokens':>8} {'tok/s':>9} {'speed-up':>9}  requests "
          "per replica")
    base = None
    for r in [int(x) for x in args.replicas.split(",")]:
        with policy_servers(model, r) as urls:
            wall, tokens, spread = measure(urls, prompts, params, args.repeats)
        rate = tokens / wall
        base = base or rate
        print(f"{r:>8} {wall:>8.2f} {tokens:>8} {rate:>9.0f} {rate / base:>8.2f}x  "
              f"{sorted(spread.values())}")


if __name__ == "__main__":
    main()
