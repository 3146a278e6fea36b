"""``ttscale serve``: an OpenAI-compatible endpoint that answers with test-time search.

Applications that only speak the OpenAI API (the way optillm is used) send a question to
``/v1/chat/completions`` or ``/v1/completions``; the proxy builds a problem from it, runs a search
strategy against the upstream policy engine and the PRM, and answers with the chosen solution.

* **Strategy per request**: a model-name suffix ``<served>@<strategy>`` or
  ``<served>@<strategy>:<budget>`` (e.g. ``ttscale@beam:16``), or ``extra_body={"ttscale":
  {"strategy": ..., "budget": ..., "options": {...}}}`` (wins over the suffix); otherwise the
  server's default, which is the compute-optimal policy table when one is configured and the
  ``compute-optimal`` strategy is installed.
* **Usage is the real cost**: ``prompt_tokens`` = every policy prompt token of every sample plus
  every token the PRM read, ``completion_tokens`` = every generated token of every sample,
  ``prompt_tokens_details.cached_tokens`` = prompt tokens reused from a prefix cache; the full
  ``Cost`` (FLOPs, wall time) is under ``ttscale.cost``.
* **Streaming**: the final answer is streamed (server-sent events, OpenAI chunk format) once the
  search is done; ``stream_options.include_usage`` adds the usage chunk.
* **Guards**: an API key is required (``Authorization: Bearer``) unless the server was started
  without keys on purpose; request bodies, question length, ``max_tokens``, budget and numeric
  options are capped; malformed input gets a 4xx with a one-line message, an upstream failure a
  502, anything unexpected a generic 500; no stack trace is ever sent.

Strategies are synchronous code; each request runs in a worker thread (at most
``max_concurrent`` at once, the rest wait), and the HTTP engines are safe to share across
threads. In-process models are not: wrap them in ``Serialized``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ttscale.serve.common import (
    ApiError,
    check_api_key,
    install_error_handlers,
    read_json,
    validate,
)
from ttscale.serve.tasks import ProxyTask

log = logging.getLogger("ttscale.serve.proxy")

__all__ = ["ProxyConfig", "Serialized", "create_proxy_app", "resolve_request"]

#: option key under which the compute-optimal strategy receives the policy table path
#: (``ttscale.strategies.compute_optimal``); clients may not set it (it names a server file)
POLICY_TABLE_OPTION = "policy_table"
COMPUTE_OPTIMAL = "compute-optimal"


class ProxyConfig(BaseModel):
    """Everything the proxy decides on its own; request fields may only narrow it."""

    model_config = ConfigDict(extra="forbid")

    served_model: str = "ttscale"
    default_strategy: str = "weighted-best-of-n"
    default_budget: int = Field(4, ge=1)
    max_budget: int = Field(64, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)
    policy_table: str | None = None
    api_keys: list[str] | None = None
    seed: int | None = None
    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_step_tokens: int = Field(256, ge=1)
    default_max_tokens: int = Field(1024, ge=1)
    max_tokens_cap: int = Field(4096, ge=1)
    max_rounds: int = Field(40, ge=1)
    max_request_bytes: int = Field(256 * 1024, ge=1024)
    max_prompt_chars: int = Field(16000, ge=1)
    max_concurrent: int = Field(8, ge=1)
    max_options: int = Field(16, ge=0)

    def search_settings(self, seed: int, temperature: float | None = None,
                        top_p: float | None = None, max_tokens: int | None = None) -> Any:
        """The frozen search settings of one request (its own seed, temperature, top-p and
        max_tokens within this server's limits)."""
        from ttscale.strategies.base import SearchSettings

        max_tokens = max_tokens or self.default_max_tokens
        return SearchSettings(seed=seed,
                              temperature=self.temperature if temperature is None else temperature,
                              top_p=self.top_p if top_p is None else top_p,
                              max_step_tokens=min(self.max_step_tokens, max_tokens),
                              max_solution_tokens=max_tokens, max_rounds=self.max_rounds)


class Serialized:
    """One call at a time into an in-process model (transformers models are not thread safe)."""

    def __init__(self, inner: Any, loader: Any = None) -> None:
        """``inner``, or ``loader()`` called on first use (a model only some strategies use)."""
        self._inner, self._loader = inner, loader
        self._lock = threading.Lock()

    @property
    def inner(self) -> Any:
        if self._inner is None:
            with self._lock:
                if self._inner is None:
                    self._inner = self._loader()
        return self._inner

    @property
    def num_parameters(self) -> int:
        return int(self.inner.num_parameters)

    def generate(self, prompts: list[str], params: Any) -> Any:
        inner = self.inner
        with self._lock:
            return inner.generate(prompts, params)

    def score(self, prompts: Any, solutions: Any) -> Any:
        inner = self.inner
        with self._lock:
            return inner.score(prompts, solutions)


# ---- request bodies ------------------------------------------------------------------------


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    n: int = 1
    ttscale: dict[str, Any] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatBody(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionBody(_Common):
    prompt: str | list[str]


# ---- strategy resolution -------------------------------------------------------------------


def own_options(strategy: str, shared: dict[str, Any]) -> dict[str, Any]:
    from ttscale.strategies.registry import own_options as own

    return own(strategy, shared)


def _registered() -> dict[str, Any]:
    from ttscale.strategies.registry import STRATEGIES

    return STRATEGIES


def resolve_request(model: str, extra: dict[str, Any] | None, cfg: ProxyConfig,
                    default_strategy: str, default_options: dict[str, Any]
                    ) -> tuple[str, int, dict[str, Any]]:
    """(strategy, budget, options) of a request, validated against the server's caps."""
    name, sep, spec = model.partition("@")
    if name != cfg.served_model:
        raise ApiError(404, f"model {model!r} does not exist; use {cfg.served_model!r} or "
                       f"{cfg.served_model!r}@<strategy>[:<budget>]", "model_not_found", "model")
    strategy, budget, asked = default_strategy, cfg.default_budget, {}
    if sep:
        strat, colon, n = spec.partition(":")
        if not strat:
            raise ApiError(400, f"model {model!r}: empty strategy after '@'", param="model")
        strategy = strat
        if colon:
            budget = _budget(n, "model")
    if extra is not None:
        unknown = set(extra) - {"strategy", "budget", "options"}
        if unknown:
            raise ApiError(400, f"ttscale: unknown field(s) {sorted(unknown)}; use strategy, "
                           "budget, options", param="ttscale")
        if "strategy" in extra:
            if not isinstance(extra["strategy"], str) or not extra["strategy"]:
                raise ApiError(400, "ttscale.strategy must be a strategy name",
                               param="ttscale.strategy")
            strategy = extra["strategy"]
        if "budget" in extra:
            budget = _budget(extra["budget"], "ttscale.budget")
        if "options" in extra:
            asked = _options(extra["options"], cfg)
    known = _registered()
    if strategy not in known:
        raise ApiError(400, f"unknown strategy {strategy!r}; choose one of "
                       f"{', '.join(sorted(known))}", "unknown_strategy", "strategy")
    # the server's default options apply where they mean something (beam_width is nothing to
    # majority voting); what the request asks for must all be options of its strategy
    options = {**own_options(strategy, default_options), **asked}
    if budget > cfg.max_budget:
        raise ApiError(400, f"budget {budget} exceeds this server's per-request cap of "
                       f"{cfg.max_budget}", "budget_too_large", "budget")
    if strategy == COMPUTE_OPTIMAL and cfg.policy_table and POLICY_TABLE_OPTION not in options:
        options[POLICY_TABLE_OPTION] = cfg.policy_table
    try:  # a typo or a budget the strategy cannot split: 400 before any spending
        known[strategy].parse(options, budget)
    except ValueError as e:
        raise ApiError(400, str(e), "invalid_request", "ttscale.options") from None
    return strategy, budget, options


def _budget(value: Any, where: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(400, f"{where}: budget must be an integer >= 1, got {value!r}",
                       "invalid_budget", where)
    return value


def _options(value: Any, cfg: ProxyConfig) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError(400, "ttscale.options must be an object", param="ttscale.options")
    if len(value) > cfg.max_options:
        raise ApiError(400, f"ttscale.options: at most {cfg.max_options} options",
                       param="ttscale.options")
    cap = max(cfg.max_budget, 64)
    for k, v in value.items():
        if k == POLICY_TABLE_OPTION:
            raise ApiError(400, f"ttscale.options.{k} is set by the server", param=k)
        if not isinstance(v, (str, int, float, bool)) or (isinstance(v, str) and len(v) > 100):
            raise ApiError(400, f"ttscale.options.{k}: expected a short scalar value", param=k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > cap:
            raise ApiError(400, f"ttscale.options.{k}={v} exceeds this server's cap of {cap}",
                           param=k)
    return dict(value)


def _question(body: ChatBody | CompletionBody) -> str:
    if isinstance(body, CompletionBody):
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise ApiError(400, "prompt: send exactly one prompt per request", param="prompt")
        return prompts[0]
    for m in reversed(body.messages):
        if m.role == "user":
            c = m.content
            if isinstance(c, list):
                return "".join(str(p.get("text", "")) for p in c
                               if isinstance(p, dict) and p.get("type") == "text")
            return c or ""
    raise ApiError(400, "messages: no user message to answer", param="messages")


# ---- the app -------------------------------------------------------------------------------


def create_proxy_app(generator: Any, scorer: Any, task: ProxyTask,
                     config: ProxyConfig | None = None, reviser: Any = None) -> FastAPI:
    """The proxy over a thread-safe ``generator`` (policy), ``scorer`` (PRM, may be None) and
    ``reviser`` (the revision model of ``revisions``/``combined``; None: the policy revises)."""
    cfg = config or ProxyConfig()
    known = _registered()
    default_strategy, default_options = cfg.default_strategy, dict(cfg.options)
    if cfg.policy_table:
        if COMPUTE_OPTIMAL in known:
            from ttscale.strategies.policy_table import load_table

            load_table(cfg.policy_table)  # a bad table fails now, not on the first request
            default_strategy = COMPUTE_OPTIMAL
        else:
            log.warning("policy table %s given but the %s strategy is not installed; the default "
                        "strategy is %s", cfg.policy_table, COMPUTE_OPTIMAL, default_strategy)
    if default_strategy not in known:
        raise ValueError(f"default strategy {default_strategy!r} is unknown; choose one of "
                         f"{', '.join(sorted(known))}")
    if cfg.default_budget > cfg.max_budget:
        raise ValueError(f"default budget {cfg.default_budget} exceeds max budget "
                         f"{cfg.max_budget}")

    app = FastAPI(title="ttscale proxy", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    limiter = anyio.CapacityLimiter(cfg.max_concurrent)
    stats: dict[str, Any] = {"requests": 0, "ok": 0, "errors": 0, "in_flight": 0}
    app.state.stats = stats
    app.state.default_strategy = default_strategy

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": cfg.served_model, "default_strategy": default_strategy,
                **stats}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_api_key(request, cfg.api_keys)
        names = [cfg.served_model] + [f"{cfg.served_model}@{s}" for s in sorted(_registered())]
        return {"object": "list", "data": [
            {"id": n, "object": "model", "created": 0, "owned_by": "ttscale"} for n in names]}

    async def handle(request: Request, chat: bool) -> Any:
        stats["requests"] += 1
        check_api_key(request, cfg.api_keys)
        data = await read_json(request, cfg.max_request_bytes)
        body: ChatBody | CompletionBody = validate(ChatBody if chat else CompletionBody, data)
        if body.n != 1:
            raise ApiError(400, "n must be 1: the strategy already samples `budget` solutions "
                           "and answers with the best", param="n")
        strategy, budget, options = resolve_request(body.model, body.ttscale, cfg,
                                                    default_strategy, default_options)
        question = _question(body)
        if not question.strip():
            raise ApiError(400, "the question is empty", param="messages" if chat else "prompt")
        if len(question) > cfg.max_prompt_chars:
            raise ApiError(400, f"prompt of {len(question)} characters exceeds this server's "
                           f"limit of {cfg.max_prompt_chars}", "context_length_exceeded")
        max_tokens = (getattr(body, "max_completion_tokens", None) or body.max_tokens
                      or cfg.default_max_tokens)
        if max_tokens > cfg.max_tokens_cap:
            raise ApiError(400, f"max_tokens={max_tokens} exceeds this server's cap of "
                           f"{cfg.max_tokens_cap}", "max_tokens_too_large", "max_tokens")
        rid = uuid.uuid4().hex
        # strategies derive their seeds from the problem id: name it by content, so the same
        # question with the same seed gets the same answer
        problem = task.problem("q-" + hashlib.sha256(question.encode()).hexdigest()[:16],
                               question)
        seed = body.seed if body.seed is not None else (
            cfg.seed if cfg.seed is not None else int.from_bytes(uuid.uuid4().bytes[:4], "big"))
        run = _Run(generator, scorer, reviser, task, strategy, budget, options,
                   cfg.search_settings(seed, body.temperature, body.top_p, max_tokens))
        stats["in_flight"] += 1
        try:
            result = await anyio.to_thread.run_sync(run.solve, problem, limiter=limiter)
        finally:
            stats["in_flight"] -= 1
        text = final_text(result, task)
        usage = usage_of(result.cost)
        info = {"strategy": strategy, "budget": budget, "answer": result.answer,
                "candidates": len(result.candidates), "cost": result.cost.to_dict()}
        stats["ok"] += 1
        created = int(time.time())
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                _stream(rid, created, body.model, text, task.step_delimiter, chat, usage,
                        include_usage, info),
                media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        if chat:
            choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None,
                                      "message": {"role": "assistant", "content": text}}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "finish_reason": "stop", "logprobs": None, "text": text}
            obj = "text_completion"
        return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{rid}", "object": obj,
                "created": created, "model": body.model, "choices": [choice], "usage": usage,
                "system_fingerprint": None, "ttscale": info}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await _counted(handle(request, chat=True))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await _counted(handle(request, chat=False))

    async def _counted(coro: Any) -> Any:
        try:
            return await coro
        except BaseException:
            stats["errors"] += 1
            raise

    return app


@dataclass
class _Run:
    """One request's search: a fresh context, the strategy, upstream errors mapped to 4xx/5xx."""

    generator: Any
    scorer: Any
    reviser: Any
    task: ProxyTask
    strategy: str
    budget: int
    options: dict[str, Any]
    settings: Any  # SearchSettings

    def solve(self, problem: Any) -> Any:
        from ttscale.errors import ProblemError
        from ttscale.net.pool import ClientError, ServerError
        from ttscale.session import search_context
        from ttscale.strategies.registry import get_spec

        fn = get_spec(self.strategy)
        try:
            ctx = search_context(fn, self.task, self.settings, self.generator,
                                 scorer=self.scorer, reviser=self.reviser, options=self.options)
            return fn(problem, self.budget, ctx)
        except ClientError as e:  # the upstream refused what we sent (e.g. prompt too long)
            raise ApiError(400, f"the policy engine refused the request: {e.detail}") from None
        except ProblemError as e:  # about this request only (e.g. a prompt that cannot fit)
            raise ApiError(400, f"this request failed: {e}") from None
        except ServerError as e:
            log.error("upstream failure: %s", e)
            raise ApiError(502, "the upstream engine failed after retries; try again later",
                           "upstream_error") from None
        except ValueError as e:  # bad strategy options, a strategy that needs a verifier, ...
            raise ApiError(400, str(e), "invalid_request") from None


def final_text(result: Any, task: ProxyTask) -> str:
    """The full solution the answer came from: of the candidates stating the chosen answer, the
    best-scored one (first on ties); without an answer, the best-scored candidate."""
    from ttscale.verifiers.base import aggregate

    cands = [c for c in result.candidates if result.answer is not None
             and c.answer == result.answer] or list(result.candidates)
    if not cands:
        return ""
    best = max(range(len(cands)), key=lambda i: (aggregate(cands[i].scores), -i))
    return task.solution_text(cands[best].steps).rstrip()


def usage_of(cost: Any) -> dict[str, Any]:
    """OpenAI ``usage`` from a ``Cost``: every token the request made any model read or write."""
    prompt = int(cost.prompt_tokens + cost.prm_tokens)
    completion = int(cost.generated_tokens)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": int(cost.prompt_tokens_cached
                                                           + cost.prm_tokens_cached)},
            "completion_tokens_details": None}


def _pieces(text: str, delimiter: str) -> list[str]:
    """The answer cut at step boundaries (delimiters kept), so it streams step by step."""
    parts = text.split(delimiter)
    out = [p + delimiter for p in parts[:-1]] + [parts[-1]]
    return [p for p in out if p]


async def _stream(rid: str, created: int, model: str, text: str, delimiter: str, chat: bool,
                  usage: dict[str, Any], include_usage: bool,
                  info: dict[str, Any]) -> AsyncIterator[bytes]:
    obj = "chat.completion.chunk" if chat else "text_completion"
    cid = f"{'chatcmpl' if chat else 'cmpl'}-{rid}"

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        payload = {"id": cid, "object": obj, "created": created, "model": model,
                   "choices": choices, **extra}
        return f"data: {json.dumps(payload)}\n\n".encode()

    if chat:
        yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                      "finish_reason": None}])
    for piece in _pieces(text, delimiter):
        if chat:
            yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        else:
            yield chunk([{"index": 0, "text": piece, "finish_reason": None, "logprobs": None}])
    last: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
    last.update({"delta": {}} if chat else {"text": "", "logprobs": None})
    yield chunk([last], ttscale=info)
    if include_usage:
        yield chunk([], usage=usage)
    yield b"data: [DONE]\n\n"
