"""Helpers of the serving benches: ttscale servers as separate processes on loopback, and a
policy checkpoint to serve.

Benches run servers as processes (not threads) so that replicas really compute in parallel and
the client's own Python does not compete with them for the GIL.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ttscale.serve.common import free_port
from ttscale.serve.launch import server_process

MODELS = Path(__file__).resolve().parents[1] / "src/ttscale/testbed/models"
CLI = "import sys; from ttscale.cli import main; sys.exit(main())"


def policy_dir(path: str | None, hidden: int = 128, layers: int = 4,
               force_random: bool = False) -> str:
    """``path``, else the shipped testbed policy-small, else a random-init Llama of the given
    size with the testbed tokenizer, saved to a temp dir (its text is noise; speed is real)."""
    if path:
        return path
    shipped = MODELS / "policy-small"
    if (shipped / "config.json").is_file() and not force_random:
        return str(shipped)
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ttscale.testbed.tokenizer import build_tokenizer

    tok = build_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    out = Path(tempfile.mkdtemp(prefix="ttscale-bench-policy-"))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@contextmanager
def process(args: list[str], health: str, timeout_s: float = 120.0) -> Iterator[None]:
    """Run ``ttscale ARGS`` until the block ends; wait until ``health`` answers 200."""
    with server_process([sys.executable, "-c", CLI, *args], health, f"ttscale {args[0]}",
                        timeout_s=timeout_s):
        yield


@contextmanager
def policy_servers(model: str, replicas: int, threads: int = 1,
                   ignore_eos: bool = True) -> Iterator[list[str]]:
    """``replicas`` policy servers on free ports; yields their base URLs (``.../v1``)."""
    with ExitStack() as stack:
        urls = []
        for _ in range(replicas):
            port = free_port()
            args = ["serve-policy", "--model", model, "--port", str(port), "--threads",
                    str(threads)] + (["--ignore-eos"] if ignore_eos else [])
            stack.enter_context(process(args, f"http://127.0.0.1:{port}/health"))
            urls.append(f"http://127.0.0.1:{port}/v1")
        yield urls
