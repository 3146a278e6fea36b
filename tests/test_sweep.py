"""`ttscale sweep`: pool curves against brute force, difficulty bins, resume, the real CLI.

Pool curves are checked against independent brute-force code (all-subsets enumeration where the
estimator is exact, the documented disjoint-subset shuffle elsewhere). Resume is checked by
interrupting a sweep mid-way and by deleting stored results, counting what gets recomputed.
One end-to-end test runs the real CLI on tiny random-init transformers models.
"""

from __future__ import annotations

import itertools
import json
import random
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from cli_helpers import run_cli
from fakes import FakeGenerator, FakeReviser, FakeScorer

from ttscale.analysis import plan as plan_mod
from ttscale.analysis.bins import oracle_bins
from ttscale.analysis.cli import build_sweep_config
from ttscale.analysis.curves import curve, oracle_curve, question_seed, scale_pool_cost
from ttscale.analysis.pools import PoolSample
from ttscale.analysis.sweep import Parts, sweep
from ttscale.types import COST_KEYS, Cost

# ---- brute force, written independently of analysis/ ---------------------------------------


def bf_majority(sub):
    counts = Counter(s.answer for s in sub if s.answer is not None)
    if not counts:
        return None
    top = max(counts.values())
    # tie: the answer whose top-th vote came first
    seen: Counter = Counter()
    for s in sub:
        if s.answer is None:
            continue
        seen[s.answer] += 1
        if seen[s.answer] == top and counts[s.answer] == top:
            return s.answer
    raise AssertionError


def bf_weighted(sub):
    sums: dict = {}
    for s in sub:
        if s.answer is not None:
            sums[s.answer] = sums.get(s.answer, 0.0) + s.score
    if not sums:
        return None
    top = max(sums.values())
    return next(a for a in sums if sums[a] == top)


def bf_best(sub):
    answered = [s for s in sub if s.answer is not None]
    if not answered:
        return None
    top = max(s.score for s in answered)
    return next(s for s in answered if s.score == top).answer


def bf_right(answer, sub):
    return float(any(s.correct and s.answer == answer for s in sub)) if answer else 0.0


BF = {"majority": bf_majority, "weighted": bf_weighted, "answered-argmax": bf_best}


def bf_blocks(pool, n, seed):
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    return [[pool[i] for i in order[j * n:(j + 1) * n]] for j in range(len(pool) // n)]


def bf_curve(pools, n, method, seed):
    out = {}
    for pid, pool in pools.items():
        blocks = bf_blocks(pool, n, question_seed(seed, pid))
        out[pid] = sum(bf_right(BF[method](b), b) for b in blocks) / len(blocks)
    return out


def bf_pass(pool, k):
    combos = list(itertools.combinations(pool, k))
    return sum(any(s.correct for s in c) for c in combos) / len(combos)


S = PoolSample
HAND_POOLS = {
    # right answer "7"; a confident wrong "3" three times; an unanswered top score
    "q1": [S("7", True, .40), S("3", False, .95), S("3", False, .20), S(None, False, .99),
           S("7", True, .10), S("3", False, .50)],
    # a 2-2 vote tie: who wins depends on the order of the subset (the shuffle)
    "q5": [S("7", True, .6), S("3", False, .3), S(None, False, .2), S("3", False, .3),
           S("7", True, .1), S(None, False, .4)],
    # majority wrong, weighted right
    "q2": [S("1", False, .10), S("1", False, .10), S("1", False, .10), S("2", True, .90),
           S("2", True, .80), S("9", False, .30)],
    # never right
    "q3": [S("4", False, .5), S(None, False, .5), S("6", False, .7), S("4", False, .1),
           S("6", False, .2), S("8", False, .3)],
    # always right, one unanswered
    "q4": [S("0", True, .3), S("0", True, .3), S(None, False, .9), S("0", True, .3),
           S("0", True, .2), S("0", True, .6)],
}


@pytest.mark.parametrize("method", ["majority", "weighted", "answered-argmax"])
@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_pool_curves_equal_brute_force_on_a_hand_built_pool(method, n):
    got = curve(HAND_POOLS, n, method, seed=5)
    assert got == pytest.approx(bf_curve(HAND_POOLS, n, method, seed=5))
    if n == 1:  # every sample is its own subset: exactly the mean over samples
        for pid, pool in HAND_POOLS.items():
            assert got[pid] == pytest.approx(sum(bf_right(BF[method]([s]), [s]) for s in pool)
                                             / len(pool))
    if n == 6:  # one subset: the whole pool (decided whatever its order)
        for pid, pool in HAND_POOLS.items():
            if pid == "q5":
                continue
            assert got[pid] == bf_right(BF[method](pool), pool)


def test_hand_built_pool_outcomes_are_the_expected_ones():
    pools = {k: v for k, v in HAND_POOLS.items() if k != "q5"}
    full = {m: curve(pools, 6, m, seed=0) for m in BF}
    assert full["majority"] == {"q1": 0.0, "q2": 0.0, "q3": 0.0, "q4": 1.0}
    assert full["weighted"] == {"q1": 0.0, "q2": 1.0, "q3": 0.0, "q4": 1.0}
    # best-of-N skips the unanswered 0.99 and picks the wrong 0.95
    assert full["answered-argmax"] == {"q1": 0.0, "q2": 1.0, "q3": 0.0, "q4": 1.0}
    # with the whole pool, the 2-2 tie goes to the answer that reached 2 votes first
    for seed in range(6):
        tie = curve({"q5": HAND_POOLS["q5"]}, 6, "majority", seed=seed)["q5"]
        order = bf_blocks(HAND_POOLS["q5"], 6, question_seed(seed, "q5"))[0]
        assert tie == float(bf_majority(order) == "7")


@pytest.mark.parametrize("k", [1, 2, 3, 4, 6])
def test_oracle_is_unbiased_pass_at_k_by_enumeration(k):
    got = oracle_curve(HAND_POOLS, k)
    for pid, pool in HAND_POOLS.items():
        assert got[pid] == pytest.approx(bf_pass(pool, k))


def test_oracle_bins_are_equal_count_quantiles_easiest_first():
    p1 = {f"q{i}": v for i, v in enumerate([0.0, 0.1, 0.5, 0.9, 1.0, 0.3, 0.3, 0.7, 0.2, 0.6])}
    bins = oracle_bins(p1)
    assert Counter(bins.values()) == {1: 2, 2: 2, 3: 2, 4: 2, 5: 2}
    for b in range(1, 5):  # bin 1 easiest (highest pass@1)
        assert min(p1[q] for q in p1 if bins[q] == b) >= max(p1[q] for q in p1 if bins[q] == b + 1)
    assert oracle_bins({"a": 0.5, "b": 0.1}) == {"a": 1, "b": 2}  # fewer questions than bins


def test_pool_cost_scales_with_a_shared_prompt_prefill():
    # cached engine: 16 samples of a 10-token prompt, prefilled once; 50 generated each
    pool = Cost(generations=16, prompt_tokens=160, prompt_tokens_cached=150,
                generated_tokens=800, prm_tokens=1000, policy_flops=2 * 7 * (10 + 800),
                prm_flops=2 * 3 * 1000, wall_s=1.6)
    one = scale_pool_cost(pool, 1, 16, with_prm=True)
    assert (one.generations, one.prompt_tokens, one.prompt_tokens_cached) == (1, 10, 0)
    assert one.generated_tokens == 50 and one.prm_tokens == pytest.approx(62.5)
    assert one.policy_flops == pytest.approx(2 * 7 * (10 + 50))
    four = scale_pool_cost(pool, 4, 16, with_prm=False)
    assert (four.prompt_tokens, four.prompt_tokens_cached) == (40, 30)
    assert four.prm_tokens == 0 and four.prm_flops == 0
    assert four.policy_flops == pytest.approx(2 * 7 * (10 + 200))
    # engine without a prompt cache: every sample prefills
    nocache = Cost(generations=16, prompt_tokens=160, generated_tokens=800,
                   policy_flops=2 * 7 * 960)
    assert scale_pool_cost(nocache, 4, 16, False).policy_flops == pytest.approx(2 * 7 * 240)
    assert scale_pool_cost(pool, 16, 16, True).to_dict() == pytest.approx(
        {**pool.to_dict(), "generations": 16})
    with pytest.raises(ValueError, match="outside"):
        scale_pool_cost(pool, 17, 16, True)


def test_plan_parses_aliases_and_skips_invalid_budgets():
    strategies = plan_mod.parse_strategies("dvts, beam ,majority,beam-m4")
    assert [s.name for s in strategies] == ["majority", "beam-m4", "beam-msqrt", "dvts"]
    plan = plan_mod.SweepPlan(tuple(strategies), tuple(plan_mod.parse_budgets("16,1,4,8")))
    runs, skipped = plan.runs({})
    got = {(s.name, n, s.run_options(n, {}).get("beam_width")) for s, n in runs}
    assert got == {("beam-m4", 4, 4), ("beam-m4", 8, 4), ("beam-m4", 16, 4),
                   ("beam-msqrt", 4, 2), ("beam-msqrt", 16, 4),
                   ("dvts", 4, None), ("dvts", 8, None), ("dvts", 16, None)}
    assert set(skipped["beam-msqrt"]) == {"1", "8"} and set(skipped["dvts"]) == {"1"}
    assert plan.pool_size == 16 and plan.pool_strategy == "weighted-best-of-n"
    only_majority = plan_mod.SweepPlan(tuple(plan_mod.parse_strategies("majority")), (1, 2))
    assert only_majority.pool_strategy == "majority" and not only_majority.needs_verifier


def test_revision_curves_fix_the_chain_length_and_skip_invalid_budgets():
    strategies = plan_mod.parse_strategies("combined,revisions,majority")
    assert [s.name for s in strategies] == ["majority", "revisions-par", "revisions-l4",
                                            "revisions-sqrt", "revisions-seq", "combined"]
    assert not {"revisions", "combined"} & set(plan_mod.DEFAULT_STRATEGIES)
    plan = plan_mod.SweepPlan(tuple(strategies), (1, 2, 4, 8, 9, 16))
    assert plan.uses_reviser and not plan_mod.SweepPlan(tuple(strategies[:1]), (1,)).uses_reviser
    base = {"aggregation": "min", "chain_length": 7}  # a --set chain_length is the curve's own
    runs, skipped = plan.runs(base)
    got = {(s.name, n): s.run_options(n, base)["chain_length"] for s, n in runs
           if s.base == "revisions"}
    assert got == {
        **{("revisions-par", n): 1 for n in (1, 2, 4, 8, 9, 16)},
        **{("revisions-l4", n): 4 for n in (4, 8, 16)},
        **{("revisions-sqrt", n): r for n, r in ((1, 1), (4, 2), (9, 3), (16, 4))},
        **{("revisions-seq", n): n for n in (1, 2, 4, 8, 9, 16)}}
    assert all(s.run_options(n, base)["aggregation"] == "min" for s, n in runs)
    assert set(skipped["revisions-l4"]) == {"1", "2", "9"}
    assert "multiple of the chain length L=4" in skipped["revisions-l4"]["9"]
    assert set(skipped["revisions-sqrt"]) == {"2", "8"}
    assert "square" in skipped["revisions-sqrt"]["8"]
    # combined keeps its own defaults (M=4, half the budget to beam search), and reads a
    # --set chain_length like a `ttscale run` of it would
    assert "chain length L=7" in skipped["combined"]["8"]
    runs, skipped = plan.runs({})
    assert {n for s, n in runs if s.name == "combined"} == {8, 9, 16}
    assert "beam width M=4" in skipped["combined"]["4"]
    with pytest.raises(ValueError, match="revisions-l4 cannot run at N=2"):
        plan_mod.STRATEGIES["revisions-l4"].run_options(2, {})


def test_the_plan_knows_which_curves_load_the_revision_model():
    """The run key follows the spec's ``uses_reviser``; the plan must load the model for the
    same strategies."""
    from ttscale.strategies.registry import get_spec

    for s in plan_mod.STRATEGIES.values():
        assert s.uses_reviser == get_spec(s.base).uses_reviser, s.name


@pytest.mark.parametrize("options", [{}, {"beam_width": 2}, {"search_share": 0.25},
                                     {"beam_width": 2, "chain_length": 3},
                                     {"search_share": 1.0, "beam_width": 3}])
def test_combined_skip_reasons_are_exactly_the_budgets_the_strategy_rejects(options):
    from ttscale.strategies.combined import CombinedOptions

    combined = plan_mod.STRATEGIES["combined"]
    for n in range(1, 41):
        opts = CombinedOptions.model_validate(options)
        try:
            _, n_rev = opts.split(n)
            if n_rev:
                opts.chain_length_for(n_rev)
            runs = True
        except ValueError:
            runs = False
        assert (combined.skip_reason(n, options) is None) == runs, (n, options)
    with pytest.raises(ValueError, match="search_share"):
        combined.skip_reason(8, {"search_share": 2})


# ---- the sweep on fake models ------------------------------------------------------------

LIMIT = 10
SETS = ["max_step_tokens=16", "max_rounds=12"]


def _fake_parts(cfg, gen=None, scorer=None):
    return Parts(cfg, "fake-policy", "fake-prm",
                 generator=gen or FakeGenerator(accuracy=lambda k: 0.95 ** (2 * k)),
                 scorer=scorer or FakeScorer(noise=0.3))


def _config(out: Path, strategies="majority,best-of-n,weighted-best-of-n,beam,dvts",
            budgets="1,4,16", limit=LIMIT):
    return build_sweep_config("testbed", strategies, budgets, limit=limit, seed=3,
                              out=str(out), sets=SETS)


def _stored_pool(db: Path, run_key: str) -> dict[str, list[PoolSample]]:
    conn = sqlite3.connect(db)
    gold = dict(conn.execute("SELECT problem_id, gold FROM results WHERE run_key = ?",
                             (run_key,)).fetchall())
    pools: dict[str, list[PoolSample]] = {}
    for pid, answer, scores in conn.execute(
            "SELECT problem_id, answer, scores FROM samples WHERE run_key = ? "
            "ORDER BY problem_id, sample_idx", (run_key,)):
        s = json.loads(scores)
        pools.setdefault(pid, []).append(
            PoolSample(answer, answer is not None and answer == gold[pid], s[-1] if s else 0.0))
    conn.close()
    return pools


def test_sweep_summary_matches_brute_force_on_the_stored_pool(tmp_path):
    cfg, plan = _config(tmp_path)
    summary = sweep(cfg, plan, progress=False, parts=_fake_parts(cfg))
    assert json.loads((tmp_path / "sweep.json").read_text()) == summary
    assert summary["n_problems"] == LIMIT and summary["budgets"] == [1, 4, 16]
    pools = _stored_pool(tmp_path / "ttscale.db", summary["pool"]["run_key"])
    assert len(pools) == LIMIT and all(len(p) == 16 for p in pools.values())

    pass1 = {pid: sum(s.correct for s in p) / 16 for pid, p in pools.items()}
    bins = oracle_bins(pass1)
    assert {q["id"]: q["oracle_bin"] for q in summary["questions"]} == bins
    for name, method in [("majority", "majority"), ("weighted-best-of-n", "weighted"),
                         ("best-of-n", "answered-argmax")]:
        for n in (1, 4, 16):
            entry = summary["results"][name][str(n)]
            want = bf_curve(pools, n, method, seed=3)
            assert entry["accuracy"] == pytest.approx(sum(want.values()) / LIMIT)
            for b in set(bins.values()):
                in_bin = [want[q] for q in want if bins[q] == b]
                assert entry["accuracy_by_bin"]["oracle"][str(b)] == pytest.approx(
                    sum(in_bin) / len(in_bin))
            assert entry["cost"]["generations"] == n
            assert set(COST_KEYS) <= set(entry["cost"])
    for n in (1, 4, 16):
        want = [bf_pass(p, n) if n < 16 else float(any(s.correct for s in p))
                for p in pools.values()]
        assert summary["results"]["oracle"][str(n)]["accuracy"] == pytest.approx(
            sum(want) / LIMIT)
    # majority needs no PRM: its cost has none; weighted pays for the scores
    assert summary["results"]["majority"]["4"]["cost"]["prm_tokens"] == 0
    assert summary["results"]["weighted-best-of-n"]["4"]["cost"]["prm_tokens"] > 0
    # tree searches: one stored run per valid budget, accuracy = mean of stored grades
    conn = sqlite3.connect(tmp_path / "ttscale.db")
    for name in ("beam-m4", "beam-msqrt", "dvts"):
        assert set(summary["results"][name]) == {"4", "16"}
        assert set(summary["skipped"][name]) == {"1"}
        for n in ("4", "16"):
            e = summary["results"][name][n]
            rows = conn.execute("SELECT correct, difficulty FROM results WHERE run_key = ?",
                                (e["run_key"],)).fetchall()
            assert len(rows) == LIMIT and e["computed"] + e["resumed"] == LIMIT
            assert e["accuracy"] == pytest.approx(sum(r[0] for r in rows) / LIMIT)
            by_ops: dict = {}
            for ok, d in rows:
                by_ops.setdefault(str(d), []).append(ok)
            assert e["accuracy_by_bin"]["difficulty"] == pytest.approx(
                {k: sum(v) / len(v) for k, v in by_ops.items()})
    conn.close()
    # beam-msqrt at 16 is M=4: the very run beam-m4 made, found in the store
    assert summary["results"]["beam-msqrt"]["16"]["run_key"] == \
        summary["results"]["beam-m4"]["16"]["run_key"]
    assert summary["results"]["beam-msqrt"]["16"]["computed"] == 0
    assert summary["results"]["beam-msqrt"]["4"]["options"]["beam_width"] == 2
    assert summary["bins"]["difficulty"] and summary["difficulty_name"] == "number of operations"
    assert summary["pool"]["within_question_auc"] is not None


def _comparable(db: Path) -> dict:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT run_key, problem_id, answer, correct, candidates, trace, cost "
                        "FROM results").fetchall()
    conn.close()
    out = {}
    for key, pid, answer, correct, cands, trace, cost in rows:
        cost = {k: v for k, v in json.loads(cost).items() if k != "wall_s"}
        out[(key, pid)] = (answer, correct, json.loads(cands), json.loads(trace), cost)
    return out


def _without_times(summary: dict) -> dict:
    """A summary minus what legitimately differs between runs: timings, resume counts, paths."""
    s = json.loads(json.dumps(summary))
    for k in ("seconds", "db", "out"):
        s.pop(k, None)
    for k in ("resumed", "computed"):
        s["pool"].pop(k, None)
    for per in s["results"].values():
        for e in per.values():
            e["cost"].pop("wall_s", None)
            for k in ("resumed", "computed"):
                e.pop(k, None)
    s["config"].pop("out", None)
    return s


class Interrupt(BaseException):
    pass


def test_interrupted_sweep_resumes_without_recomputing(tmp_path):
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    cfg, plan = _config(full_dir)
    full = sweep(cfg, plan, progress=False, parts=_fake_parts(cfg))

    # interrupt the second sweep inside its beam-m4 N=16 run, after 4 problems
    cfg2, plan2 = _config(cut_dir)
    gen, scorer = FakeGenerator(accuracy=lambda k: 0.95 ** (2 * k)), FakeScorer(noise=0.3)
    import dataclasses

    from ttscale.strategies.registry import STRATEGIES

    inner = STRATEGIES["beam"]
    calls: list[tuple[str, int, int]] = []  # (problem, N, M)
    armed = [True]

    def flaky(problem, budget, ctx):
        if armed[0] and budget == 16 and len([c for c in calls if c[1] == 16]) == 4:
            armed[0] = False
            raise Interrupt
        calls.append((problem.id, budget, ctx.options.beam_width))
        return inner(problem, budget, ctx)

    STRATEGIES["beam"] = dataclasses.replace(inner, fn=flaky)
    try:
        with pytest.raises(Interrupt):
            sweep(cfg2, plan2, progress=False, parts=_fake_parts(cfg2, gen, scorer))
        assert not (cut_dir / "sweep.json").exists()
        done_before = set(calls)
        calls.clear()
        resumed = sweep(cfg2, plan2, progress=False, parts=_fake_parts(cfg2, gen, scorer))
    finally:
        STRATEGIES["beam"] = inner
    # nothing stored was recomputed: beam-m4 N=4 (done) and the first 4 of N=16 are not
    # called again; beam-msqrt (M=2 at N=4) runs for the first time, its N=16 is beam-m4's
    assert not set(calls) & done_before
    assert len([c for c in calls if c[1:] == (16, 4)]) == LIMIT - 4
    assert [c for c in calls if c[1:] == (4, 4)] == []
    assert len([c for c in calls if c[1:] == (4, 2)]) == LIMIT
    assert resumed["pool"]["computed"] == 0 and resumed["pool"]["resumed"] == LIMIT
    e = resumed["results"]["beam-m4"]["16"]
    assert (e["resumed"], e["computed"]) == (4, LIMIT - 4)
    # and the results equal an uninterrupted sweep's
    assert _comparable(cut_dir / "ttscale.db") == _comparable(full_dir / "ttscale.db")
    assert _without_times(resumed) == _without_times(full)


def test_partial_store_is_completed_and_a_finished_sweep_loads_no_model(tmp_path):
    cfg, plan = _config(tmp_path, strategies="majority,weighted-best-of-n,dvts", budgets="1,4")
    first = sweep(cfg, plan, progress=False, parts=_fake_parts(cfg))
    db = tmp_path / "ttscale.db"
    before = _comparable(db)
    # simulate a store left by a killed sweep: drop 3 pool problems and 2 dvts problems
    conn = sqlite3.connect(db)
    pool_key, dvts_key = first["pool"]["run_key"], first["results"]["dvts"]["4"]["run_key"]
    for key, k in ((pool_key, 3), (dvts_key, 2)):
        ids = [r[0] for r in conn.execute(
            "SELECT problem_id FROM results WHERE run_key = ? ORDER BY idx DESC LIMIT ?",
            (key, k))]
        for pid in ids:
            conn.execute("DELETE FROM results WHERE run_key = ? AND problem_id = ?", (key, pid))
            conn.execute("DELETE FROM samples WHERE run_key = ? AND problem_id = ?", (key, pid))
    conn.commit()
    conn.close()
    gen = FakeGenerator(accuracy=lambda k: 0.95 ** (2 * k))
    again = sweep(cfg, plan, progress=False, parts=_fake_parts(cfg, gen))
    assert (again["pool"]["resumed"], again["pool"]["computed"]) == (LIMIT - 3, 3)
    assert again["results"]["dvts"]["4"]["computed"] == 2
    assert _comparable(db) == before
    assert _without_times(again) == _without_times(first)

    class Unloadable:
        def __getattr__(self, name):
            raise AssertionError("a finished sweep must not touch the models")

    third = sweep(cfg, plan, progress=False,
                  parts=Parts(cfg, "fake-policy", "fake-prm", generator=Unloadable(),
                              scorer=Unloadable()))
    assert third["pool"]["computed"] == 0
    assert _without_times(third) == _without_times(first)


def test_revision_curves_get_the_revision_model_and_only_they_key_it(tmp_path):
    from ttscale.session import run_key

    cfg, plan = _config(tmp_path, strategies="majority,beam-m4,revisions-par,revisions-seq",
                        budgets="1,4", limit=4)
    reviser = FakeReviser(accuracy=0.5, gain=0.2)
    parts = Parts(cfg, "fake-policy", "fake-prm", revision="fake-revision",
                  generator=FakeGenerator(accuracy=0.6), scorer=FakeScorer(noise=0.3),
                  reviser=reviser)
    summary = sweep(cfg, plan, progress=False, parts=parts)
    results = summary["results"]
    beam = cfg.model_copy(update={"strategy": "beam", "budget": 4,
                                  "options": {"beam_width": 4}})
    assert results["beam-m4"]["4"]["run_key"] == run_key(beam, "fake-policy", "fake-prm")
    for name, n, length in [("revisions-par", 4, 1), ("revisions-seq", 4, 4),
                            ("revisions-par", 1, 1)]:
        e = results[name][str(n)]
        assert e["options"]["chain_length"] == length
        rev = cfg.model_copy(update={"strategy": "revisions", "budget": n,
                                     "options": {"chain_length": length}})
        assert e["run_key"] == run_key(rev, "fake-policy", "fake-prm", "fake-revision")
        assert e["run_key"] != run_key(rev, "fake-policy", "fake-prm")
        assert set(e["accuracy_by_bin"]) == {"oracle", "difficulty"}
    # at N=1 every ratio is the same single attempt: one run, stored once
    assert results["revisions-seq"]["1"]["run_key"] == results["revisions-par"]["1"]["run_key"]
    assert results["revisions-seq"]["1"]["computed"] == 0
    assert reviser.calls and summary["revision_resolved"] == "fake-revision"
    # compute-optimal arms: a revision curve replays with the chain length it was measured at,
    # and the policy table names the revision model
    from ttscale.optimal.analysis import build_table
    from ttscale.optimal.data import load_sweep

    data = load_sweep(tmp_path)
    assert data.arms["revisions-seq"].strategy == "revisions"
    assert data.points[("revisions-seq", 4)].options == {"chain_length": 4}
    assert data.points[("revisions-par", 4)].options == {"chain_length": 1}
    table = build_table(data, "oracle")
    assert table.models["revision"] == "fake-revision"
    for per in table.policy.values():
        for n, entry in per.items():
            if entry.strategy == "revisions":
                length = {"revisions-par": 1, "revisions-seq": int(n)}[entry.label]
                assert entry.options == {"chain_length": length}


def test_a_majority_only_sweep_needs_no_prm(tmp_path):
    cfg, plan = _config(tmp_path, strategies="majority", budgets="1,2,4")
    summary = sweep(cfg, plan, progress=False,
                    parts=Parts(cfg, "fake-policy", None, generator=FakeGenerator(0.7)))
    assert summary["pool"]["strategy"] == "majority"
    assert summary["pool"]["within_question_auc"] is None
    assert summary["strategies"] == ["oracle", "majority"]


# ---- CLI ---------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, needle", [
    (["sweep", "--task", "testbed", "--strategies", "majority,bogus"], "unknown strategy 'bogus'"),
    (["sweep", "--task", "testbed", "--budgets", "1,0"], "--budgets: '0'"),
    (["sweep", "--task", "testbed", "--budgets", "4,x"], "--budgets: 'x'"),
    (["sweep", "--task", "testbed", "--budgets", ","], "at least one budget"),
    (["sweep", "--task", "testbed", "--set", "budget=4"], "use --budgets"),
    (["sweep", "--task", "testbed", "--set", "strategy=beam"], "use --strategies"),
    (["sweep", "--task", "testbed", "--set", "bogus=1"], "unknown config key 'bogus'"),
    (["sweep", "--task", "testbed", "--strategies", "dvts",
      "--set", "options.beam_width=0"], "beam_width=0"),
    (["sweep", "--task", "testbed", "--strategies", "combined",
      "--set", "options.search_share=2"], "search_share=2"),
    (["sweep", "--strategies", "majority"], "missing required config key 'task'"),
    (["sweep", "--task", "nope.jsonl"], "task file not found: nope.jsonl"),
    (["sweep", "--task", "testbed", "--policy", "/nonexistent/policy"], "/nonexistent/policy"),
])
def test_cli_errors_are_one_line(capsys, tmp_path, argv, needle):
    code, out, err = run_cli(capsys, [*argv, "--out", str(tmp_path / "o"), "--no-progress"])
    assert code != 0 and out == ""
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0]
    assert not (tmp_path / "o" / "sweep.json").exists()


def test_cli_sweep_on_real_tiny_models(capsys, tmp_path, tiny_policy_dir, tiny_prm_dir):
    out = tmp_path / "sw"
    argv = ["sweep", "--task", "testbed", "--strategies", "majority,weighted-best-of-n,beam-m4",
            "--budgets", "1,4", "--limit", "3", "--seed", "1", "--out", str(out),
            "--policy", str(tiny_policy_dir), "--prm", str(tiny_prm_dir),
            "--set", "max_solution_tokens=16", "--set", "max_step_tokens=6",
            "--set", "max_rounds=3", "--json", "--no-progress"]
    code, stdout, err = run_cli(capsys, argv)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary == json.loads((out / "sweep.json").read_text())
    assert summary["strategies"] == ["oracle", "majority", "weighted-best-of-n", "beam-m4"]
    assert set(summary["results"]["beam-m4"]) == {"4"}
    for per in summary["results"].values():
        for e in per.values():
            assert 0.0 <= e["accuracy"] <= 1.0 and e["n_problems"] == 3
            assert e["cost"]["generated_tokens"] > 0
    assert summary["results"]["beam-m4"]["4"]["cost"]["prm_tokens"] > 0
    # a rerun resumes everything and prints the same numbers
    code, stdout2, err = run_cli(capsys, argv)
    assert code == 0, err
    again = json.loads(stdout2)
    assert again["pool"]["computed"] == 0 and again["results"]["beam-m4"]["4"]["computed"] == 0
    assert _without_times(again) == _without_times(summary)
    # the table form names every strategy and the summary file
    code, text, err = run_cli(capsys, argv[:-2] + ["--no-progress"])
    assert code == 0 and "beam-m4" in text and "sweep.json" in text


def test_cli_revision_sweep_on_the_shipped_testbed_models(capsys, tmp_path):
    """The shipped policy, PRM and revision model (the default on the testbed): the revision
    curves are stored runs with their chain length, summarised per budget and bin."""
    from ttscale.shipped import resolve_model
    from ttscale.store.sqlite import Store

    pytest.importorskip("torch").set_num_threads(1)  # tiny models: one thread is fastest
    out = tmp_path / "sw"
    argv = ["sweep", "--task", "testbed", "--strategies",
            "weighted-best-of-n,revisions-par,revisions-seq", "--budgets", "1,4", "--limit", "3",
            "--seed", "1", "--out", str(out), "--json", "--no-progress"]
    code, stdout, err = run_cli(capsys, argv)
    assert code == 0, err
    summary = json.loads(stdout)
    shipped = resolve_model("testbed:revision", "revision")
    assert summary["revision_resolved"] == shipped
    assert summary["strategies"][-2:] == ["revisions-par", "revisions-seq"]
    with Store.in_dir(out) as store:
        assert store.run_config(summary["pool"]["run_key"])["revision_resolved"] is None
        for name, n, length in [("revisions-par", 1, 1), ("revisions-par", 4, 1),
                                ("revisions-seq", 1, 1), ("revisions-seq", 4, 4)]:
            e = summary["results"][name][str(n)]
            assert e["options"]["chain_length"] == length and e["n_problems"] == 3
            config = store.run_config(e["run_key"])
            assert config["strategy"] == "revisions" and config["budget"] == n
            assert config["options"]["chain_length"] == length
            assert config["revision_resolved"] == shipped
            rows = store.results(e["run_key"])
            assert len(rows) == 3
            assert {(r.meta["chain_length"], r.meta["n_chains"]) for r in rows} == {
                (length, n // length)}
            assert e["accuracy"] == pytest.approx(sum(bool(r.correct) for r in rows) / 3)
            assert set(e["accuracy_by_bin"]) == {"oracle", "difficulty"}
            for bins in e["accuracy_by_bin"].values():
                assert bins and all(0.0 <= v <= 1.0 for v in bins.values())
            assert e["cost"]["generations"] == n and e["cost"]["prm_tokens"] > 0
    assert summary["skipped"] == {}


def test_a_pool_stored_without_sample_grades_is_graded_on_read(tmp_path):
    """A pool written by `ttscale run --strategy weighted-best-of-n --budget N_max` has no
    per-sample grade: the sweep grades its answers itself and gets the same numbers."""
    cfg, plan = _config(tmp_path, strategies="majority,weighted-best-of-n", budgets="1,4")
    first = sweep(cfg, plan, progress=False, parts=_fake_parts(cfg))
    conn = sqlite3.connect(tmp_path / "ttscale.db")
    rows = conn.execute("SELECT problem_id, candidates FROM results WHERE run_key = ?",
                        (first["pool"]["run_key"],)).fetchall()
    n_graded = 0
    for pid, cands in rows:
        cands = json.loads(cands)
        for c in cands:
            n_graded += c["meta"].pop("correct") is not None
        conn.execute("UPDATE results SET candidates = ? WHERE run_key = ? AND problem_id = ?",
                     (json.dumps(cands), first["pool"]["run_key"], pid))
    conn.commit()
    conn.close()
    assert n_graded == 4 * LIMIT
    again = sweep(cfg, plan, progress=False, parts=_fake_parts(cfg))
    assert again["pool"]["computed"] == 0
    assert _without_times(again) == _without_times(first)


def test_pool_curves_vote_exactly_as_ttscale_run_on_the_same_samples(tmp_path):
    """One voting module: the sweep's majority / best-of-N / weighted best-of-N read off the pool
    answer as `ttscale run` of those strategies does on the same samples (common random
    numbers: the pool is the weighted-best-of-n run at N_max)."""
    from ttscale.analysis.pools import best_answered, majority_answer, weighted_answer
    from ttscale.runner import run
    from ttscale.store.sqlite import Store

    n = 8
    cfg, plan = _config(tmp_path, "majority,best-of-n,weighted-best-of-n", str(n), limit=10)
    gen, scorer = FakeGenerator(accuracy=lambda k: 0.9 ** (2 * k)), FakeScorer(noise=0.3)
    summary = sweep(cfg, plan, progress=False, parts=_fake_parts(cfg, gen, scorer))
    with Store.in_dir(tmp_path) as store:
        pool = {r.problem_id: r for r in store.results(summary["pool"]["run_key"])}
    rules = {"majority": lambda s: majority_answer(s),
             "weighted-best-of-n": lambda s: weighted_answer(s),
             "best-of-n": lambda s: (lambda b: None if b is None else b.answer)(
                 best_answered(s))}
    ties = 0
    for name, rule in rules.items():
        rcfg = cfg.model_copy(update={"strategy": name, "budget": n, "out": str(tmp_path / name),
                                      "options": {}})
        result = run(rcfg, progress=False, generator=gen, scorer=scorer)
        with Store.in_dir(tmp_path / name) as store:
            rows = store.results(result.run_key)
        assert len(rows) == len(pool) == 10
        for r in rows:
            samples = [PoolSample(c.answer, False, c.scores[-1] if c.scores else 0.0)
                       for c in pool[r.problem_id].candidates]
            assert [c.answer for c in r.candidates] == [s.answer for s in samples]
            assert rule(samples) == r.answer, (name, r.problem_id)
        curve_acc = summary["results"][name][str(n)]["accuracy"]
        if name == "majority":  # the curve shuffles the pool: a vote tie may break otherwise
            counts = [sorted(Counter(c.answer for c in pool[p].candidates
                                     if c.answer is not None).values())[-2:] for p in pool]
            ties = sum(len(c) == 2 and c[0] == c[1] for c in counts)
            if ties:
                continue
        assert curve_acc == pytest.approx(result.accuracy), name
    assert ties < len(pool)
