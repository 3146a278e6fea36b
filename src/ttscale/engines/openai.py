"""The OpenAI-compatible policy engine: vLLM, SGLang, llama.cpp's server, or ttscale's own.

Search strategies continue raw text prefixes (``prompt + steps so far``), so this engine speaks the
**completions** API (``POST {base_url}/completions``), never the chat API: the prompt format is the
task's business (a chat template can be written into the task's prompt template).

Per prompt it sends one request asking for ``n`` samples with ``stop``, ``max_tokens``,
``temperature``, ``top_p`` and ``seed``. Some servers ignore ``n`` (llama.cpp's server answers
with one choice): with ``n_mode="auto"`` the first short answer switches the engine to one
request per sample, sample ``i`` seeded with ``sample_seed(seed, i)`` (sample 0 keeps ``seed``,
so an auto-detected server gives the same samples as one configured with ``n_mode="single"``).

Token counts come from the server's ``usage``. A request's prompt is counted once per sample with
all but the first copy reported as cached (``prompt_tokens_cached``), as the in-process engine
does; a server's own prefix-cache hits (``usage.prompt_tokens_details.cached_tokens``, vLLM with
``--enable-prompt-tokens-details``) count as cached for the first copy. The total generated
tokens of a request are exact; when the server reports no per-choice counts (no logprobs), they
are split over its choices in proportion to their text length.

``finish_reason``: the API's ``"length"`` maps to ``"length"``; ``"stop"`` is ``"stop"`` when the
server says a stop string ended it (vLLM/SGLang's ``stop_reason``) and ``"eos"`` when it says the
model ended (``stop_reason`` null). A server that does not tell (llama.cpp) gets ``"stop"`` when
stop strings were asked for, else ``"eos"``: mistaking a step end for the end of a solution would
cut the search short, while the opposite only costs one more (empty) round.

Several base URLs are replicas of one model: see ``ttscale.engines.http_pool`` for the load
balancing, bounded concurrency and retries.
"""

from __future__ import annotations

import asyncio
import logging
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ttscale.engines.base import SamplingParams, check_params
from ttscale.engines.http_pool import ReplicaPool, ServerError
from ttscale.types import Completion

__all__ = ["OpenAIGenerator", "OpenAISample", "discover_model",
           "guess_parameters", "parse_completion", "sample_seed"]

NMode = Literal["auto", "native", "single"]
_N_MODES = ("auto", "native", "single")


def sample_seed(seed: int, i: int) -> int:
    """The seed of sample ``i`` when samples are requested one by one (sample 0 keeps ``seed``)."""
    if i == 0:
        return seed
    return zlib.crc32(repr((seed, i)).encode()) & 0x7FFFFFFF


_SIZE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


def guess_parameters(model_name: str) -> int:
    """Parameters from a served model name (``Qwen2.5-Math-1.5B-Instruct`` -> 1.5e9), else 0.

    Only a fallback for FLOPs accounting: pass ``num_parameters`` when the name does not say.
    """
    m = _SIZE.search(model_name.rsplit("/", 1)[-1])
    if not m:
        return 0
    scale = 1e9 if m.group(2) in "bB" else 1e6
    return int(float(m.group(1)) * scale)


@dataclass
class OpenAISample:
    """One completion with what the server said about it beyond ``Completion``."""

    completion: Completion
    #: log-probability of each generated token (when ``logprobs`` was requested)
    token_logprobs: list[float] | None = None
    tokens: list[str] | None = None
    stop_reason: Any = None


class OpenAIGenerator:
    """A ``Generator`` over one or several OpenAI-compatible completions servers.

    ``base_url``: ``http://host:port/v1`` or a list of replica URLs. ``model``: the served model
    name (``None``: the first model the server lists). ``num_parameters``: for FLOPs (default:
    what ttscale's own server reports, else a guess from the model name, else 0).
    ``n_mode``: ``auto`` (detect servers that ignore ``n``), ``native`` (trust ``n``; fewer
    choices is an error) or ``single`` (one request per sample, e.g. llama.cpp).
    ``logprobs``: ask for that many top log-probabilities (exact per-sample token counts).
    ``extra_body``: more fields for every request (e.g. ``{"top_k": 20}`` for vLLM).
    The remaining arguments go to ``ReplicaPool``.
    """

    def __init__(self, base_url: str | Sequence[str], model: str | None = None, *,
                 api_key: str | None = None, num_parameters: int | None = None,
                 n_mode: NMode = "auto", logprobs: int | None = None,
                 extra_body: dict[str, Any] | None = None, max_concurrency: int = 16,
                 timeout_s: float = 300.0, retries: int = 5, backoff_s: float = 0.25,
                 backoff_max_s: float = 8.0) -> None:
        if n_mode not in _N_MODES:
            raise ValueError(f"n_mode must be one of {', '.join(_N_MODES)}, got {n_mode!r}")
        if logprobs is not None and logprobs < 0:
            raise ValueError(f"logprobs must be >= 0, got {logprobs}")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.pool = ReplicaPool(base_url, max_concurrency=max_concurrency, timeout_s=timeout_s,
                                retries=retries, backoff_s=backoff_s, backoff_max_s=backoff_max_s,
                                headers=headers)
        self.base_urls = self.pool.urls
        self._model = model
        self._num_parameters = num_parameters
        self.n_mode: NMode = n_mode
        #: None until an ``auto`` engine has seen whether the server honours ``n``
        self.n_supported: bool | None = {"native": True, "single": False}.get(n_mode)
        self.logprobs = logprobs
        self.extra_body = dict(extra_body or {})
        self._discovered = False

    # -- model discovery ------------------------------------------------------------------

    @property
    def model(self) -> str | None:
        """The served model name (None until the first call asked the server for it)."""
        return self._model

    @property
    def num_parameters(self) -> int:
        """Parameters for FLOPs; known for sure once the first call asked the server (reading
        this attribute never sends a request: ``isinstance(x, Generator)`` reads it)."""
        if self._num_parameters is not None:
            return self._num_parameters
        return guess_parameters(self._model or "")

    @num_parameters.setter
    def num_parameters(self, value: int) -> None:
        self._num_parameters = int(value)

    async def _discover(self) -> None:
        if not self._discovered:
            self._model, self._num_parameters = await discover_model(
                self.pool, self._model, self._num_parameters)
            self._discovered = True

    # -- the Generator interface ------------------------------------------------------------

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions per prompt, in prompt order (see ``Generator``)."""
        return [[s.completion for s in row] for row in self.sample(prompts, params)]

    def sample(self, prompts: list[str], params: SamplingParams) -> list[list[OpenAISample]]:
        """Like ``generate``, with log-probabilities and the server's stop reason."""
        return self.pool.run(self.asample(prompts, params))

    async def agenerate(self, prompts: list[str],
                        params: SamplingParams) -> list[list[Completion]]:
        """``generate`` for asyncio code (any event loop)."""
        rows = await self.pool.run_async(self.asample(prompts, params))
        return [[s.completion for s in row] for row in rows]

    async def asample(self, prompts: list[str],
                      params: SamplingParams) -> list[list[OpenAISample]]:
        check_params(params)
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be a list of strings")
        if not prompts:
            return []
        await self._discover()
        return list(await asyncio.gather(*(self._one_prompt(p, params) for p in prompts)))

    def close(self) -> None:
        self.pool.close()

    # -- internals --------------------------------------------------------------------------

    async def _one_prompt(self, prompt: str, params: SamplingParams) -> list[OpenAISample]:
        if self.n_supported is False or params.n == 1:
            return await self._singles(prompt, params, 0)
        first = await self._request(prompt, params, params.n, params.seed)
        if len(first) == params.n:
            if self.n_supported is None:
                self.n_supported = True
            return first
        if self.n_mode == "native" or len(first) != 1:
            raise ServerError(f"{self.base_urls[0]} returned {len(first)} choices for n="
                              f"{params.n}; use n_mode='single' for servers without n")
        self.n_supported = False  # the server ignores n: ask for the others one by one
        return first + await self._singles(prompt, params, 1)

    async def _singles(self, prompt: str, params: SamplingParams,
                       start: int) -> list[OpenAISample]:
        seeds = [None if params.seed is None else sample_seed(params.seed, i)
                 for i in range(start, params.n)]
        rows = await asyncio.gather(*(self._request(prompt, params, 1, s) for s in seeds))
        out = []
        for r in rows:
            if len(r) != 1:
                raise ServerError(f"{self.base_urls[0]} returned {len(r)} choices for n=1")
            out.extend(r)
        return out

    async def _request(self, prompt: str, params: SamplingParams, n: int,
                       seed: int | None) -> list[OpenAISample]:
        body: dict[str, Any] = {
            **self.extra_body, "model": self._model, "prompt": prompt, "n": n,
            "max_tokens": params.max_tokens, "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = int(seed)
        if self.logprobs is not None:
            body["logprobs"] = self.logprobs
        data = await self.pool.request_json("POST", "/completions", body)
        return parse_completion(data, bool(params.stop), self.base_urls[0])


_log = logging.getLogger("ttscale")
_warned_sizes: set[tuple[str, str]] = set()


def warn_unknown_size(model: str, override: str) -> None:
    """Warn once per (model, override) that a model's size is unknown, so its FLOPs count 0
    (a silent 0 makes every FLOPs figure of a run wrong without anyone noticing)."""
    if (model, override) in _warned_sizes:
        return
    _warned_sizes.add((model, override))
    _log.warning("ttscale: the parameter count of served model %r is unknown (the server does "
                 "not report it and its name gives no size such as '7B'): its FLOPs count as 0; "
                 "set %s", model, override)


async def discover_model(pool: ReplicaPool, model: str | None,
                         num_parameters: int | None,
                         override: str = "policy_params") -> tuple[str, int]:
    """The served model name and its parameter count, asking ``GET /models`` when either is
    unknown: the first listed model, and ``ttscale.num_parameters`` (ttscale's own servers),
    else a guess from the name (:func:`guess_parameters`); a size found nowhere is 0 and warned
    about once, naming the ``override`` setting that fixes it."""
    listing: list[dict[str, Any]] = []
    if model is None or num_parameters is None:
        # root-relative, so a base URL given with or without its trailing /v1 both work
        data = await pool.request_json("GET", "/v1/models", root=True)
        raw = data.get("data") if isinstance(data, dict) else None
        listing = [m for m in raw or [] if isinstance(m, dict)]
    if model is None:
        if not listing or "id" not in listing[0]:
            raise ServerError(f"{pool.urls[0]}/models lists no model; pass the model name")
        model = str(listing[0]["id"])
    if num_parameters is None:
        entry = next((m for m in listing if m.get("id") == model), {})
        extra = entry.get("ttscale")
        n = extra.get("num_parameters") if isinstance(extra, dict) else None
        num_parameters = int(n) if isinstance(n, int) else guess_parameters(model)
        if num_parameters == 0:
            warn_unknown_size(model, override)
    return model, num_parameters


def parse_completion(data: Any, asked_stop: bool, where: str) -> list[OpenAISample]:
    """Turn one ``/completions`` answer into samples (choices in ``index`` order)."""
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
    token_lists = [_logprob_tokens(c) for c in choices]
    if all(t is not None for t in token_lists):
        counts = [len(t[0]) for t in token_lists]  # type: ignore[index]
    else:
        counts = _split(completion_tokens, [len(c["text"]) for c in choices])
    out = []
    for i, (c, k) in enumerate(zip(choices, counts, strict=True)):
        reason = _finish_reason(c, asked_stop)
        cached = min(server_cached, prompt_tokens) if i == 0 else prompt_tokens
        comp = Completion(c["text"], reason, prompt_tokens, k, cached)
        toks = token_lists[i]
        out.append(OpenAISample(comp, toks[1] if toks else None, toks[0] if toks else None,
                                c.get("stop_reason")))
    return out


def _finish_reason(choice: dict[str, Any], asked_stop: bool) -> str:
    if choice.get("finish_reason") == "length":
        return "length"
    if "stop_reason" in choice:  # vLLM / SGLang / ttscale: str = a stop string, else the model
        return "stop" if isinstance(choice["stop_reason"], str) else "eos"
    return "stop" if asked_stop else "eos"  # the server does not say (llama.cpp)


def _logprob_tokens(choice: dict[str, Any]) -> tuple[list[str], list[float]] | None:
    lp = choice.get("logprobs")
    if not isinstance(lp, dict) or not isinstance(lp.get("tokens"), list):
        return None
    values = [float(x) if isinstance(x, (int, float)) else float("nan")
              for x in lp.get("token_logprobs") or []]
    return [str(t) for t in lp["tokens"]], values


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
