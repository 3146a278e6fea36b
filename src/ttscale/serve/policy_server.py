"""An OpenAI-compatible completions server over the in-process transformers engine.

Why ttscale ships one: tests, benches and CI need a *real* engine behind real HTTP on loopback
(vLLM does not run on a CPU laptop, llama.cpp's server must be compiled), and the testbed models
are transformers checkpoints. It answers the subset of the API that ``OpenAIGenerator`` uses:

* ``POST /v1/completions``: ``prompt`` (a string or a list of strings), ``n``, ``max_tokens``,
  ``temperature``, ``top_p``, ``stop``, ``seed``, ``logprobs``; ``usage`` counts each prompt once
  (as vLLM does); choices carry vLLM's ``stop_reason`` (the stop string, or null when the model
  ended) unless the server emulates llama.cpp;
* ``GET /v1/models`` (with ``ttscale.num_parameters`` for FLOPs accounting) and ``GET /health``.

Every request is computed on its own, one at a time (the model is not thread safe and the CPU is
the bottleneck anyway), so the answer depends only on the request: the same prompt, parameters and
seed give the same completions whatever else the server is doing. That is what makes the
fault-injection test's "same answers as without faults" meaningful. For throughput, run more
replicas (processes) and give ``OpenAIGenerator`` all their URLs.

``emulate="llamacpp"`` answers like llama.cpp's server: ``n`` is ignored (one choice) and choices
have no ``stop_reason``; the engine's fallbacks for such servers are tested against it.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ttscale.serve.common import (
    ApiError,
    check_api_key,
    check_model,
    install_error_handlers,
    read_json,
    validate,
)

__all__ = ["PolicyServerConfig", "create_policy_app"]


class PolicyServerConfig(BaseModel):
    """Limits and identity of a policy server."""

    model_name: str = "ttscale-policy"
    emulate: Literal["vllm", "llamacpp"] = "vllm"
    api_keys: list[str] | None = None
    max_n: int = Field(256, ge=1)
    max_prompts: int = Field(64, ge=1)
    max_request_bytes: int = Field(4 * 2**20, ge=1024)
    max_tokens: int = Field(32768, ge=1)
    #: seconds a client may take to send its body (408 past it)
    body_timeout_s: float = Field(30.0, gt=0)


class CompletionBody(BaseModel):
    # strict: a number sent as a string is a 400, not silently converted
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = Field(None, max_length=200)
    prompt: str | list[str]
    n: int = Field(1, ge=1, le=2**31)
    max_tokens: int = Field(16, ge=1, le=2**31)
    temperature: float = Field(1.0, ge=0.0, le=100.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = Field(None, max_length=64)
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    logprobs: int | None = Field(None, ge=0, le=20)
    stream: bool = False
    echo: bool = False


def create_policy_app(generator: Any, config: PolicyServerConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``generator`` (an ``HFGenerator``)."""
    from ttscale.engines.base import SamplingParams

    cfg = config or PolicyServerConfig()
    app = FastAPI(title="ttscale policy server", docs_url=None, redoc_url=None,
                  openapi_url=None)
    install_error_handlers(app)
    lock = threading.Lock()
    app.state.stats = {"requests": 0, "completions": 0, "generated_tokens": 0}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": cfg.model_name, **app.state.stats}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_api_key(request, cfg.api_keys)
        return {"object": "list", "data": [{
            "id": cfg.model_name, "object": "model", "created": 0, "owned_by": "ttscale",
            "max_model_len": getattr(generator, "max_len", None),
            "ttscale": {"num_parameters": generator.num_parameters}}]}

    @app.post("/v1/completions")
    async def completions(request: Request) -> dict[str, Any]:
        check_api_key(request, cfg.api_keys)
        data = await read_json(request, cfg.max_request_bytes, cfg.body_timeout_s)
        body = validate(CompletionBody, data)
        check_model(body.model, cfg.model_name)
        if body.stream:
            raise ApiError(400, "stream=true is not supported by this server", param="stream")
        if body.echo:
            raise ApiError(400, "echo=true is not supported by this server", param="echo")
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if not prompts or len(prompts) > cfg.max_prompts:
            raise ApiError(400, f"prompt: give 1 to {cfg.max_prompts} prompts", param="prompt")
        n = 1 if cfg.emulate == "llamacpp" else body.n
        if n > cfg.max_n:
            raise ApiError(400, f"n={n} exceeds this server's limit of {cfg.max_n}", param="n")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if any(not s for s in stop):
            raise ApiError(400, "stop strings must be non-empty", param="stop")
        if body.max_tokens > cfg.max_tokens:
            raise ApiError(400, f"max_tokens={body.max_tokens} exceeds this server's limit of "
                           f"{cfg.max_tokens}", param="max_tokens")
        seed = None if body.seed is None else body.seed % 2**32
        params = SamplingParams(n=n, temperature=body.temperature, top_p=body.top_p,
                                max_tokens=body.max_tokens, stop=tuple(stop), seed=seed)

        def work() -> tuple[list[dict[str, Any]], int, int]:
            with lock:
                return _generate(generator, prompts, params, body.logprobs,
                                 cfg.emulate == "vllm")

        try:
            choices, prompt_tokens, completion_tokens = await run_in_threadpool(work)
        except ValueError as e:  # e.g. a prompt longer than the model's context
            raise ApiError(400, str(e)) from None
        stats = app.state.stats
        stats["requests"] += 1
        stats["completions"] += len(choices)
        stats["generated_tokens"] += completion_tokens
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                "created": int(time.time()), "model": cfg.model_name, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    return app


def _generate(generator: Any, prompts: list[str], params: Any, logprobs: int | None,
              stop_reason: bool) -> tuple[list[dict[str, Any]], int, int]:
    """Each prompt on its own call with the request's seed (vLLM seeds each prompt alike)."""
    choices: list[dict[str, Any]] = []
    prompt_tokens = completion_tokens = 0
    for p in prompts:
        samples = generator.sample([p], params, return_logits=logprobs is not None)[0]
        prompt_tokens += samples[0].prompt_tokens
        for s in samples:
            completion_tokens += len(s.token_ids)
            choice: dict[str, Any] = {
                "index": len(choices), "text": s.text,
                "finish_reason": "length" if s.finish_reason == "length" else "stop",
                "logprobs": _logprobs(generator, s, logprobs) if logprobs is not None else None}
            if stop_reason:
                choice["stop_reason"] = _which_stop(generator, s, params.stop) \
                    if s.finish_reason == "stop" else None
            choices.append(choice)
    return choices, prompt_tokens, completion_tokens


def _which_stop(generator: Any, sample: Any, stops: tuple[str, ...]) -> str:
    """The stop string that ended ``sample`` (its text excludes it)."""
    full = generator.tokenizer.decode(sample.token_ids, skip_special_tokens=True,
                                      clean_up_tokenization_spaces=False)
    rest = full[len(sample.text):]
    return next((s for s in stops if rest.startswith(s)), stops[0])


def _logprobs(generator: Any, sample: Any, top: int) -> dict[str, Any]:
    """The completions API's logprobs object for one sample (raw model distribution)."""
    import torch

    tok = generator.tokenizer
    lp = torch.log_softmax(sample.logits.float(), dim=-1)
    ids = sample.token_ids
    tokens = [tok.decode([i], skip_special_tokens=False) for i in ids]
    chosen = [float(lp[k, i]) for k, i in enumerate(ids)]
    tops = None
    if top > 0:
        vals, idx = lp.topk(min(top, lp.shape[-1]), dim=-1)
        tops = [{tok.decode([int(j)]): float(v) for v, j in zip(vr, ir, strict=True)}
                for vr, ir in zip(vals.tolist(), idx.tolist(), strict=True)]
    offsets, pos = [], 0
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    return {"tokens": tokens, "token_logprobs": chosen, "top_logprobs": tops,
            "text_offset": offsets}
