"""A client nobody here wrote: EleutherAI's lm-evaluation-harness scores tasks through
``ttscale serve`` with its own CLI (``lm_eval --model local-completions``), offline.

The proxy runs the shipped testbed models in-process (real weights); lm-eval reads the local task
YAMLs and JSONL files in ``recipes/lm_eval`` with the Hub and datasets forced offline, so a run
that tried to download anything fails. lm-eval sends ``temperature: 0`` and a fixed seed: the
answers must still come from ``budget`` distinct samples (the proxy's own temperature), which the
usage the proxy reports shows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("fastapi")

from ttscale.serve.cli import build_policy, build_prm  # noqa: E402
from ttscale.serve.common import ServerThread  # noqa: E402
from ttscale.serve.proxy import ProxyConfig, create_proxy_app  # noqa: E402
from ttscale.serve.tasks import ProxyTask  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-lm-eval"


@pytest.fixture(scope="module")
def proxy():
    task = ProxyTask("testbed")
    app = create_proxy_app(build_policy(None, None, None, None, "cpu"),
                           build_prm(None, "token-classification", task.step_delimiter, "cpu"),
                           task, ProxyConfig(api_keys=[KEY], max_concurrent=2))
    with ServerThread(app) as server:
        yield server, app


def lm_eval(server: ServerThread, model: str, tasks: str, limit: int, out: Path,
            *extra: str) -> dict:
    exe = shutil.which("lm_eval") or shutil.which("lm-eval")
    cmd = [exe] if exe else [sys.executable, "-m", "lm_eval"]
    args = (f"model={model},base_url={server.url}/v1/completions,tokenizer_backend=None,"
            "tokenized_requests=False,num_concurrent=1,max_retries=1")
    env = {**os.environ, "OPENAI_API_KEY": KEY, "HF_DATASETS_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(out / "hf"),
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [*cmd, "--model", "local-completions", "--model_args", args, "--tasks", tasks,
         "--include_path", "recipes/lm_eval", "--limit", str(limit), "--output_path",
         str(out / "results"), "--log_samples", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted((out / "results").rglob("results_*.json"))
    assert files, proc.stdout[-2000:]
    print(proc.stdout[-1500:])  # lm-eval's own table, for the record
    return json.loads(files[-1].read_text())


def test_lm_eval_scores_testbed_and_gsm8k_shaped_tasks_through_the_proxy(proxy, tmp_path):
    """One lm-eval run (its start-up costs most of the time) over both local tasks. The testbed
    policy's context is 512 tokens, so GSM8K questions get a short answer budget here."""
    server, app = proxy
    before = dict(app.state.stats)
    res = lm_eval(server, "ttscale@majority:4", "ttscale_testbed,ttscale_gsm8k", 2, tmp_path,
                  "--gen_kwargs", "max_gen_toks=64")
    assert 0.0 <= res["results"]["ttscale_testbed"]["exact_match,answer"] <= 1.0
    assert "exact_match,flexible-extract" in res["results"]["ttscale_gsm8k"]
    stats = app.state.stats
    assert stats["ok"] - before["ok"] == 4 and stats["errors"] == before["errors"]
    samples = [json.loads(line) for p in (tmp_path / "results").rglob("samples_*.jsonl")
               for line in p.read_text().splitlines()]
    assert len(samples) == 4 and all(isinstance(s["resps"][0][0], str) for s in samples)
