"""The in-process transformers policy engine (the embedded default on the testbed models).

Why not ``model.generate``: for models of a few hundred thousand parameters its per-step Python
overhead and cache copying dominate; search strategies call the engine thousands of times. This
engine drives the model's forward directly:

* each distinct prompt is prefilled once (left padding, attention mask, explicit position ids) and
  its KV cache rows are then repeated for its ``n`` samples (the reuse is reported as
  ``prompt_tokens_cached``);
* decoding writes into a growing cache (``hf_cache``) and, on CPU for plain architectures, uses a
  ``bmm`` attention kernel (``hf_attention``);
* finished rows are dropped from the running batch (the cache is compacted once enough of them
  have finished), and rows are micro-batched to ``max_batch``;
* stop strings are detected at decode level: only tokens that could complete a stop string trigger
  a text check, so the common step costs no detokenisation.

Sampling uses one ``torch.Generator`` seeded from ``params.seed``: identical calls give identical
completions. ``top_k``, ``min_p``, ``repetition_penalty`` and ``logprobs`` follow
``hf_sampling`` (log-probabilities are the model's own distribution, before temperature and
truncation); with their neutral values the engine samples exactly as it did before they existed.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ttscale.engines.base import SamplingParams, check_params
from ttscale.engines.hf_attention import NAME as BMM_ATTENTION
from ttscale.engines.hf_attention import supports_bmm, use_attention
from ttscale.engines.hf_cache import cache_kwarg, make_cache, select_rows
from ttscale.engines.hf_sampling import LogprobRecorder, pick_tokens
from ttscale.hf_loading import check_model_dir, count_parameters, load_kwargs, load_tokenizer
from ttscale.types import Completion

__all__ = ["HFGenerator", "Sample", "pick_tokens"]


@dataclass
class Sample:
    """One completion with its token ids (and, on request, the logits of every step)."""

    token_ids: list[int]
    text: str
    finish_reason: str
    prompt_tokens: int
    prompt_tokens_cached: int
    logits: torch.Tensor | None = None
    token_logprobs: list[float] | None = None
    top_logprobs: list[list[float]] | None = None

    def completion(self) -> Completion:
        return Completion(self.text, self.finish_reason, self.prompt_tokens, len(self.token_ids),
                          self.prompt_tokens_cached, self.token_logprobs, self.top_logprobs)


class HFGenerator:
    """A ``Generator`` over a transformers causal LM held in this process.

    ``max_batch`` caps the rows decoded together (prompts x samples); ``add_bos`` prepends the
    tokenizer's BOS token (the testbed models are trained on ``<s>`` + prompt + solution +
    ``</s>``).
    ``fast_attention``: None uses the ``bmm`` kernel where it applies (CPU, plain architectures),
    False keeps the model's own attention, True requires the kernel.
    ``compact_fraction``: the running batch is compacted once this fraction of its rows finished.
    ``eos_token_ids``: the ids that end a sequence (default: the generation config's and the
    tokenizer's EOS; ``[]`` never stops at EOS, e.g. to measure raw decode speed).
    """

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 512, add_bos: bool = True,
                 fast_attention: bool | None = None, compact_fraction: float = 0.125,
                 eos_token_ids: list[int] | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not 0 <= compact_fraction <= 1:
            raise ValueError(f"compact_fraction must be in [0, 1], got {compact_fraction}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.compact_fraction = compact_fraction
        self.num_parameters = count_parameters(model)
        self.device = next(model.parameters()).device
        self.bos_id: int | None = tokenizer.bos_token_id if add_bos else None
        self.eos_ids = _eos_ids(model, tokenizer) if eos_token_ids is None else list(eos_token_ids)
        self.pad_id = next((i for i in (tokenizer.pad_token_id, *self.eos_ids) if i is not None), 0)
        self.max_len: int | None = getattr(model.config, "max_position_embeddings", None)
        bmm_ok = supports_bmm(model)
        if fast_attention and not bmm_ok:
            raise ValueError("fast_attention=True needs a llama/mistral/qwen2/qwen3 model on CPU")
        self._attention = BMM_ATTENTION if bmm_ok and fast_attention is not False else None
        self._cache_kw = cache_kwarg(model)
        params = _forward_params(model)
        self._keep_kw = next(({k: 1} for k in ("logits_to_keep", "num_logits_to_keep")
                              if k in params), {})
        self._eos_t = torch.tensor(self.eos_ids or [-1], device=self.device)
        self._stop_masks: dict[tuple[str, ...], torch.Tensor] = {}
        self._token_texts: list[str] | None = None

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu",
                        dtype: str | torch.dtype | None = None, max_batch: int = 512,
                        add_bos: bool = True, **kwargs: Any) -> HFGenerator:
        """Load a local checkpoint directory (``save_pretrained`` output with its tokenizer)."""
        from transformers import AutoModelForCausalLM

        p = check_model_dir(path, "policy model")
        tokenizer = load_tokenizer(p)
        try:
            model = AutoModelForCausalLM.from_pretrained(str(p), **load_kwargs(dtype, device))
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"cannot load a causal LM from {str(p)!r}: {e}") from e
        return cls(model.to(device), tokenizer, max_batch=max_batch, add_bos=add_bos, **kwargs)

    # -- public API -------------------------------------------------------------------------

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions per prompt, in prompt order (see ``Generator``)."""
        return [[s.completion() for s in row] for row in self.sample(prompts, params)]

    def sample(self, prompts: list[str], params: SamplingParams, *,
               return_logits: bool = False) -> list[list[Sample]]:
        """Like ``generate`` but with token ids, and each step's raw logits if asked."""
        check_params(params)
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be a list of strings")
        if not prompts:
            return []
        counts = Counter(prompts)
        uniq = list(counts)
        ids = self._encode(uniq)
        limits = [self._limit(u, len(x), params.max_tokens) for u, x in zip(uniq, ids, strict=True)]
        # longest prompts first so that micro-batches pad little; rows of a prompt stay together
        order = sorted(range(len(uniq)), key=lambda u: -len(ids[u]))
        rows = [u for u in order for _ in range(counts[uniq[u]] * params.n)]
        seed = params.seed if params.seed is not None else random.SystemRandom().getrandbits(63)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed)
        done: dict[int, list[Sample]] = {u: [] for u in range(len(uniq))}
        with torch.inference_mode(), use_attention(self.model, self._attention):
            for start in range(0, len(rows), self.max_batch):
                chunk = rows[start:start + self.max_batch]
                groups = list(Counter(chunk).items())  # insertion order = row order
                for u, samples in zip([g[0] for g in groups],
                                      self._decode(groups, ids, limits, params, gen,
                                                   return_logits), strict=True):
                    done[u].extend(samples)
        out, taken = [], Counter()
        index = {p: u for u, p in enumerate(uniq)}
        for p in prompts:
            u = index[p]
            out.append(done[u][taken[u]:taken[u] + params.n])
            taken[u] += params.n
        return out

    # -- internals --------------------------------------------------------------------------

    def _encode(self, prompts: list[str]) -> list[list[int]]:
        enc = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        ids = [([self.bos_id] if self.bos_id is not None else []) + list(x) for x in enc]
        if any(not x for x in ids):
            raise ValueError("an empty prompt needs a BOS token to start from; this tokenizer "
                             "has none (or add_bos=False)")
        return ids

    def _limit(self, prompt: str, n_prompt: int, max_tokens: int) -> int:
        """How many tokens a row of this prompt may generate (the context window caps it)."""
        if self.max_len is None:
            return max_tokens
        room = self.max_len - n_prompt
        if room < 1:
            raise ValueError(f"prompt of {n_prompt} tokens leaves no room in the model's context "
                             f"of {self.max_len} tokens: {prompt[:60]!r}")
        return min(max_tokens, room)

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 cache: Any, keep_last: bool) -> torch.Tensor:
        kw = dict(self._keep_kw) if keep_last else {}
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                         use_cache=True, **{self._cache_kw: cache}, **kw)
        return out.logits[:, -1, :]

    def _decode(self, groups: list[tuple[int, int]], ids: list[list[int]], limits: list[int],
                params: SamplingParams, gen: torch.Generator,
                return_logits: bool) -> list[list[Sample]]:
        """Prefill each group's prompt once, repeat it ``count`` times, decode all rows."""
        dev = self.device
        lens = [len(ids[u]) for u, _ in groups]
        width = max(lens)
        max_new = max(limits[u] for u, _ in groups)
        cache, logits, pmask, positions = self._prefill([ids[u] for u, _ in groups], width,
                                                        max_new)
        expand = torch.repeat_interleave(torch.arange(len(groups), device=dev),
                                         torch.tensor([c for _, c in groups], device=dev))
        if len(expand) > len(groups):  # some prompt has several samples: repeat its rows
            select_rows(cache, expand)
            logits = logits.index_select(0, expand)
        n_rows = len(expand)
        mask = torch.zeros((n_rows, width + max_new), dtype=torch.long, device=dev)
        mask[:, :width] = pmask.index_select(0, expand)
        next_pos = positions[:, -1].index_select(0, expand) + 1
        row_group = expand.tolist()
        limit = torch.tensor([limits[groups[g][0]] for g in row_group], device=dev)
        slot_row = torch.arange(n_rows, device=dev)  # batch slot -> chunk row
        alive = torch.ones(n_rows, dtype=torch.bool, device=dev)
        tokens = torch.zeros((n_rows, max_new), dtype=torch.long, device=dev)
        n_gen = [0] * n_rows
        reason: list[str] = [""] * n_rows
        stop_text: dict[int, str] = {}
        step_logits: list[list[torch.Tensor]] = [[] for _ in range(n_rows)]
        stop_mask = self._stop_mask(params.stop, logits.shape[-1])
        vocab = logits.shape[-1]
        seen = self._seen(groups, ids, expand, vocab) if params.repetition_penalty != 1 else None
        record = (LogprobRecorder(n_rows, max_new, params.logprobs, vocab, dev)
                  if params.logprobs else None)

        for t in range(max_new):
            nxt = pick_tokens(logits, params, gen, seen)
            tokens[slot_row, t] = nxt
            if record is not None:
                record.record(t, slot_row, logits, nxt)
            if seen is not None:
                seen[torch.arange(len(nxt), device=dev), nxt] = True
            if return_logits:
                for s in alive.nonzero().flatten().tolist():
                    step_logits[int(slot_row[s])].append(logits[s].float().cpu())
            is_eos = torch.isin(nxt, self._eos_t) & alive
            finished = is_eos | (alive & (limit <= t + 1))
            if stop_mask is not None:
                cand = stop_mask[nxt] & alive & ~is_eos
                if bool(cand.any()):
                    for s in cand.nonzero().flatten().tolist():
                        r = int(slot_row[s])
                        text = self._find_stop(tokens[r, :t + 1].tolist(), params.stop)
                        if text is not None:
                            stop_text[r] = text
                            finished[s] = True
            if bool(finished.any()):
                slots = finished.nonzero().flatten().tolist()
                eos_flags = is_eos[slots].tolist()
                for s, e in zip(slots, eos_flags, strict=True):
                    r = int(slot_row[s])
                    n_gen[r] = t + 1
                    reason[r] = "eos" if e else "stop" if r in stop_text else "length"
                alive &= ~finished
                n_alive = int(alive.sum())
                if n_alive == 0:
                    break
                if len(alive) - n_alive >= max(1.0, self.compact_fraction * len(alive)):
                    keep = alive.nonzero().flatten()
                    select_rows(cache, keep)
                    mask, next_pos, limit = mask[keep], next_pos[keep], limit[keep]
                    slot_row, nxt = slot_row[keep], nxt[keep]
                    alive = alive[keep]
                    if seen is not None:
                        seen = seen[keep]
            mask[:, width + t] = 1
            logits = self._forward(nxt[:, None], mask[:, :width + t + 1], next_pos[:, None],
                                   cache, keep_last=False)
            next_pos = next_pos + 1
        return self._collect(groups, row_group, lens, tokens.cpu(), n_gen, reason, stop_text,
                             step_logits if return_logits else None, record)

    def _seen(self, groups: list[tuple[int, int]], ids: list[list[int]], expand: torch.Tensor,
              vocab: int) -> torch.Tensor:
        """[rows, vocab] mask of the prompt tokens of each row (the repetition penalty's
        history; generated tokens are added as they come)."""
        per_group = torch.zeros((len(groups), vocab), dtype=torch.bool, device=self.device)
        for g, (u, _) in enumerate(groups):
            per_group[g, torch.tensor(ids[u], device=self.device)] = True
        return per_group.index_select(0, expand)

    def _prefill(self, prompts: list[list[int]], width: int,
                 max_new: int) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the left-padded prompts through the model once: (cache, last logits, attention
        mask, position ids). Positions count real tokens only, so padding shifts nothing."""
        dev = self.device
        prompt = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        pmask = torch.zeros((len(prompts), width), dtype=torch.long)
        for g, x in enumerate(prompts):
            prompt[g, width - len(x):] = torch.tensor(x)
            pmask[g, width - len(x):] = 1
        prompt, pmask = prompt.to(dev), pmask.to(dev)
        positions = (pmask.cumsum(-1) - 1).clamp(min=0)
        cache = make_cache(self.model, width + max_new)
        logits = self._forward(prompt, pmask, positions, cache, keep_last=True)
        return cache, logits, pmask, positions

    def _collect(self, groups: list[tuple[int, int]], row_group: list[int], lens: list[int],
                 tokens: torch.Tensor, n_gen: list[int], reason: list[str],
                 stop_text: dict[int, str],
                 step_logits: list[list[torch.Tensor]] | None,
                 record: LogprobRecorder | None = None) -> list[list[Sample]]:
        """Turn finished rows into Samples grouped by prompt; the first row of each prompt
        paid for its prefill, the others reused it."""
        row_ids = [tokens[r, :n_gen[r]].tolist() for r in range(len(n_gen))]
        to_decode = [r for r in range(len(n_gen)) if reason[r] != "stop"]
        texts = self.tokenizer.batch_decode(
            [row_ids[r][:-1] if reason[r] == "eos" else row_ids[r] for r in to_decode],
            skip_special_tokens=True, clean_up_tokenization_spaces=False)
        text_of = dict(zip(to_decode, texts, strict=True)) | stop_text
        out: list[list[Sample]] = [[] for _ in groups]
        for r, g in enumerate(row_group):
            first = not out[g]
            logits = torch.stack(step_logits[r]) if step_logits is not None else None
            chosen, top = record.row(r, n_gen[r]) if record is not None else (None, None)
            out[g].append(Sample(row_ids[r], text_of[r], reason[r], lens[g],
                                 0 if first else lens[g], logits, chosen, top))
        return out

    def _find_stop(self, token_ids: list[int], stops: tuple[str, ...]) -> str | None:
        """The text before the earliest stop string, or None if none occurs yet."""
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True,
                                     clean_up_tokenization_spaces=False)
        hits = [i for i in (text.find(s) for s in stops) if i >= 0]
        return text[:min(hits)] if hits else None

    def _stop_mask(self, stops: tuple[str, ...], vocab: int) -> torch.Tensor | None:
        """Per token id: could generating it complete one of ``stops``?

        A stop string is complete only once its last character has been produced, so only tokens
        whose text contains such a character (or whose text is not well defined alone: partial
        UTF-8 bytes) need a text check. A stop ending in a space makes every token a candidate:
        sentencepiece tokenizers drop a token's leading space when it is decoded alone.
        """
        if not stops:
            return None
        key = tuple(stops)
        if key not in self._stop_masks:
            lasts = {s[-1] for s in stops}
            if " " in lasts:
                flags = [True] * vocab
            else:
                texts = self._texts()
                flags = [i >= len(texts) or "\ufffd" in texts[i]
                         or any(c in texts[i] for c in lasts) for i in range(vocab)]
            self._stop_masks[key] = torch.tensor(flags, dtype=torch.bool, device=self.device)
        return self._stop_masks[key]

    def _texts(self) -> list[str]:
        if self._token_texts is None:
            self._token_texts = self.tokenizer.batch_decode(
                [[i] for i in range(len(self.tokenizer))], skip_special_tokens=True,
                clean_up_tokenization_spaces=False)
        return self._token_texts


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-sequence ids from the generation config (int or list) and the tokenizer."""
    ids: set[int] = set()
    gc = getattr(model, "generation_config", None)
    for src in (getattr(gc, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(src, int):
            ids.add(src)
        elif isinstance(src, (list, tuple)):
            ids.update(int(i) for i in src)
    return sorted(ids)


def _forward_params(model: Any) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)
