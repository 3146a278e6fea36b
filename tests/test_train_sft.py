"""Supervised fine-tuning (``ttscale.train.sft``) on a tiny random Llama."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from hf_tiny import tiny_policy
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttscale.testbed.data import gold_pairs
from ttscale.testbed.tokenizer import build_tokenizer
from ttscale.train.sft import EveryNSteps, encode_pair, read_pairs, train_sft

PAIRS = [("Q:10a+1\n", "a:10+1=11\nA:11\n"), ("Q:20a*3\n", "a:20*3=60\nA:60\n"),
         ("Q:33a-4\n", "a:33-4=29\nA:29\n"), ("Q:50a+9b*2\n", "a:50+9=59\nb:59*2=18\nA:18\n")]


def test_encode_pair_masks_the_prompt_and_appends_eos():
    tok = build_tokenizer()
    prompt, completion = PAIRS[3]
    ids, labels = encode_pair(tok, prompt, completion)
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"]
    assert ids == [tok.bos_token_id, *p, *c, tok.eos_token_id]
    assert labels == [-100] * (1 + len(p)) + [*c, tok.eos_token_id]
    assert tok.decode([x for x in labels if x != -100], skip_special_tokens=True) == completion
    assert ids.count(tok.bos_token_id) == 1  # the tokenizer adds none of its own
    ids, labels = encode_pair(tok, prompt, completion, add_bos=False)
    assert ids == [*p, *c, tok.eos_token_id]
    assert labels == [-100] * len(p) + [*c, tok.eos_token_id]


def test_read_pairs(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "completion": c, "x": 1}) + "\n"
                            for p, c in PAIRS[:2]) + "\n")
    assert read_pairs(path) == PAIRS[:2]


@pytest.mark.parametrize("bad", ["{oops", '{"prompt": "Q:10a+1\\n"}', "[1, 2]"])
def test_read_pairs_error_names_file_and_line(tmp_path, bad):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n\n" + bad + "\n")
    with pytest.raises(ValueError, match=r"data\.jsonl:3: need prompt and completion"):
        read_pairs(path)


def test_read_pairs_empty_file(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("\n \n")
    with pytest.raises(ValueError, match="no training pairs"):
        read_pairs(path)


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_train_sft_on_a_list_trains_and_saves(tmp_path):
    model, tok = tiny_policy(seed=3)
    before = _params(model)
    res = train_sft(model, tok, PAIRS, tmp_path / "out", epochs=2, batch_size=2,
                    learning_rate=1e-2, warmup_steps=0, log_every=1)
    assert res["steps"] == 4  # 2 epochs of 2 batches
    assert torch.isfinite(torch.tensor(res["train_loss"]))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    after = loaded.state_dict()
    assert any(not torch.equal(after[k], v) for k, v in before.items())
    for k, v in model.state_dict().items():  # what was saved is the trained model
        assert torch.equal(after[k], v), k
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert loaded_tok(PAIRS[0][0])["input_ids"] == tok(PAIRS[0][0])["input_ids"]


def test_train_sft_lowers_completion_loss(tmp_path):
    """Overfitting two pairs: the masked (completion-only) loss falls."""
    model, tok = tiny_policy(seed=4)
    pairs = PAIRS[:2]

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            total = 0.0
            for p, c in pairs:
                ids, labels = encode_pair(tok, p, c)
                total += model(input_ids=torch.tensor([ids]),
                               labels=torch.tensor([labels])).loss.item()
        return total / len(pairs)

    start = loss()
    train_sft(model, tok, pairs, tmp_path / "out", epochs=15, batch_size=2, learning_rate=1e-2,
              warmup_steps=0, log_every=100)
    assert loss() < start - 0.5


def test_train_sft_on_a_stream_stops_at_max_steps(tmp_path):
    model, tok = tiny_policy(seed=5)
    made = []

    def stream():
        made.append(1)
        return gold_pairs(seed=0)

    res = train_sft(model, tok, stream, tmp_path / "out", max_steps=3, batch_size=4,
                    warmup_steps=0, log_every=1)
    assert res["steps"] == 3
    assert made  # the stream factory was used
    assert (tmp_path / "out" / "config.json").is_file()


def test_stream_needs_max_steps(tmp_path):
    model, tok = tiny_policy()
    with pytest.raises(ValueError, match="max_steps"):
        train_sft(model, tok, lambda: iter(PAIRS), tmp_path / "out")


def test_every_n_steps_calls_back_and_can_stop_training(tmp_path):
    model, tok = tiny_policy(seed=6)
    seen = []

    def callback(step, m) -> bool:
        seen.append((step, m is model))
        return step >= 4

    res = train_sft(model, tok, lambda: itertools.cycle(PAIRS), tmp_path / "out", max_steps=20,
                    batch_size=2, warmup_steps=0, callbacks=[EveryNSteps(2, callback)])
    assert seen == [(2, True), (4, True)]  # every 2 steps, with the model being trained
    assert res["steps"] == 4
    assert (tmp_path / "out" / "config.json").is_file()
