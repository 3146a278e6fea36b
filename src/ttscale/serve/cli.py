"""CLI verbs of the serving layer: ``ttscale serve`` (the OpenAI-compatible search proxy),
``ttscale serve-prm`` (a PRM under vLLM's pooling API) and ``ttscale serve-policy`` (a
transformers policy under the completions API, for tests, benches and CPU-only setups).

Import-light like the rest of the CLI: FastAPI, uvicorn, torch and the models are imported inside
the commands.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

HOST_HELP = "Interface to bind (default loopback only; 0.0.0.0 exposes it to the network)."


def _keys(api_keys: list[str] | None, no_auth: bool, what: str) -> list[str] | None:
    keys = [k for k in (api_keys or []) if k]
    env = os.environ.get("TTSCALE_API_KEY")
    if env:
        keys.append(env)
    if no_auth:
        if keys:
            raise ValueError("--no-auth and an API key were both given; choose one")
        return None
    if not keys:
        raise ValueError(f"{what} needs an API key: give --api-key KEY or set TTSCALE_API_KEY "
                         "(or --no-auth on a trusted machine)")
    return keys


def _uvicorn(app: Any, host: str, port: int, banner: str) -> None:
    import uvicorn

    sys.stderr.write(f"{banner} on http://{host}:{port}\n")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


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
        "--upstream-key", help="API key for the upstream servers.")] = None,
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
        "--api-key", help="Accepted client key, repeatable (also TTSCALE_API_KEY).")] = None,
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="Serve without API keys (trusted loopback only).")] = False,
    host: Annotated[str, typer.Option("--host", help=HOST_HELP)] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8080,
    temperature: Annotated[float, typer.Option("--temperature")] = 0.8,
    max_tokens_cap: Annotated[int, typer.Option(
        "--max-tokens-cap", help="Largest max_tokens a request may ask for.")] = 4096,
    max_prompt_chars: Annotated[int, typer.Option("--max-prompt-chars")] = 16000,
    max_request_bytes: Annotated[int, typer.Option("--max-request-bytes")] = 256 * 1024,
    max_concurrent: Annotated[int, typer.Option(
        "--max-concurrent", help="Searches run at once; more requests wait.")] = 8,
    device: Annotated[str, typer.Option("--device", help="For in-process models.")] = "cpu",
) -> None:
    """Serve an OpenAI-compatible API that answers with test-time search."""
    from ttscale.serve.proxy import ProxyConfig, create_proxy_app
    from ttscale.serve.tasks import ProxyTask

    keys = _keys(api_key, no_auth, "ttscale serve")
    task = ProxyTask(fmt, prompt_template)
    cfg = ProxyConfig(served_model=served_model, default_strategy=strategy,
                      default_budget=budget, max_budget=max_budget, options=_options(option),
                      policy_table=policy_table, api_keys=keys, temperature=temperature,
                      max_tokens_cap=max_tokens_cap, max_prompt_chars=max_prompt_chars,
                      max_request_bytes=max_request_bytes, max_concurrent=max_concurrent)
    generator = build_policy(upstream, upstream_model, upstream_key, policy, device)
    scorer = build_prm(prm, prm_kind, task.step_delimiter, device)
    reviser = build_reviser(revision, upstream, upstream_model, upstream_key, policy, fmt,
                            device)
    app = create_proxy_app(generator, scorer, task, cfg, reviser=reviser)
    _uvicorn(app, host, port, f"ttscale serve: model {served_model!r}, default strategy "
             f"{app.state.default_strategy} N={budget}")


def build_policy(upstream: list[str] | None, model: str | None, key: str | None,
                 policy: str | None, device: str) -> Any:
    """The proxy's policy: HTTP replicas, or an in-process model behind a lock."""
    if upstream:
        if policy:
            raise ValueError("give either --upstream (a server) or --policy (in-process)")
        from ttscale.engines.openai import OpenAIGenerator

        return OpenAIGenerator(upstream, model, api_key=key)
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


def build_prm(spec: str | None, kind: str, step_delimiter: str, device: str) -> Any:
    """The proxy's verifier: None, an HTTP pooling client, or an in-process PRM behind a lock."""
    if spec is not None and spec.lower() == "none":
        return None
    if spec is not None and spec.startswith(("http://", "https://")):
        from ttscale.verifiers.http_prm import HTTPPRM

        return HTTPPRM.for_kind(spec, kind, step_delimiter)
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
    api_key: Annotated[list[str] | None, typer.Option(
        "--api-key", help="Require this key (repeatable); default: no key.")] = None,
    host: Annotated[str, typer.Option("--host", help=HOST_HELP)] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8001,
    device: Annotated[str, typer.Option("--device")] = "cpu",
) -> None:
    """Serve a transformers PRM under vLLM's pooling API (POST /pooling)."""
    from ttscale.serve.prm_server import PRMServerConfig, create_prm_app
    from ttscale.shipped import resolve_model
    from ttscale.verifiers import load_verifier

    if kind not in ("token-classification", "qwen-prm"):
        raise ValueError(f"--kind must be token-classification or qwen-prm, got {kind!r}")
    keys = [k for k in api_key or [] if k] or None  # a loopback backend: keys optional
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
    api_key: Annotated[list[str] | None, typer.Option(
        "--api-key", help="Require this key (repeatable); default: no key.")] = None,
    host: Annotated[str, typer.Option("--host", help=HOST_HELP)] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    device: Annotated[str, typer.Option("--device")] = "cpu",
    threads: Annotated[int | None, typer.Option(
        "--threads", help="torch CPU threads (default: torch's choice).")] = None,
    ignore_eos: Annotated[bool, typer.Option(
        "--ignore-eos", help="Never stop at EOS (every completion runs to max_tokens or a "
        "stop string): for benchmarks that need equal work per request.")] = False,
) -> None:
    """Serve a transformers policy under the OpenAI completions API (one request at a time)."""
    import torch

    from ttscale.engines.hf import HFGenerator
    from ttscale.serve.policy_server import PolicyServerConfig, create_policy_app
    from ttscale.shipped import resolve_model

    if emulate not in ("vllm", "llamacpp"):
        raise ValueError(f"--emulate must be vllm or llamacpp, got {emulate!r}")
    if threads is not None:
        torch.set_num_threads(threads)
    keys = [k for k in api_key or [] if k] or None  # a loopback backend: keys optional
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
