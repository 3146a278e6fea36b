"""The transformers PRM/ORM scorers on real tiny random-init models (no fakes)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hf_tiny import bpe_tokenizer, save, tiny_sequence_classifier, tiny_token_classifier

from ttscale.tasks import testbed
from ttscale.verifiers import VERIFIER_KINDS, StepScorer, load_verifier
from ttscale.verifiers.hf_prm import QwenPRM, TokenClassificationPRM
from ttscale.verifiers.orm import OutcomeRM

PROBLEMS = testbed.TestbedTask(split="test", n=4, min_ops=2, max_ops=5).problems()
PROMPTS = [p.prompt for p in PROBLEMS]
SOLUTIONS = [testbed.parse_question(p.question).gold_steps() for p in PROBLEMS]
SOLUTIONS[1] = SOLUTIONS[1][:1] + ["b:zz", ""] + SOLUTIONS[1][1:]  # wrong and empty steps too


def forward(model, ids: list[int]) -> torch.Tensor:
    """Per-token logits of one unpadded sequence, straight from the model."""
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0]


@pytest.fixture(scope="module")
def prm(tiny_prm_dir) -> TokenClassificationPRM:
    return TokenClassificationPRM.from_pretrained(tiny_prm_dir)


# -- token-classification PRM --

def holding(offsets, c: int) -> int:
    """Index of the token whose character span holds character ``c``."""
    return next(t for t, (a, b) in enumerate(offsets) if a <= c < b)


def test_reads_each_step_at_the_end_of_its_delimiter(prm):
    assert isinstance(prm, StepScorer)
    assert prm.num_parameters == sum(p.numel() for p in prm.model.parameters())
    res = prm.score(PROMPTS, SOLUTIONS)
    tok = prm.tokenizer
    total = 0
    for prompt, steps, got in zip(PROMPTS, SOLUTIONS, res.scores, strict=True):
        text = prompt + "".join(s + "\n" for s in steps)
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = [tok.bos_token_id] + enc["input_ids"]
        total += len(ids)
        ends, c = [], len(prompt)
        for s in steps:
            c += len(s) + 1
            ends.append(1 + holding(enc["offset_mapping"], c - 1))
        want = torch.sigmoid(forward(prm.model, ids)[ends, 0])
        torch.testing.assert_close(torch.tensor(got), want, rtol=1e-5, atol=1e-5)
    assert res.tokens == total and res.tokens_cached == 0


def test_a_step_score_equals_the_score_of_its_prefix_alone(prm):
    whole = prm.score(PROMPTS, SOLUTIONS).scores
    prefixes = [(i, k) for i, s in enumerate(SOLUTIONS) for k in range(1, len(s) + 1)]
    alone = prm.score([PROMPTS[i] for i, _ in prefixes], [SOLUTIONS[i][:k] for i, k in prefixes])
    for (i, k), scores in zip(prefixes, alone.scores, strict=True):
        assert len(scores) == k
        # same math on a differently padded batch: equal up to float32 summation order
        assert scores[-1] == pytest.approx(whole[i][k - 1], abs=1e-4)


def test_micro_batches_and_padding_do_not_change_scores(tiny_prm_dir, prm):
    tiny = TokenClassificationPRM.from_pretrained(tiny_prm_dir, max_batch=1)
    one_by_one = [tiny.score([p], [s]).scores[0] for p, s in zip(PROMPTS, SOLUTIONS, strict=True)]
    batched = prm.score(PROMPTS, SOLUTIONS).scores
    for a, b in zip(one_by_one, batched, strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_empty_solutions_and_bad_input(prm):
    res = prm.score([PROMPTS[0], PROMPTS[1]], [[], SOLUTIONS[1]])
    assert res.scores[0] == [] and len(res.scores[1]) == len(SOLUTIONS[1])
    assert prm.score([], []).scores == []
    with pytest.raises(ValueError, match="2 prompts but 1 solutions"):
        prm.score(PROMPTS[:2], SOLUTIONS[:1])
    with pytest.raises(ValueError, match="solution 0 is a string"):
        prm.score(PROMPTS[:1], ["a:12+3=15"])
    with pytest.raises(ValueError, match="context"):
        prm.score(PROMPTS[:1], [["a:12+3=15"] * 40])


def test_two_label_head_scores_the_probability_of_label_one():
    model, tok = tiny_token_classifier(num_labels=2)
    prm = TokenClassificationPRM(model, tok)
    got = prm.score(PROMPTS[:1], SOLUTIONS[:1]).scores[0]
    ids, pos = prm.encode(PROMPTS[0], SOLUTIONS[0])
    want = torch.softmax(forward(model, ids)[pos], -1)[:, 1]
    torch.testing.assert_close(torch.tensor(got), want, rtol=1e-5, atol=1e-5)


def test_math_style_delimiter_on_a_multi_char_tokenizer():
    tok = bpe_tokenizer("\n\n")
    model, _ = tiny_token_classifier(tok)
    prm = TokenClassificationPRM(model, tok, step_delimiter="\n\n")
    for prompt, steps in zip(PROMPTS, SOLUTIONS, strict=True):
        ids, pos = prm.encode(prompt, steps)
        text = prompt + "".join(s + "\n\n" for s in steps)
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        assert ids == [tok.bos_token_id] + enc["input_ids"]
        # independently: the token whose span holds the second newline of each delimiter
        c, want = len(prompt), []
        for s in steps:
            c += len(s) + 2
            want.append(1 + holding(enc["offset_mapping"], c - 1))
        assert pos == want
        got = prm.score([prompt], [steps]).scores[0]
        torch.testing.assert_close(torch.tensor(got), torch.sigmoid(forward(model, ids)[pos, 0]),
                                   rtol=1e-5, atol=1e-5)


def test_from_pretrained_takes_the_trained_delimiter(tmp_path):
    model, tok = tiny_token_classifier()
    model.config.ttscale = {"kind": "prm", "step_delimiter": "\n\n"}
    path = save(model, tok, tmp_path / "prm")
    assert TokenClassificationPRM.from_pretrained(path).step_delimiter == "\n\n"
    assert TokenClassificationPRM.from_pretrained(path, step_delimiter="\n").step_delimiter == "\n"


# -- Qwen2.5-Math-PRM convention --

def test_qwen_prm_reads_the_step_tokens_of_the_chat(tiny_qwen_prm_dir):
    prm = QwenPRM.from_pretrained(tiny_qwen_prm_dir, question_of=lambda p: p.strip()[2:])
    assert isinstance(prm, StepScorer)
    res = prm.score(PROMPTS, SOLUTIONS)
    tok, total = prm.tokenizer, 0
    for prompt, steps, got in zip(PROMPTS, SOLUTIONS, res.scores, strict=True):
        text = tok.apply_chat_template(
            [{"role": "system", "content": "Please reason step by step, and put your final "
                                           "answer within \\boxed{}."},
             {"role": "user", "content": prompt.strip()[2:]},
             {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"}],
            tokenize=False)
        assert text == prm.render(prompt, steps)
        assert "Q:" not in text  # question_of was applied
        ids = tok(text, add_special_tokens=False)["input_ids"]
        total += len(ids)
        pos = [j for j, t in enumerate(ids) if t == tok.convert_tokens_to_ids("<extra_0>")]
        assert len(pos) == len(steps) == len(got)
        want = torch.softmax(forward(prm.model, ids)[pos], -1)[:, 1]
        torch.testing.assert_close(torch.tensor(got), want, rtol=1e-5, atol=1e-5)
    assert res.tokens == total
    alone = [prm.score([p], [s]).scores[0] for p, s in zip(PROMPTS, SOLUTIONS, strict=True)]
    for a, b in zip(alone, res.scores, strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_qwen_prm_rejects_a_step_holding_the_step_token(tiny_qwen_prm_dir):
    prm = QwenPRM.from_pretrained(tiny_qwen_prm_dir)
    with pytest.raises(ValueError, match="solution 0: 2 steps but 3"):
        prm.score(PROMPTS[:1], [["a:1<extra_0>", "A:1"]])
    assert prm.score(PROMPTS[:1], [[]]).scores == [[]]


def test_qwen_prm_remote_code_is_refused_when_asked(tiny_qwen_prm_dir, tmp_path):
    path = tmp_path / "remote"
    shutil.copytree(tiny_qwen_prm_dir, path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "modeling_prm.PRM"}
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="trust_remote_code=False"):
        QwenPRM.from_pretrained(path, trust_remote_code=False)


# -- outcome reward model --

def test_orm_gives_every_step_the_whole_solution_score(tiny_orm_dir):
    orm = OutcomeRM.from_pretrained(tiny_orm_dir)
    assert isinstance(orm, StepScorer)
    res = orm.score(PROMPTS + [PROMPTS[0]], SOLUTIONS + [[]])
    tok, total = orm.tokenizer, 0
    for prompt, steps, got in zip(PROMPTS, SOLUTIONS, res.scores, strict=False):
        ids = [tok.bos_token_id] + tok(prompt + "".join(s + "\n" for s in steps),
                                       add_special_tokens=False)["input_ids"]
        total += len(ids)
        want = float(torch.sigmoid(forward(orm.model, ids)[0]))
        assert got == pytest.approx([want] * len(steps), abs=1e-5)
    assert res.scores[-1] == [] and res.tokens == total


def test_orm_row_ending_in_the_pad_id_is_pooled_right():
    model, tok = tiny_sequence_classifier()
    orm = OutcomeRM(model, tok, step_delimiter="<pad>")  # every text ends with the pad token
    got = orm.score(PROMPTS[:2], SOLUTIONS[:2]).scores
    for prompt, steps, scores in zip(PROMPTS, SOLUTIONS, got, strict=False):
        ids = [tok.bos_token_id] + tok(prompt + "".join(s + "<pad>" for s in steps),
                                       add_special_tokens=False)["input_ids"]
        assert ids[-1] == tok.pad_token_id
        with torch.inference_mode():
            hidden = model.model(input_ids=torch.tensor([ids])).last_hidden_state
            want = float(torch.sigmoid(model.score(hidden)[0, -1, 0]))
        assert scores == pytest.approx([want] * len(steps), abs=1e-5)


# -- factory --

def test_load_verifier_by_kind(tiny_prm_dir, tiny_qwen_prm_dir, tiny_orm_dir, tmp_path):
    assert VERIFIER_KINDS == ("token-classification", "qwen-prm", "orm", "math-shepherd",
                              "value-head")
    assert isinstance(load_verifier(tiny_prm_dir), TokenClassificationPRM)
    assert isinstance(load_verifier(tiny_prm_dir, "token-classification", step_delimiter="\n\n")
                      .step_delimiter, str)
    assert isinstance(load_verifier(tiny_qwen_prm_dir, kind="qwen-prm"), QwenPRM)
    assert isinstance(load_verifier(tiny_orm_dir, kind="orm"), OutcomeRM)
    with pytest.raises(ValueError, match="unknown verifier kind 'prm7b'"):
        load_verifier(tiny_prm_dir, kind="prm7b")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_verifier(tmp_path / "missing")
    with pytest.raises(ValueError, match="no config.json"):
        load_verifier(tmp_path)
