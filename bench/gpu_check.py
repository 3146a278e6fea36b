"""GPU check: the in-process engine against raw batched decode, and the in-process PRM at 7B.

Three measurements on random-init models built here (no network, no downloads, no checkpoint):

* ``HFGenerator`` vs ``model.generate`` on Qwen2.5-0.5B- and 1.5B-shaped models (Qwen2
  architecture, real layer/head/vocabulary sizes): the same prompts, the same number of new
  tokens (EOS never ends a row, so both decode exactly ``--max-tokens`` per row), sampling at
  temperature 1; generated tokens per second, and the engine's share of the baseline's speed
  (goal: >= 50%). Two workloads: ``distinct`` (B different prompts) and ``n=16`` (B/16 prompts
  with 16 samples each, best-of-N's shape, where the engine prefills each prompt once).
* ``QwenPRM`` (the Qwen2.5-Math-PRM convention) on a Qwen2.5-Math-PRM-7B-shaped token classifier:
  scored tokens per second over a batch of multi-step solutions, and peak device memory.

The tokenizer is synthetic (a word-level vocabulary ``t0 .. tN`` of the model's full size plus
Qwen's chat and step tokens), so every id a random model samples decodes. Run::

    python bench/gpu_check.py                 # on a GPU (bf16), under 8 minutes on one H200
    python bench/gpu_check.py --tiny          # small shapes, CPU (float32): checks the script

Prints one table; nothing is asserted (speed goals are read, not tested).
"""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import dataclass
from typing import Any

import torch

from ttscale.engines.base import SamplingParams
from ttscale.engines.hf import HFGenerator

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + ' ' + message['content'] + '<|im_end|>' + ' ' }}"
    "{%- endfor %}"
)


@dataclass(frozen=True)
class Shape:
    """A Qwen2 model shape (the real sizes, or small ones for ``--tiny``)."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tie: bool


FULL = {
    "0.5B": Shape("Qwen2.5-0.5B", 896, 24, 14, 2, 4864, 151936, True),
    "1.5B": Shape("Qwen2.5-1.5B", 1536, 28, 12, 2, 8960, 151936, True),
    "7B": Shape("Qwen2.5-Math-PRM-7B", 3584, 28, 28, 4, 18944, 152064, False),
}
TINY = {
    "0.5B": Shape("tiny (0.5B role)", 64, 2, 4, 2, 128, 2048, True),
    "1.5B": Shape("tiny (1.5B role)", 96, 3, 4, 2, 192, 2048, True),
    "7B": Shape("tiny (7B role)", 128, 3, 4, 2, 256, 2048, False),
}


def synthetic_tokenizer(vocab: int) -> Any:
    """Word-level tokenizer: ids 0..vocab-1 are ``t0``..``t{vocab-1}``, with Qwen's chat and step
    tokens among them (so the PRM's chat input has real ``<extra_0>`` tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>", "<unk>"]
    words = {t: i for i, t in enumerate(specials)}
    words.update({f"t{i}": i for i in range(len(specials), vocab)})
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>", unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build(shape: Shape, device: str, dtype: torch.dtype, head: str = "lm") -> Any:
    """A random-init Qwen2 model of ``shape`` made directly on ``device`` in ``dtype``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForTokenClassification

    cfg = Qwen2Config(vocab_size=shape.vocab, hidden_size=shape.hidden,
                      num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                      num_key_value_heads=shape.kv_heads, intermediate_size=shape.intermediate,
                      max_position_embeddings=4096, tie_word_embeddings=shape.tie,
                      pad_token_id=0, bos_token_id=0, eos_token_id=2, num_labels=2)
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            cls = Qwen2ForCausalLM if head == "lm" else Qwen2ForTokenClassification
            model = cls(cfg)
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def size(params: int) -> str:
    return f"{params / 1e9:.2f}B" if params >= 1e8 else f"{params / 1e6:.2f}M"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def prompts_of(n: int, length: int, vocab: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (n, length), generator=g)
    return [" ".join(f"t{i}" for i in row.tolist()) for row in ids]


def run_engine(gen: HFGenerator, prompts: list[str], n: int, max_tokens: int) -> int:
    params = SamplingParams(n=n, temperature=1.0, max_tokens=max_tokens, seed=0)
    return sum(c.generated_tokens for row in gen.generate(prompts, params) for c in row)


def run_generate(gen: HFGenerator, prompts: list[str], n: int, max_tokens: int) -> int:
    """``model.generate`` on the same left-padded prompts: the baseline decode loop."""
    enc = [gen.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(x) for x in enc)
    ids = torch.full((len(enc), width), gen.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, x in enumerate(enc):
        ids[i, width - len(x):] = torch.tensor(x)
        mask[i, width - len(x):] = 1
    with torch.inference_mode():
        out = gen.model.generate(input_ids=ids.to(gen.device), attention_mask=mask.to(gen.device),
                                 do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                 max_new_tokens=max_tokens, min_new_tokens=max_tokens,
                                 num_return_sequences=n, eos_token_id=None,
                                 pad_token_id=gen.pad_id)
    return int(out[:, width:].numel())


def timed(device: str, fn: Any, *args: Any) -> tuple[int, float]:
    sync(device)
    t0 = time.perf_counter()
    n = fn(*args)
    sync(device)
    return n, time.perf_counter() - t0


def peak_gib(device: str) -> float | None:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def engine_rows(role: str, shape: Shape, device: str, dtype: torch.dtype, batch: int,
                prompt_len: int, max_tokens: int, repeats: int) -> list[list[str]]:
    model = build(shape, device, dtype)
    gen = HFGenerator(model, synthetic_tokenizer(shape.vocab), add_bos=False,
                      eos_token_ids=[], max_batch=max(batch, 16))
    params = sum(p.numel() for p in model.parameters())
    rows = []
    warm = prompts_of(2, 8, shape.vocab, 99)
    run_engine(gen, warm, 2, 4)
    run_generate(gen, warm, 2, 4)
    for label, n in (("distinct", 1), ("n=16", 16)):
        ps = prompts_of(max(1, batch // n), prompt_len, shape.vocab, 1)
        reset_peak(device)
        ours = [timed(device, run_engine, gen, ps, n, max_tokens) for _ in range(repeats)]
        mem = peak_gib(device)
        base = [timed(device, run_generate, gen, ps, n, max_tokens) for _ in range(repeats)]
        e = max(t / s for t, s in ours)
        b = max(t / s for t, s in base)
        rows.append([f"engine {role}", shape.name, size(params), label,
                     f"{len(ps) * n}x{prompt_len}+{max_tokens}", f"{e:,.0f}", f"{b:,.0f}",
                     f"{e / b:.2f}", "" if mem is None else f"{mem:.1f}"])
    del gen, model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows


def prm_row(shape: Shape, device: str, dtype: torch.dtype, n_solutions: int, steps: int,
            step_len: int, repeats: int) -> list[str]:
    from ttscale.verifiers.hf_prm import QwenPRM

    model = build(shape, device, dtype, head="cls")
    tok = synthetic_tokenizer(shape.vocab)
    prm = QwenPRM(model, tok, system_prompt="t7 t8 t9", max_batch=16)
    params = sum(p.numel() for p in model.parameters())
    prompts = prompts_of(n_solutions, 64, shape.vocab, 2)
    sols = [prompts_of(steps, step_len, shape.vocab, 10 + i) for i in range(n_solutions)]
    prm.score(prompts[:2], sols[:2])  # warm up
    reset_peak(device)
    best = 0.0
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        res = prm.score(prompts, sols)
        sync(device)
        best = max(best, res.tokens / (time.perf_counter() - t0))
    mem = peak_gib(device)
    del prm, model
    gc.collect()
    return ["PRM (QwenPRM)", shape.name, size(params), "score",
            f"{n_solutions}x{steps} steps", f"{best:,.0f}", "", "",
            "" if mem is None else f"{mem:.1f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="small shapes (runs on CPU)")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--batch", type=int, default=None, help="rows decoded together")
    ap.add_argument("--prompt-len", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    ap.add_argument("--skip-prm", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: 1 with --tiny, else torch's)")
    args = ap.parse_args()
    if args.threads or args.tiny:
        torch.set_num_threads(args.threads or 1)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    shapes = TINY if args.tiny else FULL
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    batch = args.batch or (16 if args.tiny else 64)
    prompt_len = args.prompt_len or (16 if args.tiny else 256)
    max_tokens = args.max_tokens or (16 if args.tiny else 256)
    where = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    print(f"device: {where}; dtype {str(dtype).removeprefix('torch.')}; torch "
          f"{torch.__version__}; sampling T=1, EOS ignored; best of {args.repeats}")
    t0 = time.perf_counter()
    rows = []
    for role in ("0.5B", "1.5B"):
        rows += engine_rows(role, shapes[role], device, dtype, batch, prompt_len, max_tokens,
                            args.repeats)
    if not args.skip_prm:
        rows.append(prm_row(shapes["7B"], device, dtype, 32 if not args.tiny else 4,
                            8, 64 if not args.tiny else 8, args.repeats))
    head = ["what", "shape", "params", "workload", "rows x prompt+new", "tok/s",
            "generate tok/s", "ratio", "peak GiB"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print(" | ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)))
    print(f"ratio = engine / model.generate tokens per second (goal >= 0.50); "
          f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
