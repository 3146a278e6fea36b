"""Generated tokens/s of the in-process engine (HFGenerator) vs plain ``model.generate``.

Same model, same prompts (distinct testbed problems, one sample each), same max tokens, sampling
at temperature 1; both stop rows at EOS. Tokens counted = tokens each row really generated (up to
and including its EOS), so padding that ``model.generate`` keeps computing after a row ended does
not count. Run::

    python bench/bench_engine.py [--model PATH] [--batch 64 256] [--max-tokens 64] [--threads 2]

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
from ttscale.tasks.testbed import TestbedTask

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "src/ttscale/testbed/models/policy-small"


def random_testbed_model() -> HFGenerator:
    from transformers import LlamaConfig, LlamaForCausalLM

    from ttscale.testbed.tokenizer import build_tokenizer

    tok = build_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=384,
                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=256, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return HFGenerator(LlamaForCausalLM(cfg), tok)


def bench_engine(gen: HFGenerator, prompts: list[str], max_tokens: int, seed: int) -> tuple:
    params = SamplingParams(n=1, temperature=1.0, max_tokens=max_tokens, seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    out = gen.generate(prompts, params)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return sum(c.generated_tokens for row in out for c in row), dt, dc


def bench_hf_generate(gen: HFGenerator, prompts: list[str], max_tokens: int, seed: int,
                      eos: list[int] | None) -> tuple:
    tok, model = gen.tokenizer, gen.model
    enc = [([gen.bos_id] if gen.bos_id is not None else [])
           + tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(x) for x in enc)
    ids = torch.full((len(enc), width), gen.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, x in enumerate(enc):
        ids[i, width - len(x):] = torch.tensor(x)
        mask[i, width - len(x):] = 1
    torch.manual_seed(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0,
                             top_p=1.0, top_k=0, max_new_tokens=max_tokens, min_new_tokens=0,
                             eos_token_id=eos, pad_token_id=gen.pad_id)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    new = out[:, width:]
    n = 0
    for row in new.tolist():
        k = len(row)
        for j, t in enumerate(row):
            if eos and t in eos:
                k = j + 1
                break
        n += k
    return n, dt, dc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="policy model dir (default: policy-small)")
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--ignore-eos", action="store_true", help="every row runs to --max-tokens")
    ap.add_argument("--repeats", type=int, default=1, help="best of this many timings")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.model:
        gen, name = HFGenerator.from_pretrained(args.model), args.model
    elif (DEFAULT_MODEL / "config.json").is_file():
        gen, name = HFGenerator.from_pretrained(DEFAULT_MODEL), str(DEFAULT_MODEL)
    else:
        gen, name = random_testbed_model(), "random-init testbed Llama (hidden 128, 4 layers)"
    if args.ignore_eos:
        gen.eos_ids = []
        gen._eos_t = torch.tensor([-1])
    eos = gen.eos_ids or None
    problems = TestbedTask(split="test", n=max(args.batch), seed=args.seed).problems()

    print(f"model: {name} ({gen.num_parameters:,} parameters), torch threads: "
          f"{torch.get_num_threads()}, max_tokens: {args.max_tokens}, T=1, "
          f"eos: {'ignored' if args.ignore_eos else 'stops a row'}")
    warm = [p.prompt for p in problems[:4]]
    bench_engine(gen, warm, 4, 0)
    bench_hf_generate(gen, warm, 4, 0, eos)
    print("tok/s = generated tokens / wall seconds; cpu tok/s = per CPU-second of this process "
          "(less sensitive to other load on a shared machine)")
    print(f"{'batch':>6} {'ours tok/s':>11} {'generate tok/s':>15} {'ratio':>6} |"
          f" {'ours cpu tok/s':>15} {'generate cpu tok/s':>19} {'ratio':>6} | tokens ours/generate")
    for b in args.batch:
        prompts = [p.prompt for p in problems[:b]]
        ours, hf = [], []
        for r in range(args.repeats):
            ours.append(bench_engine(gen, prompts, args.max_tokens, args.seed + r))
            hf.append(bench_hf_generate(gen, prompts, args.max_tokens, args.seed + r, eos))
        (ne, te, ce), (nh, th, ch) = (max(x, key=lambda v: v[0] / v[1]) for x in (ours, hf))
        we, wh = ne / te, nh / th
        ue = max(n / c for n, _, c in ours)
        uh = max(n / c for n, _, c in hf)
        print(f"{b:>6} {we:>11,.0f} {wh:>15,.0f} {we / wh:>5.1f}x |"
              f" {ue:>15,.0f} {uh:>19,.0f} {ue / uh:>5.1f}x | {ne}/{nh}")


if __name__ == "__main__":
    main()
