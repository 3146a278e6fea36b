"""PRM training (``ttscale.train.prm``) on a tiny random Llama and a hand-made label file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hf_tiny import tiny_token_classifier
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

from ttscale.testbed.tokenizer import build_tokenizer
from ttscale.train.common import llama_config
from ttscale.train.prm import (
    PRMTrainConfig,
    build_examples,
    load_label_records,
    train_prm,
)
from ttscale.verifiers.certainty_prm import CertaintyPRM
from ttscale.verifiers.hf_prm import TokenClassificationPRM

P0, P1 = "Q:10a+1b+2\n", "Q:20a*3\n"
GOLD0 = ["a:10+1=11", "b:11+2=13", "A:13"]
WRONG0 = ["a:10+1=11", "b:11+2=14", "A:14"]
GOLD1 = ["a:20*3=60", "A:60"]
WRONG1 = ["a:20*3=61", "A:61"]


def _sol(steps, soft, exact):
    return {"steps": steps, "soft": soft, "hard": [float(s > 0) for s in soft],
            "exact": exact, "correct": bool(exact[-1]) if exact else False}


RECORDS = [
    {"problem_id": "p0", "prompt": P0, "answer": "13", "difficulty": 2, "solutions": [
        _sol(GOLD0, [1.0, 0.75, 1.0], [1.0, 1.0, 1.0]),
        _sol(WRONG0, [0.75, 0.0, 0.0], [1.0, 0.0, 0.0]),
        _sol(GOLD0, [1.0, 0.75, 1.0], [1.0, 1.0, 1.0]),  # a duplicate sample
        _sol([], [], []),  # an empty sample
    ]},
    {"problem_id": "p1", "prompt": P1, "answer": "60", "difficulty": 1, "solutions": [
        _sol(GOLD1, [0.5, 1.0], [1.0, 1.0]),
        _sol(WRONG1, [0.0, 0.0], [0.0, 0.0]),
    ]},
]
N_DISTINCT = 4


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory) -> Path:
    """A random-init LlamaForCausalLM with the shipped models' config builder (tied embeddings)
    and the testbed tokenizer."""
    torch.set_num_threads(1)
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(tok, hidden=32, layers=2, heads=4, ffn=64))
    path = tmp_path_factory.mktemp("tiny_lm")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def labels_file(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("labels") / "labels.jsonl", RECORDS)


@pytest.fixture(scope="module")
def encoder() -> TokenClassificationPRM:
    return TokenClassificationPRM(*tiny_token_classifier())


# ---- examples -------------------------------------------------------------------------------

@pytest.mark.parametrize("delimiter", ["\n", "\n\n"])
@pytest.mark.parametrize("kind", ["soft", "hard", "exact"])
def test_label_positions_are_exactly_the_step_end_tokens(encoder, kind, delimiter):
    enc = TokenClassificationPRM(encoder.model, encoder.tokenizer, delimiter)
    tok = enc.tokenizer
    nl = tok.convert_tokens_to_ids("\n")
    examples = build_examples(RECORDS, enc, kind, dedupe=False)
    sols = [(r["prompt"], s) for r in RECORDS for s in r["solutions"] if s["steps"]]
    assert len(examples) == len(sols)
    for ex, (prompt, sol) in zip(examples, sols, strict=True):
        ids, pos = enc.encode(prompt, sol["steps"])
        assert ex.input_ids == ids
        labelled = [i for i, y in enumerate(ex.labels) if y != -100]
        assert labelled == pos
        assert [ex.labels[i] for i in labelled] == sol[kind]
        # independently: each labelled token is the newline that closes step k's delimiter
        assert ids[0] == tok.bos_token_id
        for k, p in enumerate(labelled):
            assert ids[p] == nl
            text = prompt + "".join(s + delimiter for s in sol["steps"][: k + 1])
            assert tok.decode(ids[1: p + 1]) == text


def test_examples_dedupe_and_skip_empty(encoder):
    assert len(build_examples(RECORDS, encoder, "soft")) == N_DISTINCT
    assert len(build_examples(RECORDS, encoder, "soft", dedupe=False)) == N_DISTINCT + 1
    # the same steps under a different prompt are a different example
    other = [dict(RECORDS[0], prompt="Q:11a+1b+2\n"), RECORDS[0]]
    assert len(build_examples(other, encoder, "soft")) == 4


def test_bad_label_kind_and_missing_labels(encoder):
    with pytest.raises(ValueError, match="unknown label kind 'bogus'"):
        build_examples(RECORDS, encoder, "bogus")
    no_exact = [{**RECORDS[1], "solutions": [{k: v for k, v in s.items() if k != "exact"}
                                             for s in RECORDS[1]["solutions"]]}]
    with pytest.raises(ValueError, match="problem p1: no 'exact' labels"):
        build_examples(no_exact, encoder, "exact")


# ---- the label file -------------------------------------------------------------------------

def test_load_label_records(labels_file):
    assert load_label_records(labels_file) == RECORDS


@pytest.mark.parametrize("bad_line,match", [
    ("{not json", "not a label record"),
    ('{"problem_id": "x"}', "solutions"),
    ('[1, 2]', "solutions"),
    ('{"problem_id": "x", "solutions": [{"soft": [1.0]}]}', "steps"),
    ('{"problem_id": "x", "solutions": [{"steps": ["A:1"], "soft": [1.0, 0.5]}]}',
     "one label per step"),
])
def test_bad_file_line_names_the_line(tmp_path, bad_line, match):
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n\n" + bad_line + "\n")
    with pytest.raises(ValueError, match=rf"labels\.jsonl:3: .*{match}"):
        load_label_records(path)


def test_empty_label_file(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text("\n")
    with pytest.raises(ValueError, match="no label records"):
        load_label_records(path)


# ---- training -------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,lr", [("token-classification", 1e-3), ("certainty", 1e-2)])
def test_train_prm_saves_a_loadable_scoring_prm(tmp_path, tiny_lm_dir, labels_file, arch, lr):
    out = tmp_path / "prm"
    cfg = PRMTrainConfig(label_kind="soft", epochs=2, batch_size=2, learning_rate=lr,
                         arch=arch)
    res = train_prm(tiny_lm_dir, labels_file, out, cfg, log_every=1)
    assert res["examples"] == N_DISTINCT
    assert res["steps"] == 4  # 2 epochs of 2 batches
    assert torch.isfinite(torch.tensor(res["train_loss"]))

    meta = json.loads((out / "config.json").read_text())["ttscale"]
    assert meta == {"kind": "prm", "arch": arch, "label_kind": "soft", "step_delimiter": "\n",
                    "init": str(tiny_lm_dir)}
    prm = TokenClassificationPRM.from_pretrained(out)
    assert isinstance(prm.model, CertaintyPRM) == (arch == "certainty")
    res = prm.score([P0, P1, P0], [GOLD0, WRONG1, GOLD0[:1]])
    assert [len(s) for s in res.scores] == [3, 2, 1]
    assert all(0.0 < x < 1.0 for s in res.scores for x in s)
    assert res.scores[2][0] == pytest.approx(res.scores[0][0], abs=1e-5)  # causal: prefix
    assert res.tokens > 0

    init = load_file(tiny_lm_dir / "model.safetensors")
    saved = load_file(out / "model.safetensors")
    if arch == "certainty":
        # the body is frozen by default: every LM weight is saved as it was loaded
        for name, w in init.items():
            assert torch.equal(saved[f"lm.{name}"], w), name
        # the head moved away from its "certainty only" start (weight 1 on cummin, bias 2)
        start = torch.zeros_like(saved["score.weight"])
        start[0, 32] = 1.0
        assert not torch.equal(saved["score.weight"], start)
        assert saved["score.bias"].item() != 2.0
    else:
        body = [k for k in saved if k.endswith("embed_tokens.weight")]
        assert body and not torch.equal(saved[body[0]], init["model.embed_tokens.weight"])


def test_train_prm_rejects_bad_config(tmp_path, tiny_lm_dir, labels_file):
    with pytest.raises(ValueError, match="unknown label kind"):
        train_prm(tiny_lm_dir, labels_file, tmp_path / "a", PRMTrainConfig(label_kind="gold"))
    with pytest.raises(ValueError, match="unknown PRM arch 'mlp'"):
        train_prm(tiny_lm_dir, labels_file, tmp_path / "b", PRMTrainConfig(arch="mlp"))
    with pytest.raises(ValueError, match="prompt end ' ' is not one token"):
        train_prm(tiny_lm_dir, labels_file, tmp_path / "c",
                  PRMTrainConfig(arch="certainty", prompt_end=" "))
    bad = _write(tmp_path / "bad.jsonl", [RECORDS[0], {"problem_id": "x"}])
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        train_prm(tiny_lm_dir, bad, tmp_path / "d", PRMTrainConfig())
    assert not any((tmp_path / d).exists() for d in "abcd")
