"""What an OpenAI-compatible server is: its model, flavour, context length and limits.

Why a module of its own: the policy engine and the PRM client both ask ``GET /v1/models`` before
their first request, and neither should import the other's backend for it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ttscale.net.pool import ClientError, ReplicaPool, ServerError

__all__ = ["FLAVOURS", "ServerInfo", "discover_model", "discover_server", "guess_parameters",
           "parameters_of", "warn_unknown_size"]

#: server kinds whose wire format differs; "openai" is any other OpenAI-compatible server
FLAVOURS = ("openai", "vllm", "sglang", "llama-server", "llama-cpp-python")
#: ``owned_by`` in ``/v1/models`` -> flavour
_OWNERS = {"vllm": "vllm", "sglang": "sglang", "llamacpp": "llama-server",
           "me": "llama-cpp-python"}
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
class ServerInfo:
    """What ``GET /v1/models`` (and llama-server's ``/props``) told about the server."""

    model: str
    num_parameters: int | None = None
    flavour: str = "openai"
    context_length: int | None = None
    #: most choices one request may ask for (llama-server's slots); None: no known limit
    max_n: int | None = None


async def discover_server(pool: ReplicaPool, model: str | None) -> ServerInfo:
    """Ask ``GET /v1/models`` (and llama-server's ``/props``) what the server is."""
    # root-relative, so a base URL given with or without its trailing /v1 both work
    data = await pool.request_json("GET", "/v1/models", root=True)
    raw = data.get("data") if isinstance(data, dict) else None
    listing = [m for m in raw or [] if isinstance(m, dict)]
    if model is None:
        if not listing or "id" not in listing[0]:
            raise ServerError(f"{pool.urls[0]}/models lists no model; pass the model name")
        model = str(listing[0]["id"])
    entry = next((m for m in listing if m.get("id") == model), listing[0] if listing else {})
    info = ServerInfo(model, flavour=_OWNERS.get(str(entry.get("owned_by", "")), "openai"))
    extra = entry.get("ttscale")
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    # ttscale's own servers, and llama-server's model metadata
    for n in (extra.get("num_parameters") if isinstance(extra, dict) else None,
              meta.get("n_params")):
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            info.num_parameters = n
            break
    for ctx in (entry.get("max_model_len"), meta.get("n_ctx"), entry.get("context_length")):
        if isinstance(ctx, int) and not isinstance(ctx, bool) and ctx > 0:
            info.context_length = ctx
            break
    if info.flavour == "llama-server":
        try:
            props = await pool.request_json("GET", "/props", root=True)
        except (ClientError, ServerError):
            props = {}
        slots = props.get("total_slots") if isinstance(props, dict) else None
        if isinstance(slots, int) and slots >= 1:
            info.max_n = slots
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        if info.context_length is None and isinstance(n_ctx, int) and n_ctx > 0:
            info.context_length = n_ctx
    return info


async def discover_model(pool: ReplicaPool, model: str | None, num_parameters: int | None,
                         override: str = "policy_params") -> tuple[str, int]:
    """The served model name and its parameter count (``ttscale.num_parameters`` from ttscale's
    own servers, llama-server's ``meta.n_params``, else a guess from the name,
    :func:`guess_parameters`); a size found nowhere is 0 and warned about once, naming the
    ``override`` setting that fixes it."""
    if model is not None and num_parameters is not None:
        return model, num_parameters
    info = await discover_server(pool, model)
    if num_parameters is None:
        num_parameters = parameters_of(info, override)
    return info.model, num_parameters


def parameters_of(info: ServerInfo, override: str = "policy_params") -> int:
    """The served model's parameter count for FLOPs; 0 (with a warning) when unknown."""
    n = info.num_parameters if info.num_parameters is not None else guess_parameters(info.model)
    if n == 0:
        warn_unknown_size(info.model, override)
    return n


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
