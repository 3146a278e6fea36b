"""The ``compute-optimal`` strategy on the deterministic fakes: it estimates difficulty with a
probe whose cost is charged to ``difficulty_flops``, looks the bin and budget up in the policy
table, delegates to the chosen strategy with its options, and counts every token exactly once
(also when the probe's samples are reused). One test runs it through ``ttscale run`` on real
tiny transformers models.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from fakes import FakeGenerator, FakeScorer

from ttscale.cli import main
from ttscale.strategies import SearchContext, get_strategy
from ttscale.strategies.policy_table import save_table, validate_table
from ttscale.tasks import testbed
from ttscale.verifiers.base import StepScores

TASK = testbed.TestbedTask(split="test", n=6, min_ops=3, max_ops=5)
# FakeScorer(noise=0): a right step scores 0.9, a wrong one 0.1. Cut points 0.3 / 0.7 make
# three bins: all probe samples right -> mean final score 0.9 -> bin 1; all wrong -> 0.1 -> 3
CUTS = [0.3, 0.7]


class CountingScorer(FakeScorer):
    """FakeScorer that also keeps the tokens of each call."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.call_tokens: list[int] = []

    def score(self, prompts, solutions) -> StepScores:
        res = super().score(prompts, solutions)
        self.call_tokens.append(res.tokens)
        return res


def write_table(tmp_path, easy: dict, hard: dict, k: int = 4, reuse: bool = True,
                budgets=(4, 16), mid: dict | None = None) -> str:
    mid = mid or {"strategy": "majority", "options": {}}
    policy = {"1": {str(b): easy for b in budgets}, "2": {str(b): mid for b in budgets},
              "3": {str(b): hard for b in budgets}}
    t = validate_table({"schema_version": 1, "task": "testbed",
                        "bins": {"kind": "predicted", "thresholds": CUTS},
                        "probe": {"k": k, "reuse": reuse}, "budgets": list(budgets),
                        "policy": policy}, "test")
    return str(save_table(t, tmp_path / "policy.json"))


def make(accuracy: float, table: str, **options):
    gen = FakeGenerator(accuracy=accuracy)
    sc = CountingScorer(noise=0.0)
    ctx = SearchContext(task=TASK, generator=gen, scorer=sc, seed=1, max_step_tokens=16,
                        max_rounds=12, options={"policy_table": table, **options})
    return ctx, gen, sc


def run(ctx, budget, problem=None):
    return get_strategy("compute-optimal")(problem or TASK.problems()[0], budget, ctx)


def assert_counted_once(result, gen, sc):
    """Every token the fakes processed is in the cost exactly once, FLOPs included."""
    c = result.cost
    assert c.generated_tokens == gen.generated_tokens
    assert c.prompt_tokens == gen.prompt_tokens
    assert c.prm_tokens == sc.tokens
    total = 2 * gen.num_parameters * (gen.prompt_tokens + gen.generated_tokens) \
        + 2 * sc.num_parameters * sc.tokens
    assert c.total_flops == pytest.approx(total)


def probe_flops(gen, sc, k, prompt):
    """What the probe (the first engine call and the first verifier call) cost."""
    return (2 * gen.num_parameters * (k * len(prompt) + gen.call_tokens[0])
            + 2 * sc.num_parameters * sc.call_tokens[0])


def test_hard_question_delegates_to_the_tree_search_with_its_options(tmp_path):
    beam = {"strategy": "beam", "options": {"beam_width": 2, "aggregation": "min"},
            "label": "beam-m2"}
    table = write_table(tmp_path, {"strategy": "majority", "options": {}}, beam)
    ctx, gen, sc = make(0.0, table)  # every step wrong: the probe says hardest
    problem = TASK.problems()[0]
    r = run(ctx, 16, problem)
    choice = r.meta["compute_optimal"]
    assert choice["bin"] == 3 and choice["probe_score"] == pytest.approx(0.1)
    assert (choice["strategy"], choice["options"], choice["table_budget"]) == \
        ("beam", {"beam_width": 2, "aggregation": "min"}, 16)
    assert choice["reused_samples"] == 0 and r.meta["delegate_strategy"] == "beam"

    # the delegate's result is exactly beam search's, run alone with the same options and seed
    alone_ctx = SearchContext(task=TASK, generator=FakeGenerator(accuracy=0.0),
                              scorer=FakeScorer(noise=0.0), seed=1, max_step_tokens=16,
                              max_rounds=12, options={"beam_width": 2, "aggregation": "min"})
    alone = get_strategy("beam")(problem, 16, alone_ctx)
    assert r.answer == alone.answer
    assert [asdict(c) for c in r.candidates] == [asdict(c) for c in alone.candidates]
    assert r.trace[1:] == alone.trace and r.trace[0]["nodes"] == []
    assert r.trace[0]["compute_optimal"]["bin"] == 3 and len(r.trace[0]["compute_optimal"]
                                                             ["probe"]) == 4

    # cost: the probe (in difficulty_flops) + beam search, nothing reused
    assert r.cost.difficulty_flops == pytest.approx(probe_flops(gen, sc, 4, problem.prompt))
    assert r.cost.difficulty_flops == choice["difficulty_flops"] > 0
    assert r.cost.generations == 16 + 4
    assert r.cost.policy_flops == pytest.approx(alone.cost.policy_flops)
    assert r.cost.prm_flops == pytest.approx(alone.cost.prm_flops)
    assert_counted_once(r, gen, sc)
    assert ctx.cost.total_flops == pytest.approx(r.cost.total_flops)


def test_easy_question_reuses_the_probe_samples_in_majority_voting(tmp_path):
    table = write_table(tmp_path, {"strategy": "majority", "options": {}},
                        {"strategy": "beam", "options": {}})
    ctx, gen, sc = make(1.0, table)  # every step right: easiest bin
    problem = TASK.problems()[1]
    r = run(ctx, 16, problem)
    choice = r.meta["compute_optimal"]
    assert (choice["bin"], choice["strategy"], choice["reused_samples"]) == (1, "majority", 4)
    assert r.answer == problem.answer and len(r.candidates) == 16
    # two engine calls: the probe's 4, then only the 12 missing samples with their own seed
    (p1, params1), (p2, params2) = gen.calls
    assert (params1.n, params2.n) == (4, 12) and p1 == p2 == [problem.prompt]
    assert params1.seed != params2.seed
    assert r.cost.generations == 16  # max(N, k): the probe's samples are 4 of the 16
    assert r.cost.difficulty_flops == pytest.approx(probe_flops(gen, sc, 4, problem.prompt))
    assert r.cost.prm_flops == 0  # majority scores nothing; the probe's scoring is difficulty
    assert_counted_once(r, gen, sc)
    assert len(sc.calls) == 1


def test_weighted_best_of_n_does_not_rescore_the_probe_solutions(tmp_path):
    wbon = {"strategy": "weighted-best-of-n", "options": {"aggregation": "last"}}
    table = write_table(tmp_path, wbon, wbon, mid=wbon)
    ctx, gen, sc = make(0.6, table)
    for problem in TASK.problems()[:3]:
        c = ctx.fresh()
        gen.calls.clear()
        g0, p0, s0, n0 = gen.generated_tokens, gen.prompt_tokens, sc.tokens, len(sc.calls)
        r = run(c, 16, problem)
        assert r.meta["compute_optimal"]["reused_samples"] == 4 and r.cost.generations == 16
        assert r.cost.generated_tokens == gen.generated_tokens - g0
        assert r.cost.prompt_tokens == gen.prompt_tokens - p0
        assert r.cost.prm_tokens == sc.tokens - s0
        # the second verifier call holds only solutions the probe did not score
        probe_steps = {tuple(x.steps) for x in r.candidates[:4] if x.steps}
        second = sc.call_tokens[n0 + 1] if len(sc.calls) > n0 + 1 else 0
        fresh_steps = {tuple(x.steps) for x in r.candidates[4:] if x.steps} - probe_steps
        assert (second > 0) == bool(fresh_steps)
        assert all(x.scores for x in r.candidates if x.steps)


def test_lookup_takes_the_largest_table_budget_not_above_n(tmp_path):
    beam = {"strategy": "beam", "options": {"beam_width": 4}}
    table = write_table(tmp_path, beam, beam, budgets=(4, 16))
    ctx, gen, sc = make(0.0, table)
    r = run(ctx, 15)  # 15 -> table budget 4
    assert r.meta["compute_optimal"]["table_budget"] == 4 and r.cost.generations == 4 + 4
    # probe paid out of N: at N=16, beam at 16 + 4 probe samples does not fit, 4 + 4 does
    ctx, gen, sc = make(0.0, table, probe_within_budget=True)
    r = run(ctx, 16)
    assert r.meta["compute_optimal"]["table_budget"] == 4 and r.cost.generations <= 16
    with pytest.raises(ValueError, match="N=7 cannot pay for the difficulty probe"):
        run(make(0.0, table, probe_within_budget=True)[0], 7)


def test_reuse_switched_off_samples_everything_anew(tmp_path):
    table = write_table(tmp_path, {"strategy": "majority", "options": {}},
                        {"strategy": "majority", "options": {}}, reuse=False)
    ctx, gen, sc = make(1.0, table)
    r = run(ctx, 16)
    assert r.meta["compute_optimal"]["reused_samples"] == 0
    assert r.cost.generations == 20 and [p.n for _, p in gen.calls] == [4, 16]
    assert_counted_once(r, gen, sc)
    ctx, gen, sc = make(1.0, table, reuse_probe=True, probe_k=2)  # options override the table
    r = run(ctx, 16)
    assert r.meta["compute_optimal"]["reused_samples"] == 2 and r.cost.generations == 16


def test_errors_are_clear(tmp_path):
    table = write_table(tmp_path, {"strategy": "majority", "options": {}},
                        {"strategy": "majority", "options": {}})
    ctx, _, _ = make(1.0, table)
    ctx.options.pop("policy_table")
    with pytest.raises(ValueError, match="needs a policy table: --set options.policy_table="):
        run(ctx, 4)
    with pytest.raises(ValueError, match="policy table .*none.json not found"):
        run(make(1.0, str(tmp_path / "none.json"))[0], 4)
    with pytest.raises(ValueError, match="below the policy table's smallest budget 4"):
        run(make(1.0, table)[0], 2)
    ctx, gen, _ = make(1.0, table)
    ctx.scorer = None
    with pytest.raises(ValueError, match="'compute-optimal' needs a verifier"):
        run(ctx, 4)
    assert gen.calls == []  # nothing sampled before failing
    with pytest.raises(ValueError, match="option reuse_probe='yes'"):
        run(make(1.0, table, reuse_probe="yes")[0], 4)
    with pytest.raises(ValueError, match="option probe_k=0"):
        run(make(1.0, table, probe_k=0)[0], 4)
    assert get_strategy("compute-optimal").needs_verifier is True


def test_ttscale_run_compute_optimal_on_real_tiny_models(tmp_path, capsys, tiny_policy_dir,
                                                         tiny_prm_dir):
    table = write_table(tmp_path, {"strategy": "weighted-best-of-n", "options": {}},
                        {"strategy": "beam", "options": {"beam_width": 2}}, k=2,
                        budgets=(2, 4))
    argv = ["run", "--task", "testbed", "--strategy", "compute-optimal", "--budget", "4",
            "--limit", "2", "--out", str(tmp_path / "o"), "--policy", str(tiny_policy_dir),
            "--prm", str(tiny_prm_dir), "--set", f"options.policy_table={table}",
            "--set", "max_solution_tokens=12", "--set", "max_step_tokens=6",
            "--set", "max_rounds=2", "--json", "--no-progress"]
    code = main(argv)
    cap = capsys.readouterr()
    assert code == 0, cap.err
    s = json.loads(cap.out)
    assert s["strategy"] == "compute-optimal" and s["n_problems"] == 2
    assert s["cost"]["difficulty_flops"] > 0 and s["cost"]["generated_tokens"] > 0
    from ttscale.store.sqlite import Store

    with Store(tmp_path / "o" / "ttscale.db") as store:
        rows = store.results(s["run_key"])
    for row in rows:
        choice = row.meta["compute_optimal"]
        assert choice["bin"] in (1, 2, 3) and choice["table_budget"] == 4
        expect = 4 if choice["strategy"] in ("weighted-best-of-n", "majority") else 6
        assert row.cost.generations == expect
        assert row.cost.difficulty_flops == pytest.approx(choice["difficulty_flops"])


def test_run_key_follows_the_policy_table_content(tmp_path):
    """A rewritten table at the same path must not resume results chosen by the old one."""
    from ttscale.config import RunConfig
    from ttscale.session import run_key

    table = tmp_path / "policy.json"
    table.write_text('{"v": 1}')
    cfg = RunConfig(task="testbed", strategy="compute-optimal", budget=4,
                    options={"policy_table": str(table)})
    before = run_key(cfg, "policy", "prm")
    table.write_text('{"v": 2}')
    assert run_key(cfg, "policy", "prm") != before
