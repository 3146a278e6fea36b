"""`ttscale label` and `ttscale train ...` through the CLI entry point, on tiny real models."""

from __future__ import annotations

import json

import pytest
from cli_helpers import assert_one_line_error, run_cli

from ttscale.train.cli import unescape
from ttscale.verifiers.hf_prm import TokenClassificationPRM


@pytest.mark.parametrize("verb,flags", [
    (["train", "prm"], ["--init", "--labels", "--out", "--label-kind", "--delimiter"]),
    (["train", "policy"], ["--init", "--data", "--out"]),
    (["train", "revision"], ["--init", "--policy", "--out"]),
    (["label"], ["--policy", "--out", "--samples", "--rollouts", "--limit"]),
])
def test_help(capsys, verb, flags):
    code, out, err = run_cli(capsys, [*verb, "--help"])
    assert code == 0, err
    for flag in flags:
        assert flag in out


def test_train_prm_missing_init_dir(capsys, tmp_path):
    labels = tmp_path / "labels.jsonl"
    labels.write_text("{}\n")
    missing = tmp_path / "no-model"
    code, _, err = run_cli(capsys, ["train", "prm", "--init", str(missing), "--labels", str(labels),
                                    "--out", str(tmp_path / "out")])
    assert_one_line_error(code, err, "init", str(missing), "config.json")


def test_train_prm_missing_labels_file(capsys, tmp_path, tiny_policy_dir):
    missing = tmp_path / "nope.jsonl"
    code, _, err = run_cli(capsys, ["train", "prm", "--init", str(tiny_policy_dir), "--labels",
                                    str(missing), "--out", str(tmp_path / "out")])
    assert_one_line_error(code, err, "labels file", str(missing))
    assert not (tmp_path / "out").exists()


def test_train_prm_bad_label_line(capsys, tmp_path, tiny_policy_dir):
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"problem_id": "p", "solutions": []}\n{"problem_id": "q"}\n')
    code, _, err = run_cli(capsys, ["train", "prm", "--init", str(tiny_policy_dir), "--labels",
                                    str(labels), "--out", str(tmp_path / "out")])
    assert_one_line_error(code, err, f"{labels}:2")


def test_label_missing_policy(capsys, tmp_path):
    code, _, err = run_cli(capsys, ["label", "--policy", str(tmp_path / "none"), "--out",
                                    str(tmp_path / "out")])
    assert_one_line_error(code, err, "policy", "config.json")


def test_label_end_to_end_resumes_then_trains_a_prm(capsys, tmp_path, tiny_policy_dir):
    out = tmp_path / "labels"
    argv = ["label", "--policy", str(tiny_policy_dir), "--out", str(out), "--limit", "2",
            "--samples", "2", "--rollouts", "2", "--max-tokens", "24", "--seed", "3"]
    code, stdout, err = run_cli(capsys, argv)
    assert code == 0, err
    assert "labelled 2 new questions" in stdout
    path = out / "labels.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert len({r["problem_id"] for r in records}) == 2
    for rec in records:
        assert rec["prompt"].startswith("Q:") and rec["prompt"].endswith("\n")
        assert len(rec["solutions"]) == 2
        for sol in rec["solutions"]:
            n = len(sol["steps"])
            assert len(sol["soft"]) == len(sol["hard"]) == len(sol["exact"]) == n
            assert all(x in (0.0, 0.5, 1.0) for x in sol["soft"])  # 2 rollouts a prefix
    before = path.read_bytes()

    code, stdout, err = run_cli(capsys, argv)  # rerun: everything is done already
    assert code == 0, err
    assert "labelled 0 new questions" in stdout
    assert path.read_bytes() == before

    # the file trains a PRM through the CLI
    n_examples = len({(r["prompt"], tuple(s["steps"])) for r in records
                      for s in r["solutions"] if s["steps"]})
    assert n_examples > 0  # random text of 24 characters is at least one step
    prm = tmp_path / "prm"
    code, stdout, err = run_cli(capsys, ["train", "prm", "--init", str(tiny_policy_dir),
                                         "--labels", str(path), "--out", str(prm),
                                         "--epochs", "1", "--batch-size", "4"])
    assert code == 0, err
    assert f"'examples': {n_examples}," in stdout
    scorer = TokenClassificationPRM.from_pretrained(prm)
    assert len(scorer.score(["Q:10a+1\n"], [["a:10+1=11", "A:11"]]).scores[0]) == 2


@pytest.mark.parametrize("raw,expected", [
    ("\\n", "\n"), ("\\n\\n", "\n\n"), ("\\t|", "\t|"), ("ки", "ки"), ("é\\n", "é\n"),
    ("a\\\\n", "a\\n"),
])
def test_unescape_keeps_non_ascii(raw, expected):
    assert unescape(raw) == expected


def test_train_prm_records_the_unescaped_delimiter(capsys, tmp_path, tiny_policy_dir):
    labels = tmp_path / "labels.jsonl"
    rec = {"problem_id": "p", "prompt": "Q:10a+1\n", "solutions": [
        {"steps": ["a:10+1=11", "A:11"], "soft": [1.0, 1.0]},
        {"steps": ["a:10+1=12", "A:12"], "soft": [0.0, 0.0]}]}
    labels.write_text(json.dumps(rec) + "\n")
    out = tmp_path / "prm"
    code, _, err = run_cli(capsys, ["train", "prm", "--init", str(tiny_policy_dir), "--labels",
                                    str(labels), "--out", str(out), "--epochs", "1",
                                    "--delimiter", "ки\\n"])
    assert code == 0, err
    meta = json.loads((out / "config.json").read_text(encoding="utf-8"))["ttscale"]
    assert meta["step_delimiter"] == "ки\n"
    assert TokenClassificationPRM.from_pretrained(out).step_delimiter == "ки\n"


def test_train_policy_from_a_float16_checkpoint_trains_in_float32(capsys, tmp_path,
                                                                  tiny_policy_dir):
    """The shipped models are stored in float16; fine-tuning must not run AdamW on float16
    weights (it wrecked the first testbed revision model)."""
    import torch
    from transformers import AutoModelForCausalLM

    half = tmp_path / "half"
    AutoModelForCausalLM.from_pretrained(tiny_policy_dir).to(torch.float16).save_pretrained(half)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (half / name).write_bytes((tiny_policy_dir / name).read_bytes())
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": "Q:12a+3\n", "completion": "a:12+3=15\nA:15\n"})
                            + "\n" for _ in range(8)))
    code, _, err = run_cli(capsys, ["train", "policy", "--init", str(half), "--data", str(data),
                                    "--out", str(tmp_path / "out"), "--batch-size", "4"])
    assert code == 0, err
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert trained.dtype == torch.float32
    assert all(torch.isfinite(p).all() for p in trained.parameters())
