"""``ttscale serve-prm``: a transformers PRM served under vLLM's pooling API.

Why: a PRM over HTTP lets several ttscale processes (or the proxy) share one verifier, and lets the
HTTP client (``ttscale.verifiers.http_prm``) be tested against a real server here, where vLLM
cannot run. The answer has vLLM's shape for a STEP-pooled reward model::

    POST /pooling {"model": ..., "input": str | [str, ...]}   or   {"model": ..., "messages": [...]}
    -> {"object": "list",
        "data": [{"index": 0, "object": "pooling", "data": [[p_bad, p_good], ...]}, ...],
        "usage": {"prompt_tokens": T, "total_tokens": T, "completion_tokens": 0}}

one row per occurrence of the step tag in the input, like vLLM's STEP pooler.

How the scores are computed:

* token-classification PRMs (the testbed PRM, PRMs trained by ``ttscale train prm``) read each
  step followed by their step delimiter and are scored at its end. Every step tag in the input is
  replaced by that delimiter and scored there, so with the delimiter itself as the tag (the
  client's ``text`` format for this kind) the PRM reads exactly the text it was trained on.
  Chat input: the user turn is the prompt, the assistant turn split at the tags the steps.
* Qwen-style PRMs (``qwen-prm``): chat input is rendered with the model's chat template (as vLLM
  does), text input is used as is; the scores are read at the step-tag tokens.

A single-label head's probability ``p`` is answered as ``[1 - p, p]``, so clients always read
column 1. Requests are computed one at a time (the model is not thread safe).
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

__all__ = ["PRMServerConfig", "create_prm_app", "score_inputs"]


class PRMServerConfig(BaseModel):
    model_name: str = "ttscale-prm"
    kind: Literal["token-classification", "qwen-prm"] = "token-classification"
    #: the step tag clients write after each step (default: the PRM's delimiter or <extra_0>)
    step_tag: str | None = None
    api_keys: list[str] | None = None
    max_inputs: int = Field(256, ge=1)
    max_request_bytes: int = Field(4 * 2**20, ge=1024)
    #: characters of one input (prompt + steps) and of all inputs of a request, checked before
    #: anything is tokenized: a multi-MB request must not hold the model (and memory) first
    max_input_chars: int = Field(64 * 1024, ge=1)
    max_total_chars: int = Field(1024 * 1024, ge=1)
    #: seconds a client may take to send its body (408 past it)
    body_timeout_s: float = Field(30.0, gt=0)


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: str
    content: str | list[dict[str, Any]]


class PoolingBody(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = Field(None, max_length=200)
    input: str | list[str] | None = None
    messages: list[Message] | None = Field(None, max_length=1000)
    task: str | None = Field(None, max_length=100)


def _text_of(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")


def default_step_tag(scorer: Any, kind: str) -> str:
    if kind == "qwen-prm":
        return getattr(scorer, "step_token", "<extra_0>")
    return getattr(scorer, "step_delimiter", "\n")


def score_inputs(scorer: Any, kind: str, tag: str,
                 inputs: list[str | list[dict[str, str]]]) -> tuple[list[list[float]], int]:
    """Per input, the good-step probability at each step tag; and the tokens read."""
    if kind == "qwen-prm":
        return _score_qwen(scorer, tag, inputs)
    prompts: list[str] = []
    solutions: list[list[str]] = []
    for item in inputs:
        if isinstance(item, str):
            pieces = item.split(tag)
            prompts.append("")
            solutions.append(pieces[:-1])  # text after the last tag is never scored
        else:
            user = next((m["content"] for m in reversed(item) if m["role"] == "user"), "")
            answer = next((m["content"] for m in reversed(item) if m["role"] == "assistant"), "")
            pieces = answer.split(tag)
            prompts.append(user)
            solutions.append(pieces[:-1])
    res = scorer.score(prompts, solutions)
    return [list(s) for s in res.scores], int(res.tokens)


def _score_qwen(scorer: Any, tag: str,
                inputs: list[str | list[dict[str, str]]]) -> tuple[list[list[float]], int]:
    tok = scorer.tokenizer
    step_id = tok.convert_tokens_to_ids(tag)
    if step_id is None or step_id == tok.unk_token_id:
        raise ValueError(f"the PRM's tokenizer has no token {tag!r}")
    texts = [item if isinstance(item, str) else
             tok.apply_chat_template(item, tokenize=False, add_generation_prompt=False)
             for item in inputs]
    seqs = [list(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    positions = [[j for j, t in enumerate(ids) if t == step_id] for ids in seqs]
    for i, s in enumerate(seqs):
        scorer._check_length(i, len(s))
    scores = scorer._score_positions(seqs, positions)
    return scores, sum(len(s) for s in seqs)


def _check_sizes(inputs: list[str | list[dict[str, str]]], cfg: PRMServerConfig) -> None:
    """Refuse oversized inputs by their length in characters, before tokenizing anything."""
    total = 0
    for i, item in enumerate(inputs):
        n = len(item) if isinstance(item, str) else sum(len(m["content"]) for m in item)
        if n > cfg.max_input_chars:
            raise ApiError(400, f"input {i} has {n} characters, over this server's limit of "
                           f"{cfg.max_input_chars}", "input_too_long", "input")
        total += n
    if total > cfg.max_total_chars:
        raise ApiError(400, f"the inputs have {total} characters in all, over this server's "
                       f"limit of {cfg.max_total_chars}", "input_too_long", "input")


def create_prm_app(scorer: Any, config: PRMServerConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``scorer`` (a ``TokenClassificationPRM`` or ``QwenPRM``)."""
    cfg = config or PRMServerConfig()
    tag = cfg.step_tag or default_step_tag(scorer, cfg.kind)
    app = FastAPI(title="ttscale PRM server", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    lock = threading.Lock()
    app.state.stats = {"requests": 0, "inputs": 0, "tokens": 0}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": cfg.model_name, "step_tag": tag, **app.state.stats}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_api_key(request, cfg.api_keys)
        return {"object": "list", "data": [{
            "id": cfg.model_name, "object": "model", "created": 0, "owned_by": "ttscale",
            "ttscale": {"num_parameters": scorer.num_parameters, "step_tag": tag,
                        "kind": cfg.kind}}]}

    async def pooling(request: Request) -> dict[str, Any]:
        check_api_key(request, cfg.api_keys)
        data = await read_json(request, cfg.max_request_bytes, cfg.body_timeout_s)
        body = validate(PoolingBody, data)
        check_model(body.model, cfg.model_name)
        if body.task not in (None, "token_classify", "encode", "reward", "classify"):
            raise ApiError(400, f"task {body.task!r} is not supported; a PRM answers "
                           "token_classify", param="task")
        if (body.input is None) == (body.messages is None):
            raise ApiError(400, "give exactly one of 'input' or 'messages'")
        inputs: list[str | list[dict[str, str]]]
        if body.messages is not None:
            inputs = [[{"role": m.role, "content": _text_of(m.content)} for m in body.messages]]
        else:
            inputs = [body.input] if isinstance(body.input, str) else list(body.input or [])
        if not inputs or len(inputs) > cfg.max_inputs:
            raise ApiError(400, f"input: give 1 to {cfg.max_inputs} texts", param="input")
        _check_sizes(inputs, cfg)

        def work() -> tuple[list[list[float]], int]:
            with lock:
                return score_inputs(scorer, cfg.kind, tag, inputs)

        try:
            scores, tokens = await run_in_threadpool(work)
        except ValueError as e:  # too long for the model, unknown tag, ...
            raise ApiError(400, str(e)) from None
        stats = app.state.stats
        stats["requests"] += 1
        stats["inputs"] += len(inputs)
        stats["tokens"] += tokens
        return {"id": f"pool-{uuid.uuid4().hex}", "object": "list",
                "created": int(time.time()), "model": cfg.model_name,
                "data": [{"index": i, "object": "pooling",
                          "data": [[1.0 - p, p] for p in s]} for i, s in enumerate(scores)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens,
                          "completion_tokens": 0}}

    # vLLM serves /pooling at the root; /v1/pooling is accepted too for clients that prefix it
    app.post("/pooling")(pooling)
    app.post("/v1/pooling")(pooling)
    return app
