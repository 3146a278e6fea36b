"""Particle filtering, confidence voting, DeepConf online and adaptive budgets on deterministic
fakes (tests/fakes.py): resampling schemes and their seeds, stopping rules, threshold
calibration, and that every cost the engine and verifier report is counted."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest
from fakes import FakeGenerator, FakeScorer

from ttscale.strategies import SearchContext, get_strategy
from ttscale.strategies.confidence import (
    completion_confidences,
    group_confidences,
    token_confidences,
    trace_score,
)
from ttscale.strategies.deepconf_online import calibrate
from ttscale.strategies.resampling import SCHEMES, resample, softmax_weights
from ttscale.strategies.stopping import beta_leader_prob, beta_stop, esc_stop, score_stop
from ttscale.tasks import testbed
from ttscale.types import Completion

TASK = testbed.TestbedTask(split="test", n=12, min_ops=3, max_ops=6)


def make(accuracy: float = 0.7, noise: float = 0.05, scorer: bool = True, seed: int = 0,
         **options):
    gen = FakeGenerator(accuracy=accuracy)
    sc = FakeScorer(noise=noise) if scorer else None
    ctx = SearchContext(task=TASK, generator=gen, scorer=sc, seed=seed, options=options)
    return ctx, gen, sc


def fingerprint(result) -> tuple:
    cost = result.cost.to_dict()
    cost.pop("wall_s")
    cost.pop("total_flops")
    return (result.answer, [asdict(c) for c in result.candidates], result.trace, cost)


def accuracy(name: str, budget: int, **kw) -> float:
    right = 0
    for p in TASK.problems():
        ctx, _, _ = make(**kw)
        right += get_strategy(name)(p, budget, ctx).answer == p.answer
    return right / len(TASK.problems())


# -- resampling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_resampling_is_seeded_and_unbiased(scheme):
    w = [0.5, 0.3, 0.15, 0.05]
    a = resample(w, 8, scheme, np.random.default_rng(3))
    assert a == resample(w, 8, scheme, np.random.default_rng(3))
    assert len(a) == 8 and all(0 <= i < 4 for i in a)
    counts = np.zeros(4)
    for s in range(2000):
        for i in resample(w, 8, scheme, np.random.default_rng(s)):
            counts[i] += 1
    assert np.allclose(counts / 2000, 8 * np.array(w), atol=0.15)


@pytest.mark.parametrize("scheme", ["systematic", "stratified", "residual"])
def test_low_variance_schemes_keep_floor_copies(scheme):
    # each particle gets at least floor(n w) copies under systematic and residual resampling;
    # stratified can miss by one but never by more
    w = [0.55, 0.3, 0.15]
    for s in range(200):
        got = resample(w, 10, scheme, np.random.default_rng(s))
        for i, wi in enumerate(w):
            floor = math.floor(10 * wi) - (scheme == "stratified")
            assert got.count(i) >= floor


def test_resampling_bad_input():
    with pytest.raises(ValueError, match="unknown resampling scheme 'bogus'"):
        resample([1.0], 2, "bogus", np.random.default_rng(0))
    with pytest.raises(ValueError, match="finite and >= 0"):
        resample([1.0, -1.0], 2, "systematic", np.random.default_rng(0))
    assert resample([0.0, 0.0], 4, "systematic", np.random.default_rng(0)) == [0, 0, 1, 1]


def test_softmax_temperature_and_missing_scores():
    sharp = softmax_weights([2.0, 0.0], 0.5)
    flat = softmax_weights([2.0, 0.0], 4.0)
    assert sharp[0] > flat[0] > 0.5
    assert softmax_weights([None, 1.0], 1.0).tolist() == [0.0, 1.0]
    assert softmax_weights([None, None], 1.0).tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="temperature must be > 0"):
        softmax_weights([1.0], 0.0)


# -- confidence ---------------------------------------------------------------------------------


def test_token_and_trace_confidence():
    conf = token_confidences([[math.log(0.9), math.log(0.05)], [math.log(0.5), math.log(0.5)]])
    assert conf[0] == pytest.approx(-(math.log(0.9) + math.log(0.05)) / 2)
    assert conf[0] > conf[1]  # peaked beats flat
    c = [3.0, 3.0, 1.0, 3.0, 3.0, 3.0]
    assert group_confidences(c, 2) == [3.0, 2.0, 2.0, 3.0, 3.0]
    assert group_confidences(c, 10) == [sum(c) / 6]
    assert trace_score(c, "lowest_group", window=2) == 2.0
    assert trace_score(c, "bottom10", window=2) == 2.0
    assert trace_score(c, "tail", tail=3) == 3.0
    assert trace_score(c, "mean") == pytest.approx(16 / 6)
    assert trace_score([], "mean") == 0.0
    with pytest.raises(ValueError, match="unknown trace score"):
        trace_score(c, "median")


def test_missing_logprobs_is_an_error():
    with pytest.raises(ValueError, match="no top log-probabilities"):
        completion_confidences(Completion("a", "eos", 1, 1))


def test_sampled_token_signal():
    comp = Completion("a", "eos", 1, 2, token_logprobs=[math.log(0.9), math.log(0.25)],
                      top_logprobs=[[math.log(0.9)], [math.log(0.5)]])
    assert completion_confidences(comp, "sampled") == pytest.approx([0.9, 0.25])
    assert completion_confidences(comp) == pytest.approx([-math.log(0.9), -math.log(0.5)])
    with pytest.raises(ValueError, match="unknown confidence signal"):
        completion_confidences(comp, "entropy")
    with pytest.raises(ValueError, match="no log-probabilities of the sampled tokens"):
        completion_confidences(Completion("a", "eos", 1, 1), "sampled")


def test_confidence_vote_with_the_sampled_signal():
    p = TASK.problems()[2]
    ctx, _, _ = make(accuracy=0.5, scorer=False, signal="sampled", keep=0.5)
    r = get_strategy("confidence-vote")(p, 16, ctx)
    assert all(0 < c.meta["confidence"] <= 1 for c in r.candidates)  # mean token probability
    assert r.answer == max(r.meta["totals"], key=r.meta["totals"].get)
    # the fake is unsure exactly of wrong steps, so the sampled signal also finds right traces
    assert accuracy("confidence-vote", 16, accuracy=0.5, scorer=False, signal="sampled") > \
        accuracy("majority", 16, accuracy=0.5, scorer=False)


def test_fake_logprobs_mark_wrong_results():
    gen = FakeGenerator(accuracy=0.5)
    from ttscale.engines.base import SamplingParams

    p = TASK.problems()[0]
    out = gen.generate([p.prompt], SamplingParams(n=16, seed=1, logprobs=5))[0]
    for comp in out:
        assert len(comp.top_logprobs) == comp.generated_tokens
        assert all(len(t) == 5 for t in comp.top_logprobs)
        right = TASK.extract_answer(comp.text) == p.answer
        low = trace_score(completion_confidences(comp), "lowest_group", window=8)
        # a trace with no wrong step is uniformly sure; a wrong final answer needs a wrong step
        if not right:
            assert low < trace_score([-math.log(0.95) * 0.2 + 0.8 * -math.log(0.0125)] * 8,
                                     "mean")


# -- stopping rules -------------------------------------------------------------------------------


def test_beta_rule_exact_and_numeric_agree():
    assert beta_leader_prob(4, 0) == pytest.approx(31 / 32)
    assert beta_leader_prob(3, 3) == pytest.approx(0.5)
    # whole counts (exact) vs a hair off (numeric integration)
    for v1, v2 in [(5, 2), (10, 4), (2, 1)]:
        assert beta_leader_prob(v1 + 1e-9, v2) == pytest.approx(beta_leader_prob(v1, v2),
                                                                 abs=1e-4)
    assert beta_leader_prob(6, 1) > beta_leader_prob(5, 2) > beta_leader_prob(4, 3)
    assert beta_stop({"a": 4.0}, 4, 0.95)
    assert not beta_stop({"a": 3.0, "b": 1.0}, 4, 0.95)
    # weighted votes enter as effective counts: 4 samples, weight 0.99 vs 0.01
    assert beta_stop({"a": 0.99 * 3, "b": 0.01}, 4, 0.9)
    assert not beta_stop({}, 0, 0.95)


def test_esc_and_score_rules():
    assert esc_stop(["1", "1", "1"])
    assert not esc_stop(["1", "2", "1"])
    assert not esc_stop([None, None])
    assert not esc_stop([])
    assert score_stop(0.95, 0.9) and not score_stop(0.5, 0.9) and not score_stop(None, 0.1)


# -- particle filtering ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_particle_filtering_seeded_and_cost(scheme):
    p = TASK.problems()[1]
    ctx, gen, sc = make(resampling=scheme)
    r = get_strategy("particle-filtering")(p, 8, ctx)
    ctx2, _, _ = make(resampling=scheme)
    assert fingerprint(r) == fingerprint(get_strategy("particle-filtering")(p, 8, ctx2))
    assert r.cost.generations == 8  # N particles = N generations, whatever the rounds
    assert r.cost.generated_tokens == gen.generated_tokens
    assert r.cost.prompt_tokens == gen.prompt_tokens
    assert r.cost.prm_tokens == sc.tokens
    assert r.cost.policy_flops == 2 * gen.num_parameters * (gen.prompt_tokens +
                                                             gen.generated_tokens)
    # one verifier call per round; one engine call per distinct number of copies, each copy
    # getting exactly one step (no surplus samples)
    assert len(sc.calls) == r.meta["rounds"] == len(r.trace) <= len(gen.calls)
    assert gen.completions == sum(len(rnd["nodes"]) for rnd in r.trace)
    for rnd in r.trace:
        assert sum(rnd["copies"]) == 8
        assert rnd["weights"] and abs(sum(rnd["weights"]) - 1) < 1e-4
    assert sum(c.meta["copies"] for c in r.candidates) == 8
    ctx3, _, _ = make(resampling=scheme, seed=5)
    assert fingerprint(get_strategy("particle-filtering")(p, 8, ctx3)) != fingerprint(r)


def test_particle_filtering_follows_the_prm():
    # a good PRM steers particles away from wrong steps: well above majority at equal N
    pf = accuracy("particle-filtering", 8, accuracy=0.6, noise=0.05)
    maj = accuracy("majority", 8, accuracy=0.6, noise=0.05)
    assert pf >= 0.9 and pf > maj
    for sel in ("majority", "weighted"):
        assert accuracy("particle-filtering", 8, accuracy=0.6, selection=sel) >= 0.9


def test_particle_filtering_options_and_verifier():
    p = TASK.problems()[0]
    ctx, _, _ = make(resampling="best")
    with pytest.raises(ValueError, match="particle-filtering: option resampling='best'"):
        get_strategy("particle-filtering")(p, 4, ctx)
    ctx, _, _ = make(temperature=0)
    with pytest.raises(ValueError, match="option temperature=0"):
        get_strategy("particle-filtering")(p, 4, ctx)
    ctx, gen, _ = make(scorer=False)
    with pytest.raises(ValueError, match="needs a verifier"):
        get_strategy("particle-filtering")(p, 4, ctx)
    assert not gen.calls  # nothing spent before the error


# -- confidence-vote ------------------------------------------------------------------------------


def test_confidence_vote_filters_and_weights():
    p = TASK.problems()[2]
    ctx, gen, _ = make(accuracy=0.5, scorer=False, keep=0.5)
    r = get_strategy("confidence-vote")(p, 16, ctx)
    assert gen.calls[0][1].logprobs == 5 and gen.calls[0][1].n == 16
    answered = [c for c in r.candidates if c.answer is not None]
    kept = [c for c in answered if c.meta["kept"]]
    assert len(kept) == math.ceil(0.5 * len(answered)) == r.meta["kept"]
    assert min(c.meta["confidence"] for c in kept) >= max(
        c.meta["confidence"] for c in answered if not c.meta["kept"])
    assert r.answer == max(r.meta["totals"], key=r.meta["totals"].get)
    assert r.cost.generations == 16 and r.cost.prm_tokens == 0
    assert r.cost.generated_tokens == gen.generated_tokens


def test_confidence_vote_beats_majority_on_the_fake():
    # the fake hesitates exactly on wrong results, so confidence finds the right traces
    conf = accuracy("confidence-vote", 16, accuracy=0.5, scorer=False)
    maj = accuracy("majority", 16, accuracy=0.5, scorer=False)
    assert conf > maj


def test_confidence_vote_needs_logprobs_and_valid_options():
    class NoLogprobs(FakeGenerator):
        def generate(self, prompts, params):
            out = super().generate(prompts, params)
            for comps in out:
                for c in comps:
                    c.top_logprobs = None
            return out

    p = TASK.problems()[0]
    ctx = SearchContext(task=TASK, generator=NoLogprobs(), options={})
    with pytest.raises(ValueError, match="no top log-probabilities"):
        get_strategy("confidence-vote")(p, 4, ctx)
    ctx, _, _ = make(scorer=False, keep=0)
    with pytest.raises(ValueError, match="confidence-vote: option keep=0"):
        get_strategy("confidence-vote")(p, 4, ctx)
    ctx, _, _ = make(scorer=False, windw=3)
    with pytest.raises(ValueError, match="no option 'windw'; did you mean 'window'"):
        get_strategy("confidence-vote")(p, 4, ctx)


# -- deepconf-online ------------------------------------------------------------------------------


def test_calibrate_is_the_quantile():
    vals = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert calibrate(vals, 0.9) == pytest.approx(np.quantile(vals, 0.1))
    assert calibrate(vals, 0.1) == pytest.approx(np.quantile(vals, 0.9))
    assert calibrate([], 0.5) == float("-inf")


def test_deepconf_online_stops_unsure_traces_and_counts_only_generated():
    p = TASK.problems()[0]
    ctx, gen, _ = make(accuracy=0.85, scorer=False, warmup=8, keep=0.3, consensus=None)
    r = get_strategy("deepconf-online")(p, 32, ctx)
    m = r.meta
    warm = [c for c in r.candidates if c.meta["warmup"]]
    assert len(warm) == 8
    lows = [c.meta["confidence"] for c in warm if c.answer is not None]
    assert m["threshold"] == pytest.approx(calibrate(lows, 0.3))
    online = [c for c in r.candidates if not c.meta["warmup"]]
    assert m["traces_started"] == len(warm) + len(online) == r.cost.generations <= 32
    assert m["traces_stopped"] == sum(c.meta["stopped"] for c in online) > 0
    for c in online:
        if c.meta["stopped"]:
            assert c.answer is None and not c.meta["kept"]
        if c.meta["kept"]:
            assert c.meta["confidence"] >= m["threshold"]
    assert r.cost.generated_tokens == gen.generated_tokens
    assert m["tokens_saved_est"] > 0
    # every online call asked for log-probabilities
    assert all(params.logprobs == 5 for _, params in gen.calls)


def test_deepconf_online_consensus_stop():
    p = TASK.problems()[0]
    ctx, gen, _ = make(accuracy=1.0, scorer=False, warmup=4)
    r = get_strategy("deepconf-online")(p, 64, ctx)
    assert r.meta["consensus_stop"] and r.cost.generations == 4 == gen.completions
    assert r.answer == p.answer
    ctx2, _, _ = make(accuracy=1.0, scorer=False, warmup=4)
    assert fingerprint(get_strategy("deepconf-online")(p, 64, ctx2)) == fingerprint(r)


def test_deepconf_online_keeps_accuracy_with_fewer_tokens():
    right = base = 0
    tok_online = tok_full = 0
    for p in TASK.problems():
        ctx, gen, _ = make(accuracy=0.6, scorer=False, keep=0.9)
        right += get_strategy("deepconf-online")(p, 32, ctx).answer == p.answer
        tok_online += gen.generated_tokens
        ctx, gen, _ = make(accuracy=0.6, scorer=False)
        base += get_strategy("majority")(p, 32, ctx).answer == p.answer
        tok_full += gen.generated_tokens
    assert right >= base and tok_online < tok_full


# -- adaptive -------------------------------------------------------------------------------------


def test_adaptive_stops_when_decided():
    p = TASK.problems()[0]
    ctx, gen, _ = make(accuracy=1.0, scorer=False)
    r = get_strategy("adaptive")(p, 64, ctx)
    # 4 agreeing votes: P(leader) = 31/32 >= 0.95 -> one round
    assert r.cost.generations == 4 == gen.completions == r.meta["realised_generations"]
    assert r.meta["stopped_early"] and r.answer == p.answer and r.meta["rounds"] == 1


def test_adaptive_runs_to_budget_when_undecided_and_counts_everything():
    p = TASK.problems()[5]
    ctx, gen, _ = make(accuracy=0.0, scorer=False, round_size=3)
    r = get_strategy("adaptive")(p, 10, ctx)
    assert r.cost.generations == 10 == gen.completions  # 3+3+3+1: the last round is cut
    assert [params.n for _, params in gen.calls] == [3, 3, 3, 1]
    assert not r.meta["stopped_early"]
    assert r.cost.generated_tokens == gen.generated_tokens


@pytest.mark.parametrize("opts", [{"rule": "esc"}, {"vote": "confidence"},
                                  {"vote": "confidence", "rule": "esc", "round_size": 2}])
def test_adaptive_rules_and_votes(opts):
    p = TASK.problems()[0]
    ctx, gen, _ = make(accuracy=1.0, scorer=False, **opts)
    r = get_strategy("adaptive")(p, 32, ctx)
    assert r.answer == p.answer and r.cost.generations < 32
    ctx2, _, _ = make(accuracy=1.0, scorer=False, **opts)
    assert fingerprint(get_strategy("adaptive")(p, 32, ctx2)) == fingerprint(r)


def test_adaptive_prm_score_rule():
    p = TASK.problems()[4]
    ctx, gen, sc = make(accuracy=0.5, noise=0.02)
    r = get_strategy("adaptive-prm")(p, 64, ctx)
    best = max(r.candidates, key=lambda c: c.scores[-1] if c.scores else -1)
    assert r.answer == best.answer == p.answer
    assert r.cost.generations < 64 and r.cost.prm_tokens == sc.tokens
    assert len(sc.calls) == r.meta["rounds"]
    # beta on PRM-weighted votes
    ctx, _, _ = make(accuracy=0.9, vote="weighted", rule="beta")
    assert get_strategy("adaptive-prm")(p, 64, ctx).answer == p.answer


def test_adaptive_option_errors():
    p = TASK.problems()[0]
    for opts, msg in [({"rule": "esc", "round_size": 1}, "rule=esc needs round_size >= 2"),
                      ({"vote": "prm"}, "adaptive: option vote='prm'"),
                      ({"rule": "score"}, "adaptive: option rule='score'")]:
        ctx, gen, _ = make(scorer=False, **opts)
        with pytest.raises(ValueError, match=msg):
            get_strategy("adaptive")(p, 8, ctx)
        assert not gen.calls
    ctx, _, _ = make(vote="argmax", rule="beta")
    with pytest.raises(ValueError, match="vote=argmax has no vote counts"):
        get_strategy("adaptive-prm")(p, 8, ctx)
    # the registry checks them before any model is loaded
    from ttscale.strategies.registry import parse_options

    with pytest.raises(ValueError, match="adaptive: rule=esc needs round_size >= 2"):
        parse_options("adaptive", {"rule": "esc", "round_size": 1}, budget=8)


def test_adaptive_saves_samples_at_equal_accuracy():
    gens = right = 0
    for p in TASK.problems():
        ctx, gen, _ = make(accuracy=0.8, scorer=False)
        right += get_strategy("adaptive")(p, 32, ctx).answer == p.answer
        gens += gen.completions
    assert right / len(TASK.problems()) >= accuracy("majority", 32, accuracy=0.8, scorer=False)
    assert gens / len(TASK.problems()) < 0.75 * 32  # measured 20.7
