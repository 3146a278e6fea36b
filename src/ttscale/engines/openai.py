"""The OpenAI-compatible policy engine: vLLM, SGLang, llama.cpp's servers, or ttscale's own.

Search strategies continue raw text prefixes (``prompt + steps so far``), so this engine speaks the
**completions** API (``POST {base_url}/completions``), never the chat API: the prompt format is the
task's business (a chat template can be written into the task's prompt template).

The first call asks ``GET /v1/models`` which server this is (its *flavour*, from ``owned_by``:
vLLM, SGLang, llama.cpp's C++ ``llama-server``, llama-cpp-python, or a plain OpenAI-compatible
one), the served model, its context length and, from ttscale's own servers, the parameter count.
Each flavour differs where it matters (see docs/engines.md, "Servers and their quirks"):

* **Sampling is explicit.** Every parameter that changes the sampled distribution is sent in the
  flavour's own form (:func:`sampling_fields`): temperature, top_p, top_k, min_p, the repetition
  penalty and neutral presence/frequency penalties, so a recipe samples the same distribution
  everywhere instead of each server's defaults (vLLM's generation_config, llama-server's
  ``top_k=40, min_p=0.05``, llama-cpp-python's ``repeat_penalty=1.1``). llama-server also gets
  the sampler order of vLLM and transformers (temperature before top-k/top-p/min-p).
* **Seeds.** Prompt ``j`` of a call is seeded with ``prompt_seed(seed, j)`` (prompt 0 keeps the
  seed): the prompts of one beam round do not share a seed. When a prompt's samples are asked
  for in several requests, request ``r`` starting at sample ``i`` gets ``sample_seed(seed_j, i)``.
* **``n`` above what the server takes.** llama-server has one slot per parallel sequence and
  refuses more choices (HTTP 400 "Field 'n': ... <= 4"; the engine reads its slot count from
  ``/props`` first); other servers may answer a short list (llama-cpp-python answers one choice)
  or refuse with their own limit. The engine splits ``n`` into requests of at most the server's
  limit, learnt from ``/props``, from the refusal or from the short answer, and remembers it.
* **Exact tokens per choice.** llama-server's OpenAI route reports the tokens of ONE choice when
  ``n > 1``; the engine uses its native ``/completion`` route instead, which reports each
  choice's ``tokens_predicted``, its stop type (stop string, end of sequence or limit) and its
  log-probabilities. Elsewhere ``usage.completion_tokens`` (all choices) is exact and is split
  over the choices by their log-probability token counts when asked for, else by text length.
* **SGLang** answers ``matched_stop`` (a string: a stop string; an int: the EOS token) instead of
  ``stop_reason``, and with a seed returns ``n`` identical samples: seeded requests ask for one
  sample each, each with its own seed.
* **Context.** The context length comes from ``/v1/models`` (vLLM/SGLang ``max_model_len``,
  llama-server's per-slot ``meta.n_ctx``) or ``context_length=``. ``max_tokens`` is capped to what
  the prompt leaves (the prompt is tokenized by the server's ``/tokenize`` only when its UTF-8
  length could overflow). When less than ``CONTEXT_MARGIN`` tokens would be left after a
  request, its completions end with ``"context"``: a tree search ends that beam there, before
  the next step would overflow. A prompt that leaves no room raises ``ProblemError`` (that problem
  fails, the run goes on), as does any 400 answer (``RequestRefused``).

Token accounting (the one convention of every engine, see ``Completion``): each sample counts its
prompt; of the samples of one prompt in one call, all but the first count the prompt as cached
(an engine with prefix sharing computes it once), and the first counts what the server reported
as a prefix-cache hit (``usage.prompt_tokens_details.cached_tokens``; vLLM needs
``--enable-prompt-tokens-details``; llama-server's ``timings.cache_n``).

``finish_reason``: ``"length"`` for the token limit, ``"context"`` when nothing more fits after
the completion (see above); ``"stop"`` when a stop string ended it and
``"eos"`` when the model did, as the server says (vLLM ``stop_reason``, SGLang ``matched_stop``,
llama-server ``stop_type``). A server that does not say (llama-cpp-python) gets ``"stop"`` when
stop strings were asked for, else ``"eos"``: mistaking a step end for the end of a solution would
cut the search short, while the opposite only costs one more (empty) round.

Several base URLs are replicas of one model: see ``ttscale.net.pool`` for the load balancing,
bounded concurrency and retries. ``ttscale.net.discovery`` asks the server what it is;
``ttscale.engines.openai_wire`` holds the wire formats.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from ttscale.engines.base import SamplingParams, check_params
from ttscale.engines.openai_wire import (
    OpenAISample,
    cache_convention,
    n_limit,
    parse_completion,
    parse_llama_completion,
    sampling_fields,
)
from ttscale.errors import ProblemError
from ttscale.net.discovery import (
    FLAVOURS,
    ServerInfo,
    discover_model,
    discover_server,
    guess_parameters,
    parameters_of,
)
from ttscale.net.pool import ClientError, ReplicaPool, ServerError
from ttscale.types import Completion

__all__ = ["FLAVOURS", "OpenAIGenerator", "OpenAISample", "ServerInfo", "discover_model",
           "discover_server", "guess_parameters", "parse_completion", "parse_llama_completion",
           "prompt_seed", "sample_seed", "sampling_fields"]

NMode = Literal["auto", "native", "single"]
_N_MODES = ("auto", "native", "single")
#: tokens kept free after a step for what a search appends before the next one (the step
#: delimiter, a template's end-of-turn): with less left, the context counts as full
CONTEXT_MARGIN = 16
def sample_seed(seed: int, i: int) -> int:
    """The seed of sample ``i`` when samples are requested one by one (sample 0 keeps ``seed``)."""
    if i == 0:
        return seed
    return zlib.crc32(repr((seed, i)).encode()) & 0x7FFFFFFF


def prompt_seed(seed: int, j: int) -> int:
    """The seed of prompt ``j`` of one call (prompt 0 keeps ``seed``), so the prompts of one
    round draw independent samples instead of the same random numbers."""
    if j == 0:
        return seed
    return zlib.crc32(repr(("prompt", seed, j)).encode()) & 0x7FFFFFFF


class OpenAIGenerator:
    """A ``Generator`` over one or several OpenAI-compatible completions servers.

    ``base_url``: ``http://host:port/v1`` or a list of replica URLs. ``model``: the served model
    name (``None``: the first model the server lists). ``num_parameters``: for FLOPs (default:
    what ttscale's own server or llama-server reports, else a guess from the model name, else 0
    with a warning).
    ``n_mode``: ``auto`` (learn the server's limit on ``n``), ``native`` (trust ``n``; fewer
    choices is an error) or ``single`` (one request per sample).
    ``flavour``: ``auto`` (from ``/v1/models``) or one of :data:`FLAVOURS`.
    ``context_length``: the model's context in tokens (default: what the server reports).
    ``logprobs``: ask for that many top log-probabilities in every call (``SamplingParams.
    logprobs`` asks per call). ``extra_body``: more fields for every request.
    The remaining arguments go to ``ReplicaPool``.
    """

    def __init__(self, base_url: str | Sequence[str], model: str | None = None, *,
                 api_key: str | None = None, num_parameters: int | None = None,
                 n_mode: NMode = "auto", flavour: str = "auto",
                 context_length: int | None = None, logprobs: int | None = None,
                 extra_body: dict[str, Any] | None = None, max_concurrency: int = 16,
                 timeout_s: float = 300.0, retries: int = 5, backoff_s: float = 0.25,
                 backoff_max_s: float = 8.0) -> None:
        if n_mode not in _N_MODES:
            raise ValueError(f"n_mode must be one of {', '.join(_N_MODES)}, got {n_mode!r}")
        if flavour != "auto" and flavour not in FLAVOURS:
            raise ValueError(f"flavour must be 'auto' or one of {', '.join(FLAVOURS)}, "
                             f"got {flavour!r}")
        if logprobs is not None and not 1 <= logprobs <= 20:
            raise ValueError(f"logprobs must be in 1..20 or None, got {logprobs}")
        if context_length is not None and context_length < 2:
            raise ValueError(f"context_length must be >= 2 tokens, got {context_length}")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.pool = ReplicaPool(base_url, max_concurrency=max_concurrency, timeout_s=timeout_s,
                                retries=retries, backoff_s=backoff_s, backoff_max_s=backoff_max_s,
                                headers=headers)
        self.base_urls = self.pool.urls
        self._model = model
        self._num_parameters = num_parameters
        self.n_mode: NMode = n_mode
        self.flavour = flavour
        self.context_length = context_length
        #: most choices per request: None = not known yet / no limit; 1 = one per sample
        self.max_n: int | None = 1 if n_mode == "single" else None
        self.logprobs = logprobs
        self.extra_body = dict(extra_body or {})
        self._discovered = False
        self._lock: asyncio.Lock | None = None
        self._tokenize_ok = True
        self._n_seen = False

    # -- model discovery ------------------------------------------------------------------

    @property
    def model(self) -> str | None:
        """The served model name (None until the first call asked the server for it)."""
        return self._model

    @property
    def n_supported(self) -> bool | None:
        """Whether one request may carry several choices (None: not known yet)."""
        if self.max_n is not None:
            return self.max_n > 1
        return True if self.n_mode == "native" or self._n_seen else None

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
        if self._discovered:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._discovered:
                return
            info = await discover_server(self.pool, self._model)
            self._model = info.model
            if self._num_parameters is None:
                self._num_parameters = parameters_of(info)
            if self.flavour == "auto":
                self.flavour = info.flavour
            if self.context_length is None:
                self.context_length = info.context_length
            if self.n_mode == "auto":
                if self.flavour == "llama-cpp-python":
                    self.max_n = 1
                elif info.max_n is not None:
                    self.max_n = info.max_n
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
        if params.logprobs is None and self.logprobs is not None:
            params = replace(params, logprobs=self.logprobs)
        await self._discover()
        return list(await asyncio.gather(*(self._one_prompt(p, params, j)
                                           for j, p in enumerate(prompts))))

    def close(self) -> None:
        self.pool.close()

    # -- internals --------------------------------------------------------------------------

    async def _one_prompt(self, prompt: str, params: SamplingParams,
                          j: int) -> list[OpenAISample]:
        seed = None if params.seed is None else prompt_seed(params.seed, j)
        max_tokens, capped = await self._room(prompt, params.max_tokens)
        if max_tokens != params.max_tokens:
            params = replace(params, max_tokens=max_tokens)
        # SGLang repeats one seed's sample n times: seeded requests carry one sample each
        limit = 1 if self.flavour == "sglang" and seed is not None else self.max_n
        out: list[OpenAISample] = []
        if limit is None and params.n > 1:  # limit unknown: try all at once, learn from it
            try:
                out = await self._request(prompt, params, params.n, seed)
            except (ClientError, ServerError) as e:
                learnt = n_limit(e, params.n)
                if learnt is None or self.n_mode == "native":
                    raise
                self.max_n = learnt
            else:
                if len(out) == params.n:
                    self._n_seen = True
                    return _context_full(cache_convention(out), capped)
                if self.n_mode == "native" or len(out) != 1:
                    raise ServerError(f"{self.base_urls[0]} returned {len(out)} choices for "
                                      f"n={params.n}; use n_mode='single' for servers "
                                      "without n")
                self.max_n = 1  # the server ignores n: ask for the others one by one
            limit = self.max_n
        limit = max(1, limit or params.n)
        starts = list(range(len(out), params.n, limit))
        rows = await asyncio.gather(*(
            self._request(prompt, params, min(limit, params.n - i),
                          None if seed is None else sample_seed(seed, i)) for i in starts))
        for i, row in zip(starts, rows, strict=True):
            want = min(limit, params.n - i)
            if len(row) != want:
                raise ServerError(f"{self.base_urls[0]} returned {len(row)} choices for "
                                  f"n={want}")
            out.extend(row)
        return _context_full(cache_convention(out), capped)

    async def _room(self, prompt: str, max_tokens: int) -> tuple[int, bool]:
        """``max_tokens`` capped to what ``prompt`` leaves of the context, and whether the context
        is full after this request (less than ``CONTEXT_MARGIN`` tokens would be left)."""
        ctx = self.context_length
        # a token is at least one UTF-8 byte; +2 for a BOS token the server may add
        if ctx is None or len(prompt.encode("utf-8")) + 2 + max_tokens + CONTEXT_MARGIN <= ctx:
            return max_tokens, False
        n = await self._count_tokens(prompt)
        if n is None:
            return max_tokens, False  # cannot tell: the server refuses an overflow itself
        if n >= ctx:
            raise ProblemError(f"the prompt has {n} tokens and does not fit the context of "
                               f"{ctx} tokens of {self._model} at {self.base_urls[0]}")
        return min(max_tokens, ctx - n), ctx - n - max_tokens < CONTEXT_MARGIN

    async def _count_tokens(self, prompt: str) -> int | None:
        """The prompt's length in the server's tokens via ``/tokenize`` (vLLM, SGLang,
        llama-server); None where the server has no such route."""
        if not self._tokenize_ok:
            return None
        if self.flavour == "llama-server":
            body: dict[str, Any] = {"content": prompt, "add_special": True}
        else:
            body = {"model": self._model, "prompt": prompt}
        try:
            data = await self.pool.request_json("POST", "/tokenize", body, root=True)
        except (ClientError, ServerError):
            self._tokenize_ok = False
            return None
        if isinstance(data, dict):
            if isinstance(data.get("count"), int):
                return int(data["count"])
            if isinstance(data.get("tokens"), list):
                return len(data["tokens"])
        self._tokenize_ok = False
        return None

    async def _request(self, prompt: str, params: SamplingParams, n: int,
                       seed: int | None) -> list[OpenAISample]:
        body: dict[str, Any] = {**self.extra_body, "prompt": prompt,
                                **sampling_fields(params, self.flavour),
                                "max_tokens": params.max_tokens}
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = int(seed)
        if self.flavour == "llama-server":
            # the native route: per-choice token counts and stop types (see the module doc)
            body.update(n_cmpl=n, cache_prompt=True)
            if params.logprobs is not None:
                body["n_probs"] = params.logprobs
            data = await self.pool.request_json("POST", "/completion", body, root=True)
            return parse_llama_completion(data, self.base_urls[0])
        body.update(model=self._model, n=n)
        if params.logprobs is not None:
            body["logprobs"] = params.logprobs
        data = await self.pool.request_json("POST", "/completions", body)
        return parse_completion(data, bool(params.stop), self.base_urls[0], params.logprobs)


def _context_full(samples: list[OpenAISample], full: bool) -> list[OpenAISample]:
    """Samples of a request that leaves the context (nearly) full end with ``"context"``
    instead of ``"length"``/``"stop"``: nothing more fits after them, so a tree search ends
    that beam there instead of overflowing in the next round."""
    if full:
        for s in samples:
            if s.completion.finish_reason in ("length", "stop"):
                s.completion.finish_reason = "context"
    return samples


