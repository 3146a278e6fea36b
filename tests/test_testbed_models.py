"""Integration tests on the shipped testbed models (the embedded default).

These check properties the rest of ttscale relies on, on small samples with wide margins; the
full numbers come from `ttscale testbed eval` (docs/testbed.md).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ttscale.shipped import models_dir

MODELS = models_dir()
NAMES = ("policy-small", "policy-large", "prm", "revision")
pytestmark = pytest.mark.skipif(
    not all((MODELS / n / "config.json").exists() for n in NAMES),
    reason="testbed models not built (run `ttscale testbed train`)")


def test_shipped_models_fit_the_size_budget_and_have_cards():
    total = sum(f.stat().st_size for f in MODELS.rglob("*") if f.is_file())
    assert total <= 30e6
    for name in NAMES:
        assert (MODELS / name / "README.md").read_text().startswith(f"# {name}")
        assert (MODELS / name / "tokenizer.json").exists()


def test_large_policy_has_about_14x_the_parameters():
    from ttscale.testbed.cards import _params

    ratio = _params(MODELS / "policy-large") / _params(MODELS / "policy-small")
    assert 12 <= ratio <= 16


@pytest.fixture(scope="module")
def pool():
    import torch

    from ttscale.engines.hf import HFGenerator
    from ttscale.tasks.testbed import TestbedTask
    from ttscale.testbed.evaluate import sample_pool, score_samples
    from ttscale.verifiers import load_verifier

    torch.set_num_threads(1)
    task = TestbedTask("test", n=40, seed=11)
    samples = sample_pool(task, HFGenerator.from_pretrained(MODELS / "policy-small"), 16, seed=11)
    return score_samples(samples, load_verifier(MODELS / "prm"))


def test_small_policy_is_neither_hopeless_nor_solved(pool):
    accuracy = sum(s.correct for s in pool) / len(pool)
    assert 0.1 < accuracy < 0.8
    oracle = {s.problem_id for s in pool if s.correct}
    assert len(oracle) / len({s.problem_id for s in pool}) > accuracy + 0.15


def test_prm_ranks_a_questions_own_samples(pool):
    from ttscale.analysis.verifier_quality import within_question_final_auc

    auc, n = within_question_final_auc(pool)
    assert n >= 10
    assert auc > 0.7


def test_cli_run_beam_on_the_shipped_models(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "ttscale", "run", "--task", "testbed", "--strategy", "beam",
         "--budget", "4", "--limit", "4", "--out", str(tmp_path), "--json", "--no-progress"],
        capture_output=True, text=True, timeout=600, env={"TTSCALE_THREADS": "1",
                                                          **__import__("os").environ})
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["n_problems"] == 4 and summary["strategy"] == "beam"
    assert summary["cost"]["prm_tokens"] > 0 and summary["cost"]["generations"] == 16
