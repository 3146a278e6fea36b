"""Particle filtering, confidence voting and adaptive budgets on the real shipped testbed models
(policy-small and the shipped PRM, in-process transformers engine): budgets, costs and
determinism hold with nothing fake on either side."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from ttscale.engines.base import SamplingParams
from ttscale.strategies import SearchContext, get_strategy
from ttscale.tasks import testbed

hf = pytest.importorskip("ttscale.engines.hf")

MODELS = Path(__file__).resolve().parents[1] / "src/ttscale/testbed/models"
TASK = testbed.TestbedTask(split="test", n=2, min_ops=2, max_ops=4)


@pytest.fixture(scope="module")
def parts():
    import torch

    from ttscale.verifiers import load_verifier

    torch.set_num_threads(1)
    gen = hf.HFGenerator.from_pretrained(MODELS / "policy-small")
    prm = load_verifier(MODELS / "prm", step_delimiter="\n")
    return gen, prm


def run(name: str, parts, budget: int, **options):
    gen, prm = parts
    ctx = SearchContext(task=TASK, generator=gen, scorer=prm, seed=0, options=options)
    return get_strategy(name)(TASK.problems()[1], budget, ctx)


def same(a, b) -> bool:
    return (a.answer, [asdict(c) for c in a.candidates], a.trace) == \
        (b.answer, [asdict(c) for c in b.candidates], b.trace)


def check_cost(result, gen) -> None:
    c = result.cost
    assert c.generated_tokens > 0 and c.prompt_tokens > 0
    assert c.policy_flops == pytest.approx(2.0 * gen.num_parameters * (
        c.prompt_tokens - c.prompt_tokens_cached + c.generated_tokens))


@pytest.mark.parametrize("scheme", ["systematic", "multinomial"])
def test_particle_filtering_real(parts, scheme):
    r = run("particle-filtering", parts, 8, resampling=scheme)
    assert r.cost.generations == 8 and r.cost.prm_tokens > 0
    check_cost(r, parts[0])
    assert sum(c.meta["copies"] for c in r.candidates) == 8
    assert all(len(c.scores) == len(c.steps) for c in r.candidates)
    assert same(r, run("particle-filtering", parts, 8, resampling=scheme))


@pytest.mark.parametrize("name,options", [("adaptive", {}), ("adaptive", {"rule": "esc"}),
                                          ("adaptive-prm", {"round_size": 2})])
def test_adaptive_real(parts, name, options):
    r = run(name, parts, 16, **options)
    assert 1 <= r.cost.generations == len(r.candidates) == r.meta["realised_generations"] <= 16
    assert r.meta["stopped_early"] == (r.cost.generations < 16)
    check_cost(r, parts[0])
    assert same(r, run(name, parts, 16, **options))


def _has_logprobs(gen) -> bool:
    out = gen.generate([TASK.problems()[0].prompt], SamplingParams(n=1, max_tokens=4, seed=0,
                                                                   logprobs=2))
    return out[0][0].top_logprobs is not None


@pytest.mark.parametrize("signal", ["topk", "sampled"])
@pytest.mark.parametrize("name", ["confidence-vote", "deepconf-online", "adaptive"])
def test_confidence_strategies_real(parts, name, signal):
    if not _has_logprobs(parts[0]):
        pytest.skip("this in-process engine does not return log-probabilities yet")
    opts = {"vote": "confidence"} if name == "adaptive" else {}
    if name == "deepconf-online":
        opts = {"warmup": 4, "batch": 4}
    opts["signal"] = signal
    r = run(name, parts, 12, **opts)
    assert 1 <= r.cost.generations <= 12 and r.cost.prm_tokens == 0
    check_cost(r, parts[0])
    for c in r.candidates:
        assert c.meta["confidence"] > 0
    assert same(r, run(name, parts, 12, **opts))
