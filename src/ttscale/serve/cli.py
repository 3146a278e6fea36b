"""CLI verbs of the serving layer: ``ttscale serve`` (the OpenAI-compatible search proxy),
``ttscale serve-prm`` (a PRM under vLLM's pooling API) and ``ttscale serve-policy`` (a
transformers policy under the completions API, for tests, benches and CPU-only setups).

Import-light like the rest of the CLI: FastAPI, uvicorn, torch and the models are imported inside
the commands.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

HOST_HELP = "Interface to bind (default loopback only; 0.0.0.0 exposes it to the network)."
PORT = typer.Option("--port", min=1, max=65535, help="TCP port (1-65535).")
KEY_FILE_HELP = "File whose first line is an accepted client key (keeps it out of `ps`)."
INSECURE_HELP = ("Listen beyond loopback WITHOUT an API key (anyone who can reach it can use "
                 "it). Without this, a non-loopback --host needs a key.")
KeyFileOpt = Annotated[str | None, typer.Option("--api-key-file", help=KEY_FILE_HELP)]
InsecureOpt = Annotated[bool, typer.Option("--insecure-no-auth", help=INSECURE_HELP)]
# the model servers (serve-policy, serve-prm): open on loopback by default, with a warning
ServerKeyOpt = Annotated[list[str] | None, typer.Option(
    "--api-key", help="Require this key (repeatable; also TTSCALE_API_KEY, --api-key-file); "
    "without one it runs open on loopback, with a warning.")]
ServerNoAuthOpt = Annotated[bool, typer.Option(
    "--no-auth", help="No key, no warning (loopback only).")]


def _uvicorn(app: Any, host: str, port: int, banner: str) -> None:
    import uvicorn

    from ttscale.serve.common import uvicorn_config

    sys.stderr.write(f"{banner} on http://{host}:{port}\n")
    uvicorn.run(app, **uvicorn_config(host, port))


def _options(items: list[str] | None) -> dict[str, Any]:
    from ttscale.config import parse_set

    out: dict[str, Any] = {}
    for item in items or []:
        key, value = parse_set(item)
        out[key] = value
    return out


def serve_cmd(
    upstream: Annotated[list[str] | None, typer.Option(
        "--upstream", help="OpenAI-compatible policy server base URL (repeat for replicas), "
        "e.g. http://127.0.0.1:8000/v1. Without it the policy runs in this process.")] = None,
    upstream_model: Annotated[str | None, typer.Option(
        "--upstream-model", help="Served model name upstream (default: the first listed).")
    ] = None,
    upstream_key: Annotated[str | None, typer.Option(
        "--upstream-key", help="API key for the upstream policy servers (visible in `ps`: "
        "prefer --upstream-key-file or TTSCALE_UPSTREAM_API_KEY).")] = None,
    upstream_key_file: Annotated[str | None, typer.Option(
        "--upstream-key-file", help="File holding the upstream policy servers' key.")] = None,
    prm_key: Annotated[str | None, typer.Option(
        "--prm-key", help="API key for an HTTP PRM server (prefer --prm-key-file or "
        "TTSCALE_PRM_API_KEY).")] = None,
    prm_key_file: Annotated[str | None, typer.Option(
        "--prm-key-file", help="File holding the HTTP PRM server's key.")] = None,
    backend_timeout: Annotated[float, typer.Option(
        "--backend-timeout", min=0.1, help="Seconds to wait for one backend (policy or PRM) "
        "answer before retrying.")] = 120.0,
    backend_connect_timeout: Annotated[float, typer.Option(
        "--backend-connect-timeout", min=0.1, help="Seconds to wait for a backend connection."
    )] = 5.0,
    backend_retries: Annotated[int, typer.Option(
        "--backend-retries", min=0, max=20, help="Extra attempts per backend call.")] = 2,
    request_timeout: Annotated[float, typer.Option(
        "--request-timeout", min=0.1, help="Deadline of one client request (queueing "
        "included); past it the search stops and the answer is 504.")] = 300.0,
    policy: Annotated[str | None, typer.Option(
        "--policy", help="In-process policy folder when no --upstream (default: testbed "
        "policy-small).")] = None,
    prm: Annotated[str | None, typer.Option(
        "--prm", help="PRM: a folder (in-process), an http(s) URL of a pooling server "
        "(vLLM or ttscale serve-prm), or 'none' (default: testbed prm).")] = None,
    prm_kind: Annotated[str, typer.Option(
        "--prm-kind", help="token-classification or qwen-prm.")] = "token-classification",
    revision: Annotated[str | None, typer.Option(
        "--revision", help="Revision model of the revisions/combined strategies: a served model "
        "name on the --upstream servers, or an in-process folder ('testbed:revision' names the "
        "shipped one, the default for the testbed format with the in-process testbed policy; "
        "otherwise the policy revises its own attempts).")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", help="Prompt/answer format: testbed, math, qwen-math.")] = "testbed",
    prompt_template: Annotated[str | None, typer.Option(
        "--prompt-template", help="Prompt template with {question} (replaces the format's).")
    ] = None,
    served_model: Annotated[str, typer.Option(
        "--served-model", help="Model name clients use (suffix @strategy[:budget]).")
    ] = "ttscale",
    strategy: Annotated[str, typer.Option(
        "--strategy", help="Default strategy.")] = "weighted-best-of-n",
    budget: Annotated[int, typer.Option("--budget", help="Default budget N.")] = 4,
    max_budget: Annotated[int, typer.Option(
        "--max-budget", help="Largest budget a request may ask for.")] = 64,
    policy_table: Annotated[str | None, typer.Option(
        "--policy-table", help="Compute-optimal policy table (JSON); makes compute-optimal "
        "the default strategy when it is installed.")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", help="Default strategy option KEY=VALUE, repeatable "
        "(e.g. beam_width=4).")] = None,
    api_key: Annotated[list[str] | None, typer.Option(
        "--api-key", help="Accepted client key, repeatable (also TTSCALE_API_KEY, "
        "--api-key-file).")] = None,
    api_key_file: KeyFileOpt = None,
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="Serve without API keys (loopback only; refused on other hosts)."
    )] = False,
    insecure_no_auth: InsecureOpt = False,
    host: Annotated[str, typer.Option("--host", help=HOST_HELP)] = "127.0.0.1",
    port: Annotated[int, PORT] = 8080,
    temperature: Annotated[float, typer.Option(
        "--temperature", min=0.0, help="The strategies' sampling temperature (the server's, "
        "not the client's: see docs/serving.md).")] = 0.8,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0)] = 1.0,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Fixed seed for every request without one (deterministic server).")
    ] = None,
    max_tokens_cap: Annotated[int, typer.Option(
        "--max-tokens-cap", help="Largest max_tokens a request may ask for.")] = 4096,
    max_prompt_chars: Annotated[int, typer.Option("--max-prompt-chars")] = 16000,
    max_request_bytes: Annotated[int, typer.Option("--max-request-bytes")] = 256 * 1024,
    max_concurrent: Annotated[int, typer.Option(
        "--max-concurrent", min=1, help="Searches run at once; more requests wait.")] = 8,
    max_queue: Annotated[int, typer.Option(
        "--max-queue", min=0, help="Requests that may wait for a slot; more get 429 with "
        "Retry-After.")] = 16,
    compute_factor: Annotated[int, typer.Option(
        "--compute-factor", min=1, help="One request may spend this many times its budget in "
        "engine samples and generated tokens.")] = 8,
    device: Annotated[str, typer.Option("--device", help="For in-process models.")] = "cpu",
) -> None:
    """Serve an OpenAI-compatible API that answers with test-time search."""
    from ttscale.serve.common import secret, server_keys
    from ttscale.serve.proxy import ProxyConfig, create_proxy_app
    from ttscale.serve.tasks import ProxyTask

    keys = server_keys("ttscale serve", host, api_key, api_key_file, no_auth, insecure_no_auth)
    task = ProxyTask(fmt, prompt_template)
    cfg = ProxyConfig(served_model=served_model, default_strategy=strategy,
                      default_budget=budget, max_budget=max_budget, options=_options(option),
                      policy_table=policy_table, api_keys=keys, temperature=temperature,
                      top_p=top_p, seed=seed,
                      max_tokens_cap=max_tokens_cap, max_prompt_chars=max_prompt_chars,
                      max_request_bytes=max_request_bytes, max_concurrent=max_concurrent,
                      max_queue=max_queue, request_timeout_s=request_timeout,
                      compute_factor=compute_factor)
    timeouts = {"timeout_s": backend_timeout, "retries": backend_retries}
    upstream_secret = secret(upstream_key, upstream_key_file, "TTSCALE_UPSTREAM_API_KEY",
                             "--upstream-key")
    generator = build_policy(upstream, upstream_model, upstream_secret, policy, device,
                             **timeouts)
    scorer = build_prm(prm, prm_kind, task.step_delimiter, device,
                       secret(prm_key, prm_key_file, "TTSCALE_PRM_API_KEY", "--prm-key"),
                       **timeouts)
    reviser = build_reviser(revision, upstream, upstream_model, upstream_secret, policy, fmt,
                            device)
    for backend in (generator, scorer, reviser):
        set_connect_timeout(backend, backend_connect_timeout)
    app = create_proxy_app(generator, scorer, task, cfg, reviser=reviser)
    _uvicorn(app, host, port, f"ttscale serve: model {served_model!r}, default strategy "
             f"{app.state.default_strategy} N={budget}")


def set_connect_timeout(backend: Any, seconds: float) -> None:
    """Set an HTTP backend's connect timeout (its read timeout was set when it was built)."""
    import httpx

    pool = getattr(backend, "pool", None)
    if pool is not None:
        pool.timeout = httpx.Timeout(pool.timeout.read, connect=seconds)


def build_policy(upstream: list[str] | None, model: str | None, key: str | None,
                 policy: str | None, device: str, **http: Any) -> Any:
    """The proxy's policy: HTTP replicas, or an in-process model behind a lock. ``http``:
    ``timeout_s``/``retries`` for the HTTP engine."""
    if upstream:
        if policy:
            raise ValueError("give either --upstream (a server) or --policy (in-process)")
        from ttscale.engines.openai import OpenAIGenerator

        return OpenAIGenerator(upstream, model, api_key=key, **http)
    from ttscale.engines.hf import HFGenerator
    from ttscale.serve.proxy import Serialized
    from ttscale.shipped import resolve_model

    return Serialized(HFGenerator.from_pretrained(resolve_model(policy, "policy-small"),
                                                  device=device))


def build_reviser(revision: str | None, upstream: list[str] | None, model: str | None,
                  key: str | None, policy: str | None, fmt: str, device: str) -> Any:
    """The proxy's revision model, as ``ttscale run`` chooses it: the one given, else the
    shipped testbed one when serving the testbed format with the in-process testbed policy,
    else None (the policy revises its own attempts). Loaded on first use."""
    if revision is None:
        if upstream or policy is not None or fmt != "testbed":
            return None
        revision = "testbed:revision"
    if upstream:
        from ttscale.engines.openai import OpenAIGenerator

        return OpenAIGenerator(upstream, revision, api_key=key)
    from ttscale.serve.proxy import Serialized
    from ttscale.shipped import resolve_model

    path = resolve_model(revision, "revision")

    def load() -> Any:
        from ttscale.engines.hf import HFGenerator

        return HFGenerator.from_pretrained(path, device=device)

    return Serialized(None, loader=load)


def build_prm(spec: str | None, kind: str, step_delimiter: str, device: str,
              key: str | None = None, **http: Any) -> Any:
    """The proxy's verifier: None, an HTTP pooling client (with its own ``key``), or an
    in-process PRM behind a lock."""
    if spec is not None and spec.lower() == "none":
        return None
    if spec is not None and spec.startswith(("http://", "https://")):
        from ttscale.verifiers.http_prm import HTTPPRM

        return HTTPPRM.for_kind(spec, kind, step_delimiter, api_key=key, **http)
    from ttscale.serve.proxy import Serialized
    from ttscale.shipped import resolve_model
    from ttscale.verifiers import load_verifier

    kwargs: dict[str, Any] = {"device": device}
    if kind != "qwen-prm":
        kwargs["step_delimiter"] = step_delimiter
    return Serialized(load_verifier(resolve_model(spec, "prm"), kind=kind, **kwargs))


def serve_prm_cmd(
    model: Annotated[str | None, typer.Option(
        "--model", help="PRM folder (default: testbed prm; testbed:NAME works).")] = None,
    kind: Annotated[str, typer.Option(
        "--kind", help="token-classification or qwen-prm.")] = "token-classification",
    step_tag: Annotated[str | None, typer.Option(
        "--step-tag", help="What clients write after each step (default: the PRM's step "
        "delimiter; <extra_0> for qwen-prm).")] = None,
    step_delimiter: Annotated[str | None, typer.Option(
        "--step-delimiter", help="token-classification: the delimiter the PRM reads after each "
        "step (default: recorded at training time).")] = None,
    served_model: Annotated[str, typer.Option("--served-model")] = "ttscale-prm",
    api_key: ServerKeyOpt = None,
    api_key_file: KeyFileOpt = None,
    no_auth: ServerNoAuthOpt = False,
    insecure_no_auth: InsecureOpt = False,
    host: Annotated[str, typer.Option("--host", help=HOST_HELP)] = "127.0.0.1",
    port: Annotated[int, PORT] = 8001,
    device: Annotated[str, typer.Option("--device")] = "cpu",
) -> None:
    """Serve a transformers PRM under vLLM's pooling API (POST /pooling)."""
    from ttscale.serve.common import server_keys
    from ttscale.serve.prm_server import PRMServerConfig, create_prm_app
    from ttscale.shipped import resolve_model
    from ttscale.verifiers import load_verifier

    if kind not in ("token-classification", "qwen-prm"):
        raise ValueError(f"--kind must be token-classification or qwen-prm, got {kind!r}")
    keys = server_keys("ttscale serve-prm", host, api_key, api_key_file, no_auth,
                       insecure_no_auth, required_on_loopback=False)
    kwargs: dict[str, Any] = {"device": device}
    if step_delimiter is not None:
        kwargs["step_delimiter"] = step_delimiter.encode().decode("unicode_escape")
    scorer = load_verifier(resolve_model(model, "prm"), kind=kind, **kwargs)
    tag = step_tag.encode().decode("unicode_escape") if step_tag else None
    app = create_prm_app(scorer, PRMServerConfig(model_name=served_model, kind=kind,
                                                 step_tag=tag, api_keys=keys))
    _uvicorn(app, host, port, f"ttscale serve-prm: {served_model!r} ({kind})")


def serve_policy_cmd(
    model: Annotated[str | None, typer.Option(
        "--model", help="Policy folder (default: testbed policy-small).")] = None,
    served_model: Annotated[str, typer.Option("--served-model")] = "ttscale-policy",
    emulate: Annotated[str, typer.Option(
        "--emulate", help="vllm (n, stop_reason) or llamacpp (no n, no stop_reason).")
    ] = "vllm",
    api_key: ServerKeyOpt = None,
    api_key_file: KeyFileOpt = None,
    no_auth: ServerNoAuthOpt = False,
    insecure_no_auth: InsecureOpt = False,
    host: Annotated[str, typer.Option("--host", help=HOST_HELP)] = "127.0.0.1",
    port: Annotated[int, PORT] = 8000,
    device: Annotated[str, typer.Option("--device")] = "cpu",
    threads: Annotated[int | None, typer.Option(
        "--threads", help="torch CPU threads (default: torch's choice).")] = None,
    ignore_eos: Annotated[bool, typer.Option(
        "--ignore-eos", help="Never stop at EOS (every completion runs to max_tokens or a "
        "stop string): for benchmarks that need equal work per request.")] = False,
) -> None:
    """Serve a transformers policy under the OpenAI completions API (one request at a time)."""
    from ttscale.serve.common import server_keys

    if emulate not in ("vllm", "llamacpp"):
        raise ValueError(f"--emulate must be vllm or llamacpp, got {emulate!r}")
    keys = server_keys("ttscale serve-policy", host, api_key, api_key_file, no_auth,
                       insecure_no_auth, required_on_loopback=False)

    import torch

    from ttscale.engines.hf import HFGenerator
    from ttscale.serve.policy_server import PolicyServerConfig, create_policy_app
    from ttscale.shipped import resolve_model

    if threads is not None:
        torch.set_num_threads(threads)
    extra: dict[str, Any] = {"eos_token_ids": []} if ignore_eos else {}
    gen = HFGenerator.from_pretrained(resolve_model(model, "policy-small"), device=device,
                                      **extra)
    app = create_policy_app(gen, PolicyServerConfig(model_name=served_model, emulate=emulate,
                                                    api_keys=keys))
    _uvicorn(app, host, port, f"ttscale serve-policy: {served_model!r}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("serve-prm")(serve_prm_cmd)
    app.command("serve-policy")(serve_policy_cmd)
