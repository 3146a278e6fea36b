"""The certainty PRM (``ttscale.verifiers.certainty_prm``) on a tiny random Llama body."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForTokenClassification, LlamaForCausalLM

import ttscale.verifiers.certainty_prm  # noqa: F401  (registers the model with Auto*)
from ttscale.testbed.tokenizer import build_tokenizer
from ttscale.train.common import llama_config
from ttscale.verifiers.certainty_prm import CertaintyPRM
from ttscale.verifiers.hf_prm import TokenClassificationPRM

PROMPT = "Q:10a+5b*3c-4\n"
STEPS = ["a:10+5=15", "b:15*3=45", "c:45-4=41", "A:41"]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    tok = build_tokenizer()
    torch.manual_seed(1)
    lm = LlamaForCausalLM(llama_config(tok, hidden=32, layers=2, heads=4, ffn=64))
    path = tmp_path_factory.mktemp("lm")
    lm.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def prm(lm_dir, tok) -> CertaintyPRM:
    return CertaintyPRM.from_language_model(str(lm_dir), tok.convert_tokens_to_ids("\n")).eval()


def _ids(tok, text: str) -> torch.Tensor:
    return torch.tensor([[tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]])


def _features(prm: CertaintyPRM, ids: torch.Tensor, mask=None) -> torch.Tensor:
    with torch.no_grad():
        logits = prm.lm(input_ids=ids, attention_mask=mask).logits
        return prm.certainty_features(ids, logits, mask)


def test_features_are_log_probs_of_solution_tokens_only(prm, lm_dir, tok):
    text = PROMPT + "".join(s + "\n" for s in STEPS)
    ids = _ids(tok, text)
    feats = _features(prm, ids)[0]
    # the log-probabilities recomputed from the original language model
    lm = LlamaForCausalLM.from_pretrained(lm_dir).eval()
    with torch.no_grad():
        logp = torch.log_softmax(lm(ids).logits[0].float(), -1)
    first_end = 1 + PROMPT.index("\n")  # +1 for BOS
    for t in range(ids.shape[1]):
        if t <= first_end:  # BOS, the prompt and its newline: no feature
            assert feats[t].tolist() == [0.0, 0.0]
        else:  # later newlines (step ends) are solution tokens like any other
            assert feats[t, 1].item() == pytest.approx(logp[t - 1, ids[0, t]].item(), abs=1e-5)
    sol = feats[first_end + 1:, 1]
    assert (sol < 0).all()
    # cummin: the running minimum of the solution's log-probs, so never increasing
    running = torch.cummin(sol, 0).values
    assert torch.allclose(feats[first_end + 1:, 0], running)
    assert (feats[1:, 0] <= feats[:-1, 0]).all()


def test_padding_does_not_change_features(prm, tok):
    a, b = _ids(tok, PROMPT + STEPS[0] + "\n"), _ids(tok, PROMPT + "".join(s + "\n" for s in STEPS))
    ids = torch.full((2, b.shape[1]), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    ids[0, : a.shape[1]], mask[0, : a.shape[1]] = a[0], 1
    ids[1], mask[1] = b[0], 1
    batched = _features(prm, ids, mask)
    assert torch.allclose(batched[0, : a.shape[1]], _features(prm, a)[0], atol=1e-5)
    assert torch.allclose(batched[1], _features(prm, b)[0], atol=1e-5)
    assert (batched[0, a.shape[1]:, 1] == 0).all()  # padding gets no log-prob


def test_an_unlikely_token_lowers_every_later_step(prm, tok):
    ids = _ids(tok, PROMPT + "".join(s + "\n" for s in STEPS))
    with torch.no_grad():
        logp = torch.log_softmax(prm.lm(ids).logits[0].float(), -1)
    start = 1 + len(PROMPT)  # first solution token
    feats = _features(prm, ids)[0]
    lowest = feats[start:, 1].min().item()
    # in the first step, the written character the LM finds least likely at its position
    # (digits only, so the text stays a testbed step)
    digits = tok.convert_tokens_to_ids(list("0123456789"))
    first_step = range(start + 2, start + len(STEPS[0]))
    t, c = min(((t, c) for t in first_step for c in digits if c != ids[0, t]),
               key=lambda tc: logp[tc[0] - 1, tc[1]].item())
    assert logp[t - 1, c].item() < lowest, "precondition: the replacement is the least likely"
    changed = ids.clone()
    changed[0, t] = c
    new = _features(prm, changed)[0]
    assert torch.equal(new[:t], feats[:t])  # causal: nothing before it moves
    ends = [i for i in range(start, ids.shape[1]) if ids[0, i] == tok.convert_tokens_to_ids("\n")]
    assert len(ends) == len(STEPS)
    for e in ends:  # every step end from the first on: the feature the head reads drops
        assert new[e, 0] < feats[e, 0]
    # and so does the score of every step (the freshly initialised head reads cummin)
    scorer = TokenClassificationPRM(prm, tok)
    text_changed = tok.decode(changed[0, 1:])
    changed_steps = text_changed[len(PROMPT):].split("\n")[:-1]
    before = scorer.score([PROMPT], [STEPS]).scores[0]
    after = scorer.score([PROMPT], [changed_steps]).scores[0]
    assert all(a < b for a, b in zip(after, before, strict=True))


def test_body_is_frozen_by_default(prm, lm_dir, tok):
    assert not any(p.requires_grad for p in prm.lm.parameters())
    assert all(p.requires_grad for p in prm.score.parameters())
    ids = _ids(tok, PROMPT + STEPS[0] + "\n")
    model = CertaintyPRM.from_language_model(str(lm_dir), tok.convert_tokens_to_ids("\n"))
    model(ids).logits.sum().backward()
    assert all(p.grad is None for p in model.lm.parameters())
    assert model.score.weight.grad is not None and model.score.weight.grad.abs().sum() > 0
    trainable = CertaintyPRM.from_language_model(str(lm_dir), 4, train_body=True)
    assert all(p.requires_grad for p in trainable.parameters())


def test_body_is_the_language_model_and_head_starts_at_certainty(prm, lm_dir, tok):
    lm = LlamaForCausalLM.from_pretrained(lm_dir).eval()
    ids = _ids(tok, PROMPT + STEPS[0] + "\n")
    with torch.no_grad():
        assert torch.equal(prm.lm(ids).logits, lm(ids).logits)
        logits = prm(ids).logits[0, :, 0]
    assert torch.allclose(logits, _features(prm, ids)[0, :, 0] + 2.0, atol=1e-5)


def test_save_load_round_trip_through_auto_class(prm, tok, tmp_path):
    prm.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = AutoModelForTokenClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is CertaintyPRM
    assert loaded.config.prompt_end_token_id == prm.config.prompt_end_token_id
    assert loaded.config.train_body is False
    # loading re-creates the parameters: the body must still be frozen
    assert not any(p.requires_grad for p in loaded.lm.parameters())
    assert all(p.requires_grad for p in loaded.score.parameters())
    ids = _ids(tok, PROMPT + "".join(s + "\n" for s in STEPS))
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, prm(ids).logits, atol=1e-6)
    scored = TokenClassificationPRM.from_pretrained(tmp_path).score([PROMPT], [STEPS])
    assert scored.scores == TokenClassificationPRM(prm, tok).score([PROMPT], [STEPS]).scores
