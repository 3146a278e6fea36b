"""The wire formats of OpenAI-compatible completion servers: request sampling fields per flavour
and the parsing of their answers into ``Completion``s (see ``ttscale.engines.openai`` for why each
quirk matters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ttscale.engines.base import SamplingParams
from ttscale.net.pool import ServerError
from ttscale.types import Completion

__all__ = ["LLAMA_SAMPLERS", "OpenAISample", "n_limit", "parse_completion",
           "parse_llama_completion", "sampling_fields"]

#: llama-server's sampler chain in the order vLLM and transformers apply them
LLAMA_SAMPLERS = ("penalties", "temperature", "top_k", "top_p", "min_p")


def sampling_fields(params: SamplingParams, flavour: str) -> dict[str, Any]:
    """Every distribution-changing sampling parameter in ``flavour``'s accepted form.

    Neutral values are sent too: a field left out means the server's default, which differs per
    server (see ``ttscale.engines.openai``)."""
    body: dict[str, Any] = {"temperature": params.temperature, "top_p": params.top_p,
                            "presence_penalty": 0.0, "frequency_penalty": 0.0}
    if flavour in ("llama-server", "llama-cpp-python"):
        # llama.cpp: top_k 0 is off, the penalty is repeat_penalty
        body.update(top_k=params.top_k, min_p=params.min_p,
                    repeat_penalty=params.repetition_penalty)
        if flavour == "llama-server":
            # only these samplers, in vLLM's order (the default chain adds DRY, XTC, typical-p
            # and top-n-sigma, and applies the temperature last)
            body["samplers"] = list(LLAMA_SAMPLERS)
    else:
        # vLLM, SGLang and the de-facto OpenAI extensions: top_k -1 is off
        body.update(top_k=params.top_k if params.top_k > 0 else -1, min_p=params.min_p,
                    repetition_penalty=params.repetition_penalty)
    return body


@dataclass
class OpenAISample:
    """One completion with what the server said about it beyond ``Completion``."""

    completion: Completion
    #: log-probability of each generated token (when ``logprobs`` was requested)
    token_logprobs: list[float] | None = None
    tokens: list[str] | None = None
    stop_reason: Any = None


#: a refusal that names the field n: llama-server "Field 'n': ...", "n=8 exceeds ...",
#: pydantic-style "body.n" / "n must be ..."
_N_REFUSAL = re.compile(r"['\"`]n['\"`]|\bn_cmpl\b|\bn\s*=\s*\d|\.n\b|^n\b|\bn must\b",
                        re.IGNORECASE)
_N_LIMIT = re.compile(r"(?:<=\s*value\s*<=|limit of|at most|maximum(?: of)?)\s*(\d+)",
                      re.IGNORECASE)


def n_limit(e: Exception, n: int) -> int | None:
    """The server's limit on ``n`` when ``e`` is its refusal of ``n`` (else None): the limit it
    names (llama-server: "Field 'n': Value must be between 1 <= value <= 4"), else 1."""
    text = getattr(e, "detail", None) or str(e)
    status = getattr(e, "status", None)
    if not _N_REFUSAL.search(text) or status not in (None, 400, 422):
        return None
    m = _N_LIMIT.search(text)
    limit = int(m.group(1)) if m else 1
    return limit if 1 <= limit < n else 1


def cache_convention(samples: list[OpenAISample]) -> list[OpenAISample]:
    """Samples 2..n of one prompt count its prompt as cached (see the module docstring)."""
    for s in samples[1:]:
        s.completion.prompt_tokens_cached = s.completion.prompt_tokens
    return samples


def parse_completion(data: Any, asked_stop: bool, where: str,
                     logprobs: int | None = None) -> list[OpenAISample]:
    """Turn one OpenAI ``/completions`` answer into samples (choices in ``index`` order)."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise ServerError(f"{where}/completions answered without a 'choices' list: "
                          f"{str(data)[:200]}")
    choices = sorted(data["choices"], key=lambda c: c.get("index", 0) if isinstance(c, dict)
                     else 0)
    for c in choices:
        if not isinstance(c, dict) or not isinstance(c.get("text"), str):
            raise ServerError(f"{where}/completions: a choice has no text: {str(c)[:200]}")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    prompt_tokens = _int(usage.get("prompt_tokens"))
    completion_tokens = _int(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    server_cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    token_lists = [_logprob_tokens(c, logprobs) for c in choices]
    if all(t is not None for t in token_lists):
        counts = [len(t[0]) for t in token_lists]  # type: ignore[index]
        if len(choices) == 1 and completion_tokens:
            counts = [completion_tokens]  # the usage of one choice is exact
    else:
        counts = _split(completion_tokens, [len(c["text"]) for c in choices])
    out = []
    for c, k, toks in zip(choices, counts, token_lists, strict=True):
        reason = _finish_reason(c, asked_stop)
        comp = Completion(c["text"], reason, prompt_tokens, k, min(server_cached, prompt_tokens))
        if toks is not None:
            comp.token_logprobs, comp.top_logprobs = toks[1], toks[2]
        stop = c.get("stop_reason", c.get("matched_stop"))
        out.append(OpenAISample(comp, toks[1] if toks else None, toks[0] if toks else None, stop))
    return cache_convention(out)


def parse_llama_completion(data: Any, where: str) -> list[OpenAISample]:
    """Turn one answer of llama-server's native ``/completion`` into samples: one object, or a
    list of them when several choices were asked for (``n_cmpl``)."""
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(x, dict) and isinstance(x.get("content"), str)
                            for x in items):
        raise ServerError(f"{where}/completion answered without content: {str(data)[:200]}")
    items = sorted(items, key=lambda x: _int(x.get("index")))
    out = []
    for x in items:
        stop_type = x.get("stop_type")
        reason = {"word": "stop", "eos": "eos"}.get(str(stop_type), "length")
        prompt_tokens = _int(x.get("tokens_evaluated"))
        timings = x.get("timings") if isinstance(x.get("timings"), dict) else {}
        cached = min(_int(timings.get("cache_n")), prompt_tokens)
        comp = Completion(x["content"], reason, prompt_tokens, _int(x.get("tokens_predicted")),
                          cached)
        probs = x.get("completion_probabilities")
        tokens = None
        if isinstance(probs, list):
            entries = [p for p in probs if isinstance(p, dict)]
            comp.token_logprobs = [_float(p.get("logprob")) for p in entries]
            comp.top_logprobs = [sorted((_float(t.get("logprob")) for t in
                                         p.get("top_logprobs") or [] if isinstance(t, dict)),
                                        reverse=True) for p in entries]
            tokens = [str(p.get("token", "")) for p in entries]
        out.append(OpenAISample(comp, comp.token_logprobs, tokens, x.get("stopping_word")))
    return cache_convention(out)


def _finish_reason(choice: dict[str, Any], asked_stop: bool) -> str:
    if choice.get("finish_reason") == "length":
        return "length"
    if "stop_reason" in choice:  # vLLM / ttscale: str = a stop string, else the model
        return "stop" if isinstance(choice["stop_reason"], str) else "eos"
    if "matched_stop" in choice:  # SGLang: str = a stop string, int = the EOS token
        return "stop" if isinstance(choice["matched_stop"], str) else "eos"
    return "stop" if asked_stop else "eos"  # the server does not say (llama-cpp-python)


def _logprob_tokens(choice: dict[str, Any], k: int | None
                    ) -> tuple[list[str], list[float], list[list[float]]] | None:
    lp = choice.get("logprobs")
    if not isinstance(lp, dict) or not isinstance(lp.get("tokens"), list):
        return None
    values = [_float(x) for x in lp.get("token_logprobs") or []]
    tops: list[list[float]] = []
    for entry in lp.get("top_logprobs") or []:
        vals = sorted((_float(v) for v in entry.values()), reverse=True) \
            if isinstance(entry, dict) else []
        tops.append(vals[:k] if k else vals)
    return [str(t) for t in lp["tokens"]], values, tops


def _float(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")


def _int(v: Any) -> int:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


def _split(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    if not weights:
        return []
    if len(weights) == 1:
        return [total]
    w = [max(x, 1) for x in weights]
    s = sum(w)
    raw = [total * x / s for x in w]
    out = [int(r) for r in raw]
    order = sorted(range(len(w)), key=lambda i: -(raw[i] - out[i]))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out
