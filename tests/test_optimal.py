"""Compute-optimal analysis on hand-built data: difficulty bins, the probe's charge, the 2-fold
cross-validated selection (which must never see its evaluation fold), the frontier match and
efficiency ratio, the policy table's round trip and errors, the FLOPs-matched arithmetic.

Expected values are computed by hand in the comments, not by the code under test.
"""

from __future__ import annotations

import json
import math

import pytest

from ttscale.optimal.data import Point
from ttscale.optimal.difficulty import (
    bin_of,
    charged_generations,
    fit_thresholds,
    mean_final_score,
    predicted_bins,
    reused_samples,
)
from ttscale.optimal.flops import (
    compare,
    inference_flops,
    params_from_cost,
    pretraining_flops,
    small_allowance,
    token_multiplier,
)
from ttscale.optimal.frontier import CurvePoint, Frontier, match
from ttscale.optimal.selection import (
    OracleBinner,
    Outcome,
    PredictedBinner,
    apply_policy,
    choose,
    cross_validate,
    select_policy,
    split_folds,
)
from ttscale.strategies.policy_table import (
    PolicyTableError,
    load_table,
    save_table,
    validate_table,
)
from ttscale.types import Cost

# ---- difficulty ------------------------------------------------------------------------------


def test_thresholds_split_equal_counts_and_bin_new_values():
    # 10 questions, scores 0.0 .. 0.9: bins of 2, easiest (highest) first
    values = {f"q{i}": i / 10 for i in range(10)}
    cuts = fit_thresholds(values)
    # halfway between the groups {0.9,0.8} {0.7,0.6} {0.5,0.4} {0.3,0.2} {0.1,0.0}
    assert cuts == pytest.approx([0.15, 0.35, 0.55, 0.75])
    assert predicted_bins(values, cuts) == {
        "q9": 1, "q8": 1, "q7": 2, "q6": 2, "q5": 3, "q4": 3, "q3": 4, "q2": 4, "q1": 5, "q0": 5}
    assert bin_of(0.99, cuts) == 1 and bin_of(-1.0, cuts) == 5
    assert bin_of(0.75, cuts) == 1  # a value on a cut goes to the easier bin
    assert bin_of(0.7499, cuts) == 2
    # fewer questions than bins: fewer bins, never an empty one
    assert fit_thresholds({"a": 0.2, "b": 0.8}) == pytest.approx([0.5])
    with pytest.raises(ValueError, match="zero questions"):
        fit_thresholds({})
    with pytest.raises(ValueError, match="'a'.*not a finite"):
        fit_thresholds({"a": math.nan, "b": 0.1})


def test_mean_final_score_counts_unscored_samples_as_zero():
    assert mean_final_score([[0.2, 0.9], [0.5], []]) == pytest.approx((0.9 + 0.5 + 0.0) / 3)
    with pytest.raises(ValueError, match="zero samples"):
        mean_final_score([])


@pytest.mark.parametrize("strategy, n, k, reuse, reused, gens", [
    ("majority", 16, 4, True, 4, 16),          # the probe's 4 are 4 of the 16
    ("weighted-best-of-n", 1, 4, True, 1, 4),  # 1 of the probe's 4 answers: max(N, k)
    ("best-of-n", 4, 4, True, 4, 4),
    ("beam", 16, 4, True, 0, 20),              # a tree search cannot reuse finished samples
    ("revisions", 8, 2, True, 0, 10),
    ("majority", 16, 4, False, 0, 20),         # reuse switched off
])
def test_probe_charge(strategy, n, k, reuse, reused, gens):
    assert reused_samples(strategy, n, k, reuse) == reused
    assert charged_generations(strategy, n, k, reuse) == gens


# ---- a hand-built sweep: 8 questions, 3 arms, 2 budgets -------------------------------------

IDS = [f"q{i}" for i in range(8)]
# per question: "cheap" wins on the easy questions q0..q3, "tree" on the hard q4..q7;
# "tie" equals "cheap" everywhere but costs more (loses every tie on FLOPs)
EASY, HARD = IDS[:4], IDS[4:]


def _pt(acc: dict[str, float], gens: float, flops: float) -> Point:
    return Point(dict(acc), {q: gens for q in acc}, {q: flops for q in acc})


def hand_points() -> dict:
    cheap = {q: (1.0 if q in EASY else 0.0) for q in IDS}
    tree = {q: (0.5 if q in EASY else 1.0) for q in IDS}
    return {
        ("cheap", 1): _pt(cheap, 1, 10.0), ("cheap", 4): _pt(cheap, 4, 40.0),
        ("tie", 1): _pt(cheap, 1, 20.0), ("tie", 4): _pt(cheap, 4, 80.0),
        ("tree", 4): _pt(tree, 4, 60.0),  # no point at N=1 (like beam search)
    }


PASS1 = {q: (0.9 - 0.01 * i if q in EASY else 0.1 - 0.01 * i) for i, q in enumerate(IDS)}


def test_choose_prefers_accuracy_then_cheaper_then_label():
    pts = hand_points()
    assert choose(pts, 4, EASY).label == "cheap"     # 1.0 vs tree 0.5; "tie" costs more
    assert choose(pts, 4, HARD).label == "tree"      # 1.0 vs 0.0
    c = choose(pts, 4, IDS)                          # cheap 0.5 = tie 0.5 < tree 0.75
    assert (c.label, c.accuracy, c.n_questions) == ("tree", 0.75, 8)
    assert choose(pts, 1, HARD).label == "cheap"     # all 0.0: cheapest wins
    pts[("a-same", 1)] = _pt({q: (1.0 if q in EASY else 0.0) for q in IDS}, 1, 10.0)
    assert choose(pts, 1, EASY).label == "a-same"    # same accuracy and FLOPs: label order
    with pytest.raises(ValueError, match="no strategy has results at N=2"):
        choose(pts, 2, IDS)


def test_select_policy_per_bin_with_fallback_for_an_empty_bin():
    bins = {q: (1 if q in EASY else 3) for q in IDS}  # bin 2 has no question
    policy = select_policy(hand_points(), [1, 4], IDS, bins, n_bins=3)
    assert policy[1][4].label == "cheap" and policy[3][4].label == "tree"
    assert policy[1][1].label == "cheap" and policy[3][1].label == "cheap"
    assert not policy[1][4].fallback
    assert policy[2][4].fallback and policy[2][4].label == "tree"  # best over all questions
    assert policy[2][4].n_questions == 0


def test_split_folds_is_a_seeded_partition_independent_of_input_order():
    a, b = split_folds(IDS, seed=3)
    assert sorted(a + b) == sorted(IDS) and not set(a) & set(b) and len(a) == len(b) == 4
    assert split_folds(list(reversed(IDS)), seed=3) == (a, b)
    assert split_folds(IDS, seed=4) != (a, b)
    odd = split_folds(IDS[:7], seed=0)
    assert abs(len(odd[0]) - len(odd[1])) == 1
    with pytest.raises(ValueError, match="unique"):
        split_folds(["a", "a", "b"])
    with pytest.raises(ValueError, match="at least 2"):
        split_folds(["a"])


class Spy(dict):
    """A dict that records which keys were read."""

    def __init__(self, *a, log: set, **kw):
        super().__init__(*a, **kw)
        self.log = log

    def __getitem__(self, k):
        self.log.add(k)
        return super().__getitem__(k)

    def __contains__(self, k):
        self.log.add(k)
        return super().__contains__(k)


def test_selection_reads_only_its_own_questions():
    seen: set = set()
    pts = {key: Point(Spy(p.acc, log=seen), Spy(p.gens, log=seen), Spy(p.flops, log=seen))
           for key, p in hand_points().items()}
    sel = ["q0", "q1", "q5", "q6"]
    select_policy(pts, [1, 4], sel, {"q0": 1, "q1": 1, "q5": 2, "q6": 2}, n_bins=2)
    assert seen and seen <= set(sel)


def test_cross_validation_never_lets_the_evaluation_fold_into_selection():
    pts = hand_points()
    binner = OracleBinner(PASS1, n_bins=2)
    cv = cross_validate(pts, [1, 4], IDS, binner, seed=1)
    halves = split_folds(IDS, seed=1)
    for f, fold in enumerate(cv.folds):
        assert fold.selection == halves[f] and fold.evaluation == halves[1 - f]
    # every question is evaluated exactly once, by the policy of the other fold
    assert sorted(cv.pooled[4].acc) == sorted(IDS)
    for fold in cv.folds:
        for q in fold.evaluation:
            b = cv.pooled[4].bins[q]
            assert cv.pooled[4].label[q] == fold.policy[b][4].label
            assert cv.pooled[4].acc[q] == pts[(fold.policy[b][4].label, 4)].acc[q]

    # wreck everything known about fold 0's evaluation questions: fold 0's policy must not move
    ev = set(cv.folds[0].evaluation)
    wrecked = {key: Point({q: (1.0 - a if q in ev else a) for q, a in p.acc.items()},
                          dict(p.gens), {q: (1e9 if q in ev else f) for q, f in p.flops.items()})
               for key, p in pts.items()}
    pass1 = {q: (1.0 - v if q in ev else v) for q, v in PASS1.items()}
    cv2 = cross_validate(wrecked, [1, 4], IDS, OracleBinner(pass1, n_bins=2), seed=1)
    assert cv2.folds[0].policy == cv.folds[0].policy
    assert cv2.folds[0].outcomes[4].acc != cv.folds[0].outcomes[4].acc  # the wreck mattered


def test_cross_validated_selection_finds_the_per_bin_winner():
    # with oracle bins by pass@1, the easy half is bin 1 and the hard half bin 2 in each fold,
    # so every question gets its winning arm at N=4 and accuracy is perfect
    cv = cross_validate(hand_points(), [1, 4], IDS, OracleBinner(PASS1, n_bins=2), seed=0)
    assert cv.pooled[4].acc == {q: 1.0 for q in IDS}
    assert {cv.pooled[4].label[q] for q in EASY} == {"cheap"}
    assert {cv.pooled[4].label[q] for q in HARD} == {"tree"}
    curve = cv.curve()
    assert [p["accuracy"] for p in curve] == [0.5, 1.0]
    assert curve[1]["flops"] == pytest.approx((4 * 40 + 4 * 60) / 8)


def test_predicted_binner_fits_on_selection_and_bins_new_questions_by_the_probe():
    pool_mean = {q: 1.0 - PASS1[q] for q in IDS}  # deliberately inverted: easy look hard
    probe = {q: 0.0 for q in IDS}                 # the probe says every question is hardest
    binner = PredictedBinner(pool_mean, probe, n_bins=2)
    sel, ev = split_folds(IDS, seed=0)
    fitted = binner.fit(sel)
    assert fitted.thresholds == pytest.approx(fit_thresholds({q: pool_mean[q] for q in sel}, 2))
    assert fitted.train == predicted_bins({q: pool_mean[q] for q in sel}, fitted.thresholds)
    assert fitted.assign(ev) == {q: 2 for q in ev}


def test_apply_policy_clamps_to_the_hardest_bin():
    pts = hand_points()
    policy = select_policy(pts, [4], IDS, {q: 1 for q in IDS}, n_bins=1)
    o = apply_policy(policy, pts, 4, ["q5"], {"q5": 4})
    assert o.bins == {"q5": 1} and o.label == {"q5": "tree"}


# ---- frontier ---------------------------------------------------------------------------------


def test_match_interpolates_in_log2_budget_and_flags_bounds():
    curve = [CurvePoint(1, 0.2, 1.0, 100.0), CurvePoint(4, 0.6, 4.0, 400.0),
             CurvePoint(16, 0.8, 16.0, 1600.0)]
    m = match(curve, 0.4)  # halfway from 0.2 to 0.6: 2^(0 + 0.5 * 2) = 2 generations
    assert m is not None and not m.bound
    assert m.generations == pytest.approx(2.0) and m.flops == pytest.approx(200.0)
    m = match(curve, 0.7)  # halfway 4 -> 16 in log2: 8
    assert m.generations == pytest.approx(8.0)
    m = match(curve, 0.1)  # already at the cheapest point: at most 1
    assert m.bound and m.generations == 1.0
    assert match(curve, 0.9) is None


def _outcome(acc: dict, gens: float, flops: float) -> Outcome:
    return Outcome(dict(acc), {q: gens for q in acc}, {q: flops for q in acc},
                   {q: 1 for q in acc}, {q: "x" for q in acc})


def test_efficiency_ratio_against_the_baseline_and_a_zero_width_bootstrap():
    ids = ["a", "b", "c", "d"]
    # compute-optimal: 0.25 at N=1 (cost 4 gens with the probe), 0.75 at N=4 (cost 8)
    co = {1: _outcome({"a": 1, "b": 0, "c": 0, "d": 0}, 4, 40),
          4: _outcome({"a": 1, "b": 1, "c": 1, "d": 0}, 8, 80),
          16: _outcome({"a": 1, "b": 1, "c": 1, "d": 1}, 20, 200),
          64: _outcome({"a": 1, "b": 1, "c": 1, "d": 1}, 68, 680)}
    # best-of-N: 0.5 at N=16, 0.75 at N=64
    base = {("bon", 16): _pt({"a": 1, "b": 1, "c": 0, "d": 0}, 16, 160),
            ("bon", 64): _pt({"a": 1, "b": 1, "c": 1, "d": 0}, 64, 640)}
    fr = Frontier(co, base, "bon", [1, 4, 16, 64], ids)
    e = fr.efficiency(64)  # 0.75 reached exactly at the N=4 point: 8 generations
    assert e["matched_generations"] == pytest.approx(8.0) and e["ratio"] == pytest.approx(8.0)
    assert e["flops_ratio"] == pytest.approx(640 / 80) and not e["bound"]
    e = fr.efficiency(16)  # 0.5: halfway 0.25 -> 0.75 between 4 and 8 gens: 2^(2.5)
    assert e["matched_generations"] == pytest.approx(2 ** 2.5)
    assert e["ratio"] == pytest.approx(16 / 2 ** 2.5)
    with pytest.raises(ValueError, match="no bon point at N=4"):
        fr.efficiency(4)
    # identical questions: every resample gives the same ratio
    same = {n: _outcome({q: 0.5 for q in ids}, n, n) for n in (1, 4)}
    fr2 = Frontier(same, {("bon", 4): _pt({q: 0.5 for q in ids}, 4, 4)}, "bon", [1, 4], ids)
    boot = fr2.bootstrap(4, n_boot=30, seed=0)
    assert boot["reached"] == 1.0 and boot["ratio_p05"] == boot["ratio_p95"] == 4.0


# ---- the policy table ------------------------------------------------------------------------


def table_dict(**over) -> dict:
    entry = {"strategy": "majority", "options": {}}
    d = {"schema_version": 1, "task": "testbed", "models": {"policy": "p", "prm": "r"},
         "bins": {"kind": "predicted", "thresholds": [0.2, 0.5]},
         "probe": {"k": 2, "reuse": True}, "budgets": [1, 4],
         "policy": {"1": {"1": entry, "4": entry}, "2": {"1": entry, "4": entry},
                    "3": {"1": entry, "4": {"strategy": "beam", "options": {"beam_width": 2}}}}}
    d.update(over)
    return d


def test_policy_table_round_trip_and_lookup(tmp_path):
    t = validate_table(table_dict(), "t")
    path = save_table(t, tmp_path / "sub" / "p.json")
    back = load_table(path)
    assert back == t and back.model_dump() == json.loads(path.read_text())
    assert back.bins.n_bins == 3 and back.bin_of(0.9) == 1 and back.bin_of(0.1) == 3
    assert back.lookup(3, 7) == (4, back.entry(3, 4))   # largest table budget <= 7
    assert back.lookup(3, 4, within_budget=True)[0] == 1  # beam at 4 + probe 2 > 4
    assert back.lookup(1, 4, within_budget=True)[0] == 4  # majority reuses the probe
    with pytest.raises(ValueError, match="below the policy table's smallest budget 1"):
        back.lookup(1, 0)


@pytest.mark.parametrize("change, field, needle", [
    ({"policy": {"1": {}, "2": {}}}, "policy", "exactly bins 1, 2, 3"),
    ({"budgets": [4, 1]}, "budgets", "ascending"),
    ({"bins": {"kind": "predicted", "thresholds": [0.5, 0.2]}}, "bins.thresholds", "ascending"),
    ({"bins": {"kind": "weird", "thresholds": [0.2, 0.5]}}, "bins.kind", "'oracle'"),
    ({"probe": {"k": 0}}, "probe.k", "greater than or equal to 1"),
    ({"schema_version": 0}, "schema_version", "not supported"),
    ({"extra": 1}, "extra", "Extra inputs"),
])
def test_policy_table_validation_errors_name_the_field(change, field, needle):
    with pytest.raises(PolicyTableError) as e:
        validate_table(table_dict(**change), "t.json")
    msg = str(e.value)
    assert msg.startswith("policy table t.json: field ") and f"'{field}'" in msg
    assert needle in msg and "\n" not in msg


def test_policy_table_entry_errors(tmp_path):
    d = table_dict()
    d["policy"]["2"]["4"] = {"strategy": "bogus"}
    with pytest.raises(PolicyTableError, match=r"'policy.2.4.strategy': unknown strategy 'bogus'"):
        validate_table(d, "t")
    d["policy"]["2"]["4"] = {"strategy": "compute-optimal"}
    with pytest.raises(PolicyTableError, match="cannot be compute-optimal itself"):
        validate_table(d, "t")
    d = table_dict()
    del d["policy"]["3"]["4"]
    with pytest.raises(PolicyTableError, match=r"t: field 'policy.3': lacks budget\(s\) 4"):
        validate_table(d, "t")
    with pytest.raises(PolicyTableError, match="newer than this ttscale"):
        validate_table(table_dict(schema_version=2), "t")
    with pytest.raises(PolicyTableError, match=r"t: expected a JSON object, got list"):
        validate_table([], "t")
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1,\n "task": }')
    with pytest.raises(PolicyTableError, match=r"bad.json line 2: invalid JSON"):
        load_table(bad)
    with pytest.raises(PolicyTableError, match="not found; build one with `ttscale optimal"):
        load_table(tmp_path / "none.json")


# ---- FLOPs-matched arithmetic ----------------------------------------------------------------


def test_flops_formulas_on_hand_computed_values():
    assert pretraining_flops(1e6, 1e9) == 6e15 and inference_flops(1e6, 1e3) == 2e9
    # M = 14: X = 14 + 3 * 13 / R
    assert token_multiplier(14, 0.16) == pytest.approx(14 + 39 / 0.16)  # 257.75
    assert token_multiplier(14, 0.79) == pytest.approx(63.367, abs=1e-3)
    assert token_multiplier(14, 22) == pytest.approx(15.7727, abs=1e-4)
    assert token_multiplier(1, 0.5) == 1.0  # same model: same tokens
    # the definition: equal total FLOPs
    n, m, d_pre, r = 3e6, 14.0, 1e9, 0.79
    d_inf = r * d_pre
    x = token_multiplier(m, r)
    large = pretraining_flops(m * n, d_pre) + inference_flops(m * n, d_inf)
    small = pretraining_flops(n, d_pre) + inference_flops(n, x * d_inf)
    assert small == pytest.approx(large)
    # the allowance: the large model's 1000 inference FLOPs buy the small one (X / M) x 1000
    assert small_allowance(1000.0, 14, 22) == pytest.approx(1000 * 15.7727 / 14, rel=1e-4)
    with pytest.raises(ValueError, match="M=0.5"):
        token_multiplier(0.5, 1)
    with pytest.raises(ValueError, match="must be > 0"):
        token_multiplier(2, 0)
    c = Cost(prompt_tokens=30, prompt_tokens_cached=10, generated_tokens=30, policy_flops=2000)
    assert params_from_cost(c) == 20.0  # 2000 / (2 * 50)
    assert params_from_cost(Cost()) is None


def test_flops_matched_comparison_on_a_hand_built_case():
    # bin 1: a, b; bin 2: c, d. The large model: 1000 FLOPs per question, right on a and c.
    bins = {"a": 1, "b": 1, "c": 2, "d": 2}
    large_acc = {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0}
    large_flops = {q: 1000.0 for q in bins}

    def o(acc, flops):
        return Outcome(dict(acc), {q: 1.0 for q in acc}, dict(flops), dict(bins),
                       {q: "s" for q in acc})

    outcomes = {1: o({"a": 1, "b": 0, "c": 0, "d": 0}, {q: 100.0 for q in bins}),
                4: o({"a": 1, "b": 1, "c": 1, "d": 0}, {"a": 500.0, "b": 500.0,
                                                        "c": 3000.0, "d": 3000.0})}
    # M = 2, R = 3: X = 2 + 3 / 3 = 3, allowance = 1000 * 3 / 2 = 1500 FLOPs per question
    rows = {(r["R"], r["bin"]): r for r in compare(outcomes, large_acc, large_flops, bins, 2.0,
                                                    [3.0])}
    b1, b2, everything = rows[(3.0, "1")], rows[(3.0, "2")], rows[(3.0, "all")]
    assert b1["multiplier_X"] == pytest.approx(3.0) and b1["allowance_flops"] == 1500.0
    # bin 1: N=4 costs 500 <= 1500: small 1.0 vs large 0.5, and N=4 is the last budget
    assert (b1["small_budget"], b1["small_accuracy"], b1["large_accuracy"]) == (4, 1.0, 0.5)
    assert b1["winner"] == "small+test-time" and b1["delta"] == 0.5 and b1["capped"]
    # bin 2: N=4 costs 3000 > 1500, so N=1: small 0.0 vs large 0.5
    assert (b2["small_budget"], b2["small_accuracy"], b2["winner"]) == (1, 0.0, "large")
    assert b2["delta"] == -0.5
    # all: mean FLOPs at N=4 = 1750 > 1500: N=1, 0.25 vs 0.5
    assert (everything["small_budget"], everything["small_accuracy"]) == (1, 0.25)
    assert everything["n"] == 4
    # nothing fits: the large model wins by default
    tight = compare(outcomes, large_acc, {q: 10.0 for q in bins}, bins, 2.0, [3.0])
    assert all(r["small_budget"] is None and r["winner"] == "large" for r in tight)
