"""Next-token choice for the in-process engine: repetition penalty, temperature, top-k, top-p,
min-p, and the log-probabilities reported back.

Why its own module: every parameter that changes the sampled distribution must mean the same
thing here as on vLLM, SGLang and llama.cpp, so one recipe samples one distribution on every
engine. The conventions (the ones vLLM and transformers share):

* ``repetition_penalty`` (CTRL, Keskar et al. 2019): every token already in the prompt or the
  completion has its logit divided by the penalty when positive, multiplied when negative;
  applied first, so it changes greedy choices too.
* then the logits are divided by ``temperature`` (0 = greedy: argmax of the penalised logits);
* ``top_k`` keeps the k most likely tokens, ``top_p`` the smallest set whose probability covers
  ``top_p`` (the first token always stays), ``min_p`` drops tokens whose probability is below
  ``min_p`` times the most likely one's; all three on the tempered distribution, in this order.

Neutral values (``top_k=0``, ``min_p=0``, ``repetition_penalty=1``) run none of this code, so
sampling with them is bit-identical to the engine before these parameters existed.

Log-probabilities (``logprobs=k``) are those of the model's own distribution: the log-softmax of
the raw logits, before the penalty, temperature and truncation (what vLLM reports by default,
``logprobs_mode=raw_logprobs``). Confidence measures such as DeepConf's are defined on the
model's distribution, and a truncated one would give -inf to tokens that were merely cut.
"""

from __future__ import annotations

import torch

from ttscale.engines.base import SamplingParams

__all__ = ["LogprobRecorder", "filters_active", "penalise", "pick_tokens"]


def filters_active(params: SamplingParams) -> bool:
    return params.top_k > 0 or params.min_p > 0 or params.top_p < 1


def penalise(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """``logits`` [rows, vocab] with the repetition penalty applied where ``seen`` is True."""
    x = logits.float()
    scaled = torch.where(x > 0, x / penalty, x * penalty)
    return torch.where(seen, scaled, x)


def _truncate(x: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Tempered logits with the tokens top-k / top-p / min-p exclude set to -inf."""
    if params.top_k > 0 and params.top_k < x.shape[-1]:
        kth = x.topk(params.top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if params.top_p < 1:
        sorted_x, order = x.sort(-1, descending=True)
        probs = torch.softmax(sorted_x, -1)
        # drop a token once the tokens ranked above it already cover top_p (the first stays)
        sorted_x = sorted_x.masked_fill(probs.cumsum(-1) - probs > params.top_p, float("-inf"))
        x = torch.full_like(x, float("-inf")).scatter(-1, order, sorted_x)
    if params.min_p > 0:
        probs = torch.softmax(x, -1)
        floor = probs.max(-1, keepdim=True).values * params.min_p
        x = x.masked_fill(probs < floor, float("-inf"))
    return x


def pick_tokens(logits: torch.Tensor, params: SamplingParams, gen: torch.Generator,
                seen: torch.Tensor | None = None) -> torch.Tensor:
    """Next token per row (see the module docstring for the order of operations). ``seen``:
    [rows, vocab] mask of tokens already in each row, needed when the penalty is not 1."""
    if params.repetition_penalty != 1:
        if seen is None:
            raise ValueError("repetition_penalty needs the tokens each row has seen")
        logits = penalise(logits, seen, params.repetition_penalty)
    if params.temperature == 0:
        return logits.argmax(-1)
    x = logits.float() / params.temperature
    if params.top_k == 0 and params.min_p == 0:
        # the original nucleus path, kept op for op: neutral values sample exactly as before
        if params.top_p < 1:
            sorted_x, order = x.sort(-1, descending=True)
            probs = torch.softmax(sorted_x, -1)
            sorted_x.masked_fill_(probs.cumsum(-1) - probs > params.top_p, float("-inf"))
            choice = torch.multinomial(torch.softmax(sorted_x, -1), 1, generator=gen)
            return order.gather(-1, choice).squeeze(-1)
        return torch.multinomial(torch.softmax(x, -1), 1, generator=gen).squeeze(-1)
    x = _truncate(x, params)
    return torch.multinomial(torch.softmax(x, -1), 1, generator=gen).squeeze(-1)


class LogprobRecorder:
    """Per row and step: the chosen token's log-probability and the k largest, under the raw
    model distribution. Rows are the chunk's rows (``slot_row`` maps batch slots to them)."""

    def __init__(self, n_rows: int, max_new: int, k: int, vocab: int,
                 device: torch.device) -> None:
        k = min(k, vocab)
        self.k = k
        self.chosen = torch.zeros((n_rows, max_new), dtype=torch.float32, device=device)
        self.top = torch.zeros((n_rows, max_new, k), dtype=torch.float32, device=device)

    def record(self, t: int, slot_row: torch.Tensor, logits: torch.Tensor,
               nxt: torch.Tensor) -> None:
        lp = torch.log_softmax(logits.float(), dim=-1)
        self.chosen[slot_row, t] = lp.gather(-1, nxt[:, None]).squeeze(-1)
        self.top[slot_row, t] = lp.topk(self.k, dim=-1).values

    def row(self, r: int, n: int) -> tuple[list[float], list[list[float]]]:
        return self.chosen[r, :n].tolist(), self.top[r, :n].tolist()
