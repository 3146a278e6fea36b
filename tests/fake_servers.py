"""Loopback fakes of vLLM, SGLang and llama.cpp's C++ llama-server for the HTTP engine's unit tests.

Why fakes here: they reproduce each server's documented wire quirks deterministically and record
every request body, so one layer (the engine's protocol handling) is tested in milliseconds. The
same behaviours are checked against the real llama-server in tests/test_serve_llamacpp.py.

Reproduced quirks (measured or read in the servers' sources, see docs/engines.md):
* llama-server: ``owned_by: llamacpp`` with ``meta.n_ctx`` per slot, ``/props`` with
  ``total_slots``, a 400 "Field 'n_cmpl': Value must be between 1 <= value <= S" above the slot
  count, an OpenAI route whose usage counts ONE choice, and the native ``/completion`` route with
  per-choice ``tokens_predicted``/``stop_type``; child choice ``i`` is seeded ``seed + i``.
* vLLM: ``owned_by: vllm``, ``max_model_len``, usage summed over the choices, ``stop_reason``.
* SGLang: ``owned_by: sglang``, ``matched_stop``; a seeded request returns n identical samples.
Tokens are characters (one per character of text), so counts are easy to state in tests.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ttscale.serve.common import ServerThread

WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight"]


def fake_text(prompt: str, seed: Any, i: int, max_tokens: int) -> tuple[str, str]:
    """A deterministic sample: (text, how it ended: word/eos/limit); 1 token per character."""
    h = zlib.crc32(repr((prompt, seed if seed is not None else ("rnd", i))).encode())
    text = " ".join(WORDS[(h >> s) % 8] for s in range(0, 3 * (1 + h % 3), 3))
    if len(text) >= max_tokens:
        return text[:max_tokens], "limit"
    return text, "word" if h % 2 else "eos"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message,
                                   "type": "invalid_request_error"}}, status_code=status)


def create_fake_app(flavour: str, *, slots: int = 2, n_ctx: int = 4096,
                    props: bool = True, ends: str | None = None) -> FastAPI:
    """``ends="word"``: every sample that fits ends at a stop string (a search never ends)."""
    app = FastAPI()
    app.state.bodies = []

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        entry: dict[str, Any] = {"id": "fake", "object": "model"}
        if flavour == "llama-server":
            entry.update(owned_by="llamacpp", meta={"n_ctx": n_ctx, "n_ctx_train": 8192,
                                                    "n_params": 134515008})
        else:
            entry.update(owned_by=flavour, max_model_len=n_ctx)
        return {"object": "list", "data": [entry]}

    if flavour == "llama-server" and props:
        @app.get("/props")
        def get_props() -> dict[str, Any]:
            return {"total_slots": slots, "default_generation_settings": {"n_ctx": n_ctx}}

    @app.post("/tokenize")
    async def tokenize(request: Request) -> dict[str, Any]:
        body = await request.json()
        text = body.get("content", body.get("prompt", ""))
        if flavour == "llama-server":
            return {"tokens": [ord(c) for c in text]}
        return {"count": len(text), "max_model_len": n_ctx, "tokens": [ord(c) for c in text]}

    def samples(body: dict[str, Any], n: int) -> list[tuple[str, str]]:
        prompt, seed = body["prompt"], body.get("seed")
        if len(prompt) + 0 >= n_ctx:
            raise ValueError("the request exceeds the available context size, try increasing it")
        if flavour != "llama-server" and len(prompt) + body["max_tokens"] > n_ctx:
            raise ValueError(f"This model's maximum context length is {n_ctx} tokens. However, "
                             f"you requested {len(prompt) + body['max_tokens']} tokens")
        room = min(body["max_tokens"], n_ctx - len(prompt))
        if flavour == "sglang" and seed is not None:
            outs = [fake_text(prompt, seed, 0, room)] * n  # SGLang's seed quirk
        elif flavour == "llama-server" and seed is not None:
            outs = [fake_text(prompt, seed + i, i, room) for i in range(n)]
        else:
            outs = [fake_text(prompt, None if seed is None else (seed, i), i, room)
                    for i in range(n)]
        return [(t, ends if ends and how != "limit" else how) for t, how in outs]

    @app.post("/completion")
    async def native(request: Request) -> Any:
        body = await request.json()
        app.state.bodies.append(("/completion", body))
        n = body.get("n_cmpl", body.get("n", 1))
        if n > slots:
            return _error(400, f"Field 'n_cmpl': Value must be between 1 <= value <= {slots}, "
                               f"but got {n}")
        try:
            outs = samples(body, n)
        except ValueError as e:
            return _error(400, str(e))
        res = []
        for i, (text, how) in enumerate(outs):
            item = {"index": i, "content": text, "tokens_predicted": len(text)
                    + (1 if how == "word" else 0), "tokens_evaluated": len(body["prompt"]),
                    "stop_type": how, "stopping_word": body["stop"][0]
                    if how == "word" and body.get("stop") else "",
                    "timings": {"cache_n": 3 if i == 0 else len(body["prompt"])}}
            if body.get("n_probs"):
                k = body["n_probs"]
                item["completion_probabilities"] = [
                    {"id": 1, "token": c, "logprob": -0.5,
                     "top_logprobs": [{"id": t, "token": "x", "logprob": -0.5 - t}
                                      for t in range(k)]} for c in text]
            res.append(item)
        return res[0] if n == 1 else res

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        app.state.bodies.append(("/v1/completions", body))
        n = body.get("n", 1)
        if flavour == "llama-server" and n > slots:
            return _error(400, f"Field 'n': Value must be between 1 <= value <= {slots}, "
                               f"but got {n}")
        try:
            outs = samples(body, n)
        except ValueError as e:
            return _error(400, str(e))
        choices = []
        for i, (text, how) in enumerate(outs):
            c: dict[str, Any] = {"index": i, "text": text,
                                 "finish_reason": "length" if how == "limit" else "stop"}
            if flavour == "vllm":
                c["stop_reason"] = body["stop"][0] if how == "word" and body.get("stop") else None
            if flavour == "sglang":
                c["matched_stop"] = body["stop"][0] if how == "word" and body.get("stop") \
                    else (2 if how == "eos" else None)
            if body.get("logprobs"):
                k = body["logprobs"]
                c["logprobs"] = {"tokens": list(text), "token_logprobs": [-0.5] * len(text),
                                 "top_logprobs": [{f"t{t}": -0.5 - t for t in range(k + 1)}
                                                  for _ in text]}
            choices.append(c)
        counts = [len(t) + (1 if how == "word" else 0) for t, how in outs]
        generated = counts[0] if flavour == "llama-server" else sum(counts)
        return {"object": "text_completion", "model": "fake", "choices": choices,
                "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": generated,
                          "prompt_tokens_details": {"cached_tokens": 3}}}

    return app


@contextmanager
def fake_server(flavour: str, **kw: Any):
    """Yield ``(base_url, app)``: the server at ``base_url`` (``.../v1``), bodies in
    ``app.state.bodies``."""
    app = create_fake_app(flavour, **kw)
    server = ServerThread(app).start()
    try:
        yield server.url + "/v1", app
    finally:
        server.stop()
