"""Generated tokens/s of the in-process engine (HFGenerator) vs plain ``model.generate``.

Same model, same prompts, same max tokens, sampling at temperature 1 (top_p 1, no top_k); both
stop a row at EOS. Two workloads per batch size B:

* ``distinct``: B different testbed prompts, one sample each;
* ``n=16``: B/16 prompts with 16 samples each (``num_return_sequences`` for ``generate``), the
  best-of-N shape, where the engine prefills each prompt once.

Tokens counted = tokens each row really generated (up to and including its EOS); padding that
``model.generate`` keeps computing after a row ended does not count. Both wall-clock and
process-CPU rates are printed: on a shared machine the CPU rate is the steadier one. Run::

    python bench/bench_engine.py [--model PATH] [--batch 64 256] [--max-tokens 64] [--threads 2]
                                 [--logprobs K]

Default model: the shipped ``policy-small`` testbed model if present, else a random-init
testbed-size Llama (hidden 128, 4 layers, the testbed char tokenizer). A random model samples EOS
early and often; ``--ignore-eos`` makes every row run to ``--max-tokens`` (pure decode speed).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ttscale.engines.base import SamplingParams
from ttscale.engines.hf import HFGenerator
from ttscale.tasks import testbed

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "src/ttscale/testbed/models/policy-small"
SHARED_N = 16


def random_testbed_model(**kw) -> HFGenerator:
    from transformers import LlamaConfig, LlamaForCausalLM

    from ttscale.testbed.tokenizer import build_tokenizer

    tok = build_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=384,
                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=256, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return HFGenerator(LlamaForCausalLM(cfg), tok, **kw)


def timed(fn, *args) -> tuple:
    """(tokens, wall seconds, process CPU seconds) of ``fn(*args)``."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = fn(*args)
    return n, time.perf_counter() - t0, time.process_time() - c0


def run_engine(gen: HFGenerator, prompts: list[str], n: int, max_tokens: int, seed: int,
               logprobs: int | None = None) -> int:
    params = SamplingParams(n=n, temperature=1.0, max_tokens=max_tokens, seed=seed,
                            logprobs=logprobs)
    return sum(c.generated_tokens for row in gen.generate(prompts, params) for c in row)


def run_generate(gen: HFGenerator, prompts: list[str], n: int, max_tokens: int, seed: int,
                 eos: list[int] | None) -> int:
    enc = [([gen.bos_id] if gen.bos_id is not None else [])
           + gen.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(x) for x in enc)
    ids = torch.full((len(enc), width), gen.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, x in enumerate(enc):
        ids[i, width - len(x):] = torch.tensor(x)
        mask[i, width - len(x):] = 1
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = gen.model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                                 temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max_tokens,
                                 # without EOS ids, forbid EOS so that every row runs to the end
                                 min_new_tokens=0 if eos else max_tokens,
                                 num_return_sequences=n, eos_token_id=eos,
                                 pad_token_id=gen.pad_id)
    total = 0
    for row in out[:, width:].tolist():
        ends = [j for j, t in enumerate(row) if eos and t in eos]
        total += ends[0] + 1 if ends else len(row)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="policy model dir (default: policy-small)")
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--ignore-eos", action="store_true", help="every row runs to --max-tokens")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--logprobs", type=int, default=None,
                    help="the engine also returns the top-K log-probabilities of every token")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    kw = {"eos_token_ids": []} if args.ignore_eos else {}
    if args.model:
        gen, name = HFGenerator.from_pretrained(args.model, **kw), args.model
    elif (DEFAULT_MODEL / "config.json").is_file():
        gen, name = HFGenerator.from_pretrained(DEFAULT_MODEL, **kw), str(DEFAULT_MODEL)
    else:
        gen, name = random_testbed_model(**kw), "random-init testbed Llama (hidden 128, 4 layers)"
    eos = gen.eos_ids or None
    prompts = [p.prompt for p in testbed.TestbedTask(split="test", n=max(args.batch),
                                                     seed=args.seed).problems()]

    print(f"model: {name} ({gen.num_parameters:,} parameters); torch threads: "
          f"{torch.get_num_threads()}; max_tokens {args.max_tokens}; T=1; "
          f"EOS {'ignored' if args.ignore_eos else 'ends a row'}; best of {args.repeats}; "
          f"engine logprobs: {args.logprobs or 'off'}")
    run_engine(gen, prompts[:4], 2, 4, 0)  # warm up both paths
    run_generate(gen, prompts[:4], 2, 4, 0, eos)
    print(f"{'workload':>14} {'rows':>5} | {'engine':>9} {'generate':>9} {'ratio':>6} |"
          f" {'engine':>9} {'generate':>9} {'ratio':>6} | tokens engine/generate")
    print(f"{'':>14} {'':>5} | {'wall tok/s':>20} {'':>6} | {'CPU tok/s':>19} {'':>6} |")
    for b in args.batch:
        for label, n in (("distinct", 1), (f"n={SHARED_N}", SHARED_N)):
            if b % n:
                continue
            ps = prompts[:b // n]
            ours, hf = [], []
            for r in range(args.repeats):  # interleaved, so both see the same machine load
                ours.append(timed(run_engine, gen, ps, n, args.max_tokens, args.seed + r,
                                  args.logprobs))
                hf.append(timed(run_generate, gen, ps, n, args.max_tokens, args.seed + r, eos))
            we, wh = (max(t / w for t, w, _ in x) for x in (ours, hf))
            ce, ch = (max(t / c for t, _, c in x) for x in (ours, hf))
            print(f"{label:>14} {b:>5} | {we:>9,.0f} {wh:>9,.0f} {we / wh:>5.2f}x |"
                  f" {ce:>9,.0f} {ch:>9,.0f} {ce / ch:>5.2f}x | {ours[0][0]}/{hf[0][0]}")


if __name__ == "__main__":
    main()
