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
* **Sampling is the server's**: the strategy samples with the server's ``temperature`` and
  ``top_p`` (a test-time search needs diverse samples; a client's ``temperature: 0``, which
  evaluation harnesses send by default, would make N identical greedy samples). A client's
  ``temperature: 0`` asks for a *deterministic answer* instead: a fixed seed (the client's, else
  the server's, else 0). A server configured with temperature 0 spends one sample, never N that
  cannot differ. What was used is reported under ``ttscale.sampling``.
* **Guards**: an API key is required (``Authorization: Bearer``) unless the server was started
  without keys on purpose; request bodies, question length, ``max_tokens``, budget and options
  are validated strictly by type (a number sent as a string is a 400) and capped, and the total
  compute of one request (engine samples, generated tokens) is bounded by a guard around every
  engine call whatever the strategy (``ttscale.serve.guard``); OpenAI parameters the proxy does
  not support (``logprobs``, ``tools``, ...) are refused by name; malformed input gets a 4xx with
  a one-line message, an upstream failure a 502, a request past its deadline a 504, anything
  unexpected a generic 500; no stack trace is ever sent.
* **Admission**: at most ``max_concurrent`` searches run and ``max_queue`` wait; past that a
  request is answered at once with 429 and ``Retry-After``. A client that disconnects (streaming
  or not) cancels its search: queued, it never starts; running, its next engine/PRM call is not
  made and the HTTP call in flight is aborted (``ttscale.net.cancel``).

Strategies are synchronous code; each request runs in a worker thread, and the HTTP engines are
safe to share across threads. In-process models are not: wrap them in ``Serialized``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
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

from ttscale.net.cancel import Cancelled, CancelToken, DeadlineExceeded
from ttscale.serve.common import (
    ApiError,
    check_api_key,
    install_error_handlers,
    read_json,
    validate,
)
from ttscale.serve.guard import ComputeLimitExceeded, GuardedGenerator, GuardedScorer, RequestGuard
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
    #: requests that may wait for a slot; past ``max_concurrent + max_queue`` the answer is 429
    max_queue: int = Field(16, ge=0)
    #: per-request deadline (queueing included); past it the search stops and the answer is 504
    request_timeout_s: float = Field(300.0, gt=0)
    #: one request may spend ``compute_factor`` x its budget full generations' worth of tokens
    #: (``budget x max_tokens``) and engine samples (``budget x max_rounds``): room for lookahead
    #: rollouts and a difficulty probe, not for an option that multiplies the work without bound
    compute_factor: int = Field(8, ge=1)
    #: absolute bounds on one request, whatever its budget
    max_request_samples: int = Field(8192, ge=1)
    max_request_tokens: int = Field(2**20, ge=1)
    max_options: int = Field(16, ge=0)
    max_stop: int = Field(16, ge=0)
    #: seconds a client may take to send its body (408 past it)
    body_timeout_s: float = Field(30.0, gt=0)

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


#: OpenAI parameters this proxy does not support: refused by name unless sent with their
#: neutral value (clients that always send ``logprobs: null`` keep working)
UNSUPPORTED = ("logprobs", "top_logprobs", "tools", "tool_choice", "functions", "function_call",
               "response_format", "logit_bias", "best_of", "echo", "suffix", "presence_penalty",
               "frequency_penalty", "audio", "modalities", "prediction", "parallel_tool_calls")
_NEUTRAL: tuple[Any, ...] = (None, False, 0, "", [], {}, {"type": "text"}, "none")


def _refuse_unsupported(data: dict[str, Any]) -> None:
    for key in UNSUPPORTED:
        value = data.get(key)
        if key == "best_of" and value == 1 or key == "parallel_tool_calls" and value is True:
            continue
        if not any(value == v and type(value) is type(v) for v in _NEUTRAL):
            raise ApiError(400, f"'{key}' is not supported by this test-time-scaling proxy "
                           "(it answers with one searched solution); leave it out",
                           "unsupported_parameter", key)


_STRICT = ConfigDict(extra="ignore", strict=True)
_SEED = 2**63 - 1


class _Common(BaseModel):
    model_config = _STRICT

    model: str = Field(max_length=200)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1, le=2**31)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=-_SEED - 1, le=2**64 - 1)
    n: int = Field(1, ge=1, le=2**31)
    stop: str | list[str] | None = None
    ttscale: dict[str, Any] | None = None


class ChatMessage(BaseModel):
    model_config = _STRICT

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatBody(_Common):
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    max_completion_tokens: int | None = Field(None, ge=1, le=2**31)


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
        if colon and not re.fullmatch(r"[0-9]{1,18}", n):
            raise ApiError(400, f"model {model!r}: the budget after ':' must be ASCII digits",
                           "invalid_budget", "model")
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
    if where == "model" and isinstance(value, str):  # checked as ASCII digits by the caller
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
        if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", k):
            raise ApiError(400, "ttscale.options: option names are identifiers",
                           param="ttscale.options")
        if not isinstance(v, (str, int, float, bool)) or (isinstance(v, str) and len(v) > 100):
            raise ApiError(400, f"ttscale.options.{k}: expected a short scalar value", param=k)
        if isinstance(v, str) and _numeric(v):
            # strategies accept digit strings from the command line; from a client they would
            # slip past the numeric cap below
            raise ApiError(400, f"ttscale.options.{k}: send numbers as JSON numbers, not as the "
                           f"string {v!r}", "invalid_option", k)
        if isinstance(v, float) and not math.isfinite(v):
            raise ApiError(400, f"ttscale.options.{k}: must be a finite number", param=k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > cap:
            raise ApiError(400, f"ttscale.options.{k}={v} exceeds this server's cap of {cap}",
                           param=k)
    return dict(value)


def _numeric(text: str) -> bool:
    t = text.strip().lstrip("+-")
    if t.isdigit() or any(ch.isdigit() for ch in t[:1]):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _stops(body: ChatBody | CompletionBody, cfg: ProxyConfig) -> list[str]:
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stops) > cfg.max_stop or any(not s or len(s) > 200 for s in stops):
        raise ApiError(400, f"stop: give at most {cfg.max_stop} non-empty strings of at most 200 "
                       "characters", param="stop")
    return stops


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string (excluded, as the OpenAI API does); and whether one
    was found. The search itself is not changed: its solution is cut afterwards."""
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[:min(cuts)], True) if cuts else (text, False)


def sampling_of(body: ChatBody | CompletionBody, cfg: ProxyConfig,
                budget: int) -> tuple[dict[str, Any], int]:
    """What the search samples with, and the budget it may spend (see the module docstring)."""
    deterministic = body.temperature == 0.0 or body.seed is not None or cfg.seed is not None
    if body.seed is not None:
        seed = body.seed % 2**32
    elif cfg.seed is not None:
        seed = cfg.seed
    elif body.temperature == 0.0:
        seed = 0
    else:
        seed = int.from_bytes(uuid.uuid4().bytes[:4], "big")
    used = budget if cfg.temperature > 0 else 1  # samples at temperature 0 cannot differ
    info = {"temperature": cfg.temperature, "top_p": cfg.top_p, "seed": seed,
            "deterministic": deterministic, "source": "server",
            "client_temperature": body.temperature, "client_top_p": body.top_p}
    if used != budget:
        info["note"] = (f"the server samples at temperature 0: budget {budget} -> 1 (identical "
                        "samples would change nothing)")
    return info, used


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
    stats: dict[str, Any] = {"requests": 0, "ok": 0, "errors": 0, "in_flight": 0,
                             "admitted": 0, "max_admitted": 0, "running": 0, "waiting": 0,
                             "max_waiting": 0,
                             "rejected_busy": 0,
                             "cancelled": 0, "timed_out": 0, "engine_calls": 0, "prm_calls": 0,
                             "engine_calls_after_cancel": 0}
    app.state.stats = stats
    #: recent search durations (seconds), for the Retry-After estimate
    recent: list[float] = []
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

    def retry_after() -> str:
        typical = sorted(recent)[len(recent) // 2] if recent else 1.0
        waves = (stats["waiting"] + 1) / cfg.max_concurrent
        return str(max(1, min(300, math.ceil(typical * waves))))

    async def handle(request: Request, chat: bool) -> Any:
        stats["requests"] += 1
        check_api_key(request, cfg.api_keys)
        data = await read_json(request, cfg.max_request_bytes, cfg.body_timeout_s)
        _refuse_unsupported(data)
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
        stops = _stops(body, cfg)
        sampling, spend = sampling_of(body, cfg, budget)
        rid = uuid.uuid4().hex
        # strategies derive their seeds from the problem id: name it by content, so the same
        # question with the same seed gets the same answer
        problem = task.problem("q-" + hashlib.sha256(question.encode()).hexdigest()[:16],
                               question)
        token = CancelToken(deadline=time.monotonic() + cfg.request_timeout_s)
        guard = RequestGuard(
            max_samples=min(cfg.max_request_samples, cfg.compute_factor * spend * cfg.max_rounds),
            max_tokens=min(cfg.max_request_tokens, cfg.compute_factor * spend * max_tokens),
            token=token)
        # the server's temperature and top-p (see sampling_of); the request's seed and length
        run = _Run(generator, scorer, reviser, task, strategy, spend, options,
                   cfg.search_settings(sampling["seed"], None, None, max_tokens), guard)
        result = await _search(request, run, problem, token, guard)
        text, stopped = cut_at_stop(final_text(result, task), stops)
        usage = usage_of(result.cost)
        info = {"strategy": strategy, "budget": spend, "answer": result.answer,
                "candidates": len(result.candidates), "cost": result.cost.to_dict(),
                "sampling": sampling}
        if spend != budget:
            info["budget_requested"] = budget
        if stopped:
            info["cut_at_stop"] = True
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

    async def _search(request: Request, run: _Run, problem: Any, token: CancelToken,
                      guard: RequestGuard) -> Any:
        """Run the search in a worker thread (after waiting for a slot) while watching the
        client's connection and the deadline; either one stops it (see ``run.solve``)."""
        # admission: a bounded number of searches run or wait; past it, answer now (checked
        # and counted with no await in between, so a burst cannot slip past it)
        if stats["admitted"] >= cfg.max_concurrent + cfg.max_queue:
            stats["rejected_busy"] += 1
            raise ApiError(429, f"the server is busy ({stats['running']} searches running, "
                           f"{stats['waiting']} waiting); retry later", "server_busy",
                           headers={"Retry-After": retry_after()})
        stats["admitted"] += 1
        stats["max_admitted"] = max(stats["max_admitted"], stats["admitted"])
        try:
            return await _admitted(request, run, problem, token, guard)
        finally:
            stats["admitted"] -= 1

    async def _admitted(request: Request, run: _Run, problem: Any, token: CancelToken,
                        guard: RequestGuard) -> Any:
        outcome: dict[str, Any] = {}
        started = time.monotonic()
        cancelled_calls = 0

        async def work(scope: anyio.CancelScope) -> None:
            stats["waiting"] += 1
            stats["max_waiting"] = max(stats["max_waiting"], stats["waiting"])
            admitted = False
            try:
                async with limiter:
                    stats["waiting"] -= 1
                    admitted = True
                    stats["running"] += 1
                    stats["in_flight"] += 1
                    try:
                        outcome["result"] = await anyio.to_thread.run_sync(run.solve, problem)
                    finally:
                        stats["running"] -= 1
                        stats["in_flight"] -= 1
            except Exception as e:  # noqa: BLE001 (handed to the request below)
                outcome["error"] = e
            finally:
                if not admitted:
                    stats["waiting"] -= 1
                scope.cancel()

        async def watch(scope: anyio.CancelScope) -> None:
            nonlocal cancelled_calls
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    cancelled_calls = guard.engine_calls
                    token.cancel("the client disconnected")
                    return

        with anyio.move_on_after(cfg.request_timeout_s):
            async with anyio.create_task_group() as tg:
                tg.start_soon(work, tg.cancel_scope)
                tg.start_soon(watch, tg.cancel_scope)
        stats["engine_calls"] += guard.engine_calls
        stats["prm_calls"] += guard.prm_calls
        if token.cancelled:
            stats["cancelled"] += 1
            stats["engine_calls_after_cancel"] += guard.engine_calls - cancelled_calls
            log.info("search cancelled: %s", token.reason)
            raise ApiError(499, "the client disconnected", "client_closed")
        if "error" in outcome:
            if isinstance(outcome["error"], ApiError) and outcome["error"].status == 504:
                stats["timed_out"] += 1
            raise outcome["error"]
        if "result" not in outcome:  # the deadline passed while it waited for a slot
            token.cancel("deadline")
            stats["timed_out"] += 1
            raise ApiError(504, f"the request did not finish within {cfg.request_timeout_s:g} s",
                           "timeout")
        recent.append(time.monotonic() - started)
        del recent[:-50]
        return outcome["result"]

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
    guard: RequestGuard

    def solve(self, problem: Any) -> Any:
        from ttscale.errors import ProblemError
        from ttscale.net.pool import ClientError, ServerError
        from ttscale.session import search_context
        from ttscale.strategies.registry import get_spec

        fn = get_spec(self.strategy)
        guard = self.guard
        generator = GuardedGenerator(self.generator, guard)
        scorer = None if self.scorer is None else GuardedScorer(self.scorer, guard)
        reviser = None if self.reviser is None else GuardedGenerator(self.reviser, guard)
        try:
            guard.token.check()  # cancelled or expired while it waited for a slot
            ctx = search_context(fn, self.task, self.settings, generator,
                                 scorer=scorer, reviser=reviser, options=self.options)
            return fn(problem, self.budget, ctx)
        except DeadlineExceeded:
            raise ApiError(504, "the request ran past this server's deadline; the search was "
                           "stopped", "timeout") from None
        except Cancelled:
            raise
        except ComputeLimitExceeded as e:
            raise ApiError(400, str(e), "compute_limit_exceeded") from None
        except ClientError as e:
            if e.status in (401, 403):  # our key, not the client's request
                log.error("an upstream refused this server's API key: %s", e)
                raise ApiError(502, "an upstream engine refused this server's credentials; "
                               "the operator must configure its key", "upstream_auth") from None
            # the upstream refused what we sent (e.g. prompt too long)
            raise ApiError(400, f"an upstream engine refused the request: {e.detail}") from None
        except ProblemError as e:  # about this request only (e.g. a prompt that cannot fit)
            raise ApiError(400, f"this request failed: {e}") from None
        except ServerError as e:
            if self.guard.token.deadline is not None and \
                    time.monotonic() > self.guard.token.deadline:
                raise ApiError(504, "the upstream engine did not answer before this request's "
                               "deadline", "timeout") from None
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
