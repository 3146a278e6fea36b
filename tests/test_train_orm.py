"""Outcome reward models (``ttscale.train.orm``): outcome records from the gold answer, the
revision ORM's records under the revision prompt, training through train/prm.py, and the
certainty PRM's solution start behind a multi-line (revision) prompt."""

from __future__ import annotations

import json

import pytest
import torch
from fakes import FakeGenerator, FakeReviser
from transformers import LlamaForCausalLM

from ttscale.tasks import testbed
from ttscale.testbed.tokenizer import build_tokenizer
from ttscale.train.common import llama_config
from ttscale.train.orm import outcome_records, train_orm
from ttscale.train.revision import is_right
from ttscale.verifiers.certainty_prm import CertaintyPRM
from ttscale.verifiers.hf_prm import TokenClassificationPRM

TASK = testbed.TestbedTask("train", n=6, seed=0, min_ops=3, max_ops=5)


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory):
    torch.set_num_threads(1)
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(tok, hidden=32, layers=2, heads=4, ffn=64))
    path = tmp_path_factory.mktemp("tiny_lm")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_outcome_records_label_every_step_with_the_graded_outcome():
    records = outcome_records(TASK, FakeGenerator(accuracy=0.7), samples=6, seed=0)
    by_id = {p.id: p for p in TASK.problems()}
    assert [r["problem_id"] for r in records] == list(by_id)
    rights = 0
    for rec in records:
        problem = by_id[rec["problem_id"]]
        assert rec["prompt"] == problem.prompt and len(rec["solutions"]) == 6
        for sol in rec["solutions"]:
            text = "".join(s + "\n" for s in sol["steps"])
            assert sol["correct"] == is_right(TASK, problem, text)
            assert sol["outcome"] == [float(sol["correct"])] * len(sol["steps"])
            rights += sol["correct"]
    assert 0 < rights < 36


def test_revision_orm_records_are_attempts_under_their_revision_prompts():
    rev = FakeReviser(accuracy=0.6)
    records = outcome_records(TASK, FakeGenerator(), samples=8, seed=0, reviser=rev,
                              chain_length=4, window=2)
    given = {p for prompts, _ in rev.calls for p in prompts}
    assert {r["prompt"] for r in records} <= given
    # per question: 2 chains x 4 attempts; attempt 1 under the bare problem prompt
    for problem in TASK.problems():
        mine = [r for r in records if r["problem_id"] == problem.id]
        assert sum(len(r["solutions"]) for r in mine) == 8
        assert any(r["prompt"] == problem.prompt for r in mine)
        assert all(r["prompt"].count("P:") <= 2 for r in mine), "window of 2"
    with pytest.raises(ValueError, match="multiple of chain_length"):
        outcome_records(TASK, FakeGenerator(), samples=6, reviser=rev, chain_length=4)


def test_train_orm_saves_a_scoring_verifier(tmp_path, tiny_lm_dir):
    records = outcome_records(TASK, FakeGenerator(accuracy=0.7), samples=4, seed=0)
    out = tmp_path / "orm"
    res = train_orm(tiny_lm_dir, records, out, epochs=1, batch_size=8)
    assert res["solutions"] == 24 and 0 < res["right_share"] < 1
    assert (out / "orm_labels.jsonl").is_file()
    meta = json.loads((out / "config.json").read_text())["ttscale"]
    assert meta["kind"] == "orm" and meta["label_kind"] == "outcome"
    orm = TokenClassificationPRM.from_pretrained(out)
    p = TASK.problems()[0]
    scores = orm.score([p.prompt], [["a:1+1=02", "A:02"]]).scores
    assert len(scores[0]) == 2 and all(0 < s < 1 for s in scores[0])
    # a trained certainty PRM/ORM is a valid init: its body is reused, its head restarted
    again = train_orm(out, records, tmp_path / "orm2", epochs=1, batch_size=8,
                      prompt_marker="Q")
    assert again["examples"] > 0
    cfg = json.loads((tmp_path / "orm2" / "config.json").read_text())
    assert cfg["prompt_marker_token_id"] == build_tokenizer().convert_tokens_to_ids("Q")


def test_certainty_features_start_after_the_question_line_with_a_marker(tiny_lm_dir):
    tok = build_tokenizer()
    model = CertaintyPRM.from_language_model(str(tiny_lm_dir),
                                             tok.convert_tokens_to_ids("\n"))
    rev = "P:a:1+1=03;A:03\nQ:1a+1\n"
    ids = torch.tensor([tok(rev + "a:1+1=02\n", add_special_tokens=False)["input_ids"]])
    logits = model.lm(input_ids=ids).logits
    first = model.certainty_features(ids, logits, None)[0, :, 1]
    model.config.prompt_marker_token_id = tok.convert_tokens_to_ids("Q")
    marked = model.certainty_features(ids, logits, None)[0, :, 1]
    start = len(rev)
    # without the marker the earlier attempt's tokens count as solution tokens
    assert bool((first[:start] != 0).any())
    assert bool((marked[:start] == 0).all()) and bool((marked[start:] != 0).all())


def test_revision_verifier_ablation_scores_one_set_of_chains_with_every_verifier(tmp_path):
    from fakes import FakeScorer

    from ttscale.testbed.ablation import render_revision_ablation, revision_verifier_ablation
    from ttscale.verifiers.base import StepScores

    class PromptScorer:
        """Scores 0.9 when the prompt shows earlier attempts, else 0.1 (to see which prompt)."""

        num_parameters = 1

        def __init__(self):
            self.prompts = []

        def score(self, prompts, solutions):
            self.prompts += list(prompts)
            return StepScores([[0.9 if p.startswith("P:") else 0.1] * len(s)
                               for p, s in zip(prompts, solutions, strict=True)], 1)

    rev_scorer = PromptScorer()
    rep = revision_verifier_ablation(
        tmp_path, tmp_path, None, n_questions=6, budget=8, chain_length=4, seed=0,
        generator=FakeGenerator(), reviser=FakeReviser(accuracy=0.7, gain=0.05),
        verifiers={"prm": (FakeScorer(), "problem"), "rev": (rev_scorer, "revision")})
    acc = rep["accuracy"]
    assert set(acc) == {"majority (flat, paper)", "oracle (any attempt right)",
                        "prm: hierarchical (paper)", "prm: flat", "rev: hierarchical (paper)",
                        "rev: flat"}
    assert all(0 <= v <= acc["oracle (any attempt right)"] for v in acc.values())
    assert any(p.startswith("P:") for p in rev_scorer.prompts)
    assert "rev: hierarchical (paper)" in render_revision_ablation(rep)
