"""The in-process engine's sampling parameters and log-probabilities: neutral values sample
exactly what the engine sampled before they existed; top-k, top-p, min-p and the repetition
penalty filter like transformers' own logits processors; log-probabilities equal a direct
forward pass of the shipped testbed policy on the generated text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from ttscale.engines import hf
from ttscale.engines.base import SamplingParams
from ttscale.engines.hf import HFGenerator
from ttscale.engines.hf_sampling import _truncate, penalise, pick_tokens
from ttscale.shipped import model_path
from ttscale.tasks import testbed

GOLDEN = Path(__file__).parent / "fixtures" / "hf_engine_golden.json"


@pytest.fixture(scope="module")
def policy() -> HFGenerator:
    torch.set_num_threads(1)
    return HFGenerator.from_pretrained(model_path("policy-small"))


def old_pick_tokens(logits: torch.Tensor, params: SamplingParams, gen: torch.Generator,
                    seen: torch.Tensor | None = None) -> torch.Tensor:
    """The engine's sampler before top_k/min_p/repetition_penalty existed, verbatim."""
    if params.temperature == 0:
        return logits.argmax(-1)
    x = logits.float() / params.temperature
    if params.top_p < 1:
        sorted_x, order = x.sort(-1, descending=True)
        probs = torch.softmax(sorted_x, -1)
        sorted_x.masked_fill_(probs.cumsum(-1) - probs > params.top_p, float("-inf"))
        choice = torch.multinomial(torch.softmax(sorted_x, -1), 1, generator=gen)
        return order.gather(-1, choice).squeeze(-1)
    return torch.multinomial(torch.softmax(x, -1), 1, generator=gen).squeeze(-1)


@pytest.mark.parametrize("kw", [{"temperature": 1.0}, {"temperature": 0.7, "top_p": 0.9},
                                {"temperature": 0.0}])
def test_neutral_parameters_sample_as_the_old_sampler_did(policy, monkeypatch, kw):
    prompts = [p.prompt for p in testbed.TestbedTask(split="test", n=3, seed=6).problems()]
    params = SamplingParams(n=4, max_tokens=32, seed=7, **kw)
    new = [[s.token_ids for s in row] for row in policy.sample(prompts, params)]
    monkeypatch.setattr(hf, "pick_tokens", old_pick_tokens)
    old = [[s.token_ids for s in row] for row in policy.sample(prompts, params)]
    assert new == old


def test_neutral_parameters_sample_exactly_what_the_engine_sampled_before(policy):
    golden = json.loads(GOLDEN.read_text())
    if golden["torch"] != torch.__version__:
        pytest.skip(f"golden samples recorded with torch {golden['torch']}, not "
                    f"{torch.__version__} (bitwise sampling differs across versions)")
    for case in golden["cases"]:
        kw = dict(case["params"])
        params = SamplingParams(n=4, max_tokens=48, seed=123, stop=tuple(kw.pop("stop")),
                                top_k=0, min_p=0.0, repetition_penalty=1.0, **kw)
        got = [[s.token_ids for s in row] for row in policy.sample(golden["prompts"], params)]
        assert got == case["token_ids"], case["params"]


# -- the filters against transformers' logits processors --

def random_logits(rows: int = 6, vocab: int = 50, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, vocab, generator=g) * 3


@pytest.mark.parametrize("top_k,top_p,min_p", [(5, 1.0, 0.0), (0, 0.8, 0.0), (0, 1.0, 0.1),
                                               (7, 0.9, 0.05), (1, 1.0, 0.0)])
def test_truncation_keeps_the_tokens_transformers_keeps(top_k, top_p, min_p):
    x = random_logits() / 0.7
    ours = _truncate(x, SamplingParams(temperature=0.7, top_k=top_k, top_p=top_p, min_p=min_p))
    theirs = x.clone()
    ids = torch.zeros((x.shape[0], 1), dtype=torch.long)
    if top_k:
        theirs = TopKLogitsWarper(top_k)(ids, theirs)
    if top_p < 1:
        theirs = TopPLogitsWarper(top_p)(ids, theirs)
    if min_p:
        theirs = MinPLogitsWarper(min_p)(ids, theirs)
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    assert torch.equal(ours[~torch.isinf(ours)], x[~torch.isinf(ours)])


def test_the_repetition_penalty_is_transformers_ctrl_penalty():
    x = random_logits()
    history = torch.randint(0, x.shape[1], (x.shape[0], 8), generator=torch.Generator()
                            .manual_seed(1))
    seen = torch.zeros_like(x, dtype=torch.bool).scatter(1, history, True)
    theirs = RepetitionPenaltyLogitsProcessor(1.3)(history, x.clone())
    torch.testing.assert_close(penalise(x, seen, 1.3), theirs)
    tempered = TemperatureLogitsWarper(0.5)(history, theirs)
    assert torch.isfinite(tempered).all()


def test_filters_restrict_what_is_sampled():
    x = random_logits(rows=1, vocab=30).expand(400, -1).contiguous()
    gen = torch.Generator().manual_seed(0)
    top3 = set(x[0].topk(3).indices.tolist())
    got = set(pick_tokens(x, SamplingParams(top_k=3), gen).tolist())
    assert got <= top3 and len(got) > 1
    probs = torch.softmax(x[0], -1)
    keep = set((probs >= 0.2 * probs.max()).nonzero().flatten().tolist())
    assert set(pick_tokens(x, SamplingParams(min_p=0.2), gen).tolist()) <= keep
    assert set(pick_tokens(x, SamplingParams(top_k=1, temperature=2.0), gen).tolist()) == \
        {int(x[0].argmax())}


# -- through the engine --

def test_greedy_with_a_repetition_penalty_matches_model_generate(policy):
    prompts = [p.prompt for p in testbed.TestbedTask(split="test", n=3, seed=2).problems()]
    params = SamplingParams(temperature=0.0, max_tokens=24, repetition_penalty=1.5)
    ours = policy.sample(prompts, params)
    plain = policy.sample(prompts, SamplingParams(temperature=0.0, max_tokens=24))
    assert [r[0].token_ids for r in ours] != [r[0].token_ids for r in plain]
    for prompt, row in zip(prompts, ours, strict=True):
        ids = torch.tensor([[policy.bos_id] + policy.tokenizer(
            prompt, add_special_tokens=False)["input_ids"]])
        with torch.inference_mode():
            out = policy.model.generate(ids, attention_mask=torch.ones_like(ids),
                                        do_sample=False, max_new_tokens=24,
                                        repetition_penalty=1.5, eos_token_id=policy.eos_ids,
                                        pad_token_id=policy.pad_id)
        theirs = out[0, ids.shape[1]:].tolist()[:len(row[0].token_ids)]
        assert row[0].token_ids == theirs


def test_top_k_one_is_greedy_at_any_temperature(policy):
    prompts = [p.prompt for p in testbed.TestbedTask(split="test", n=3, seed=3).problems()]
    greedy = policy.sample(prompts, SamplingParams(temperature=0.0, max_tokens=20))
    top1 = policy.sample(prompts, SamplingParams(temperature=1.5, top_k=1, max_tokens=20,
                                                 seed=9))
    assert [r[0].token_ids for r in top1] == [r[0].token_ids for r in greedy]


@pytest.mark.parametrize("extra", [{}, {"top_k": 5, "min_p": 0.02, "repetition_penalty": 1.2}])
def test_logprobs_equal_a_direct_forward_pass_on_the_generated_text(policy, extra):
    prompts = [p.prompt for p in testbed.TestbedTask(split="test", n=4, seed=4,
                                                     min_ops=2, max_ops=8).problems()]
    params = SamplingParams(n=3, temperature=0.8, top_p=0.95, max_tokens=40, seed=5,
                            logprobs=5, stop=("\n\n",), **extra)
    rows = policy.sample(prompts, params)
    for prompt, row in zip(prompts, rows, strict=True):
        head = [policy.bos_id] + policy.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for s in row:
            c = s.completion()
            assert len(c.token_logprobs) == len(c.top_logprobs) == c.generated_tokens \
                == len(s.token_ids)
            ids = torch.tensor([head + s.token_ids])
            with torch.inference_mode():
                lp = torch.log_softmax(policy.model(input_ids=ids).logits[0].float(), -1)
            at = lp[len(head) - 1:len(head) - 1 + len(s.token_ids)]
            want = at.gather(-1, torch.tensor(s.token_ids)[:, None]).squeeze(-1)
            torch.testing.assert_close(torch.tensor(c.token_logprobs), want, atol=2e-4,
                                       rtol=1e-4)
            torch.testing.assert_close(torch.tensor(c.top_logprobs), at.topk(5, -1).values,
                                       atol=2e-4, rtol=1e-4)
            for chosen, top in zip(c.token_logprobs, c.top_logprobs, strict=True):
                assert top == sorted(top, reverse=True) and chosen <= top[0] + 1e-6


def test_without_logprobs_none_are_reported(policy):
    c = policy.generate(["Q: a=1+2\nA:"], SamplingParams(max_tokens=8, seed=1))[0][0]
    assert c.token_logprobs is None and c.top_logprobs is None
