"""`ttscale optimal` and `ttscale optimal flops` on a sweep of the fakes: per-question tables
agree with the sweep summary, the probe is charged, the table it writes loads and drives the
strategy, the report gains its two sections, the large model's run resumes, and every bad input
is one line on stderr.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli
from fakes import FakeGenerator, FakeScorer

from ttscale.analysis.cli import build_sweep_config
from ttscale.analysis.curves import scale_pool_cost
from ttscale.analysis.sweep import Parts, sweep
from ttscale.optimal.cli import flops_matched
from ttscale.optimal.data import load_sweep
from ttscale.report.html import build_report, flops_section, optimal_section
from ttscale.strategies.policy_table import load_table

SETS = ["max_step_tokens=16", "max_rounds=12", "max_solution_tokens=32"]


def _make_sweep(out: Path, strategies: str, budgets: str, limit: int) -> Path:
    cfg, plan = build_sweep_config("testbed", strategies, budgets, limit=limit, seed=0,
                                   out=str(out), sets=SETS)
    parts = Parts(cfg, "fake-policy", "fake-prm" if plan.needs_verifier else None,
                  generator=FakeGenerator(accuracy=lambda k: 0.93 ** (2 * k)),
                  scorer=FakeScorer(noise=0.3) if plan.needs_verifier else None)
    sweep(cfg, plan, progress=False, parts=parts)
    return out


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    return _make_sweep(tmp_path_factory.mktemp("osweep"),
                       "majority,best-of-n,weighted-best-of-n,beam-m4,dvts", "1,4,16", 20)


def test_per_question_tables_agree_with_the_sweep_summary(sweep_dir):
    data = load_sweep(sweep_dir)
    summary = data.summary
    agg = summary["aggregation"]
    for name, label in (("majority", "majority"), ("best-of-n", f"best-of-n/{agg}"),
                        ("weighted-best-of-n", f"weighted-best-of-n/{agg}"),
                        ("beam-m4", "beam-m4"), ("dvts", "dvts")):
        for b, entry in summary["results"][name].items():
            pt = data.points[(label, int(b))]
            assert sum(pt.acc.values()) / len(pt.acc) == pytest.approx(entry["accuracy"])
            assert sum(pt.flops.values()) / len(pt.flops) == pytest.approx(
                entry["cost"]["total_flops"])
    assert data.points[("beam-m4", 4)].options["beam_width"] == 4
    assert data.arms["dvts"].strategy == "dvts" and data.arms["beam-m4"].strategy == "beam"
    # every aggregation is an arm of its own, read off the same pool
    assert {f"weighted-best-of-n/{h}" for h in ("last", "min", "prod", "mean")} <= set(data.arms)
    assert data.pass1 == {q["id"]: q["pass1"] for q in summary["questions"]}


def test_charged_points_add_the_probe_and_subtract_what_is_reused(sweep_dir):
    data = load_sweep(sweep_dir)
    k = 4
    charged = data.charged_points(k)
    probe = data.probe_flops(k)
    q = data.ids[0]
    pool = data.pool_cost[q]
    # majority at N=1 reuses 1 probe sample: it costs just the probe (4 generations)
    assert charged[("majority", 1)].gens[q] == 4
    assert charged[("majority", 1)].flops[q] == pytest.approx(probe[q])
    assert probe[q] == pytest.approx(scale_pool_cost(pool, 4, 16, True).total_flops)
    # weighted best-of-N at 16 reuses all 4: 16 generations, the 16 samples + PRM scoring
    w = charged[("weighted-best-of-n/last", 16)]
    assert w.gens[q] == 16 and w.flops[q] == pytest.approx(pool.total_flops)
    # beam at 4 reuses nothing: its own cost + the probe
    b = charged[("beam-m4", 4)]
    assert b.gens[q] == 8
    assert b.flops[q] == pytest.approx(data.points[("beam-m4", 4)].flops[q] + probe[q])
    assert b.acc == data.points[("beam-m4", 4)].acc
    # the offline probe is the first k pool samples' mean final-step score
    assert data.probe_scores(k)[q] == pytest.approx(sum(data.final_scores[q][:4]) / 4)
    with pytest.raises(ValueError, match="probe size k=17 must be between 1 and the pool"):
        data.probe_scores(17)


def test_optimal_cli_builds_a_table_and_the_analysis(sweep_dir, tmp_path, capsys):
    table_path = tmp_path / "t" / "policy.json"
    code, out, err = run_cli(capsys, ["optimal", "--sweep", str(sweep_dir), "--out",
                                      str(table_path), "--bins", "oracle", "--bootstrap", "25",
                                      "--json"])
    assert code == 0, err
    res = json.loads(out)
    assert res["table"] == str(table_path) and res["table_bins"] == "oracle"
    assert set(res["bins"]) == {"oracle", "predicted"}
    assert any("N=64: not a budget of this sweep" in n for n in res["notes"])
    for per in res["bins"].values():
        assert [p["budget"] for p in per["pooled"]] == [1, 4, 16]
        assert len(per["folds"]) == 2
        assert sum(f["evaluation"] for f in per["folds"]) == 20
        for p in per["pooled"]:  # the probe is charged: at least k=4 generations per question
            assert p["generations"] >= 4 and p["n"] == 20
        m = per["matches"]["16"]
        assert m["target_budget"] == 16 and 0 <= m["baseline_accuracy"] <= 1
        assert m["bootstrap"]["n"] == 25 and 0 <= m["bootstrap"]["reached"] <= 1
        if m["ratio"] is not None:
            assert m["ratio"] == pytest.approx(16 / m["matched_generations"])
        # fold-mean accuracy is the mean of the two folds' curves
        for i, fm in enumerate(per["fold_mean"]):
            f1, f2 = per["folds"][0]["curve"][i], per["folds"][1]["curve"][i]
            assert fm["accuracy"] == pytest.approx((f1["accuracy"] + f2["accuracy"]) / 2)
    assert json.loads((sweep_dir / "optimal.json").read_text())["bins"] == res["bins"]

    table = load_table(table_path)
    assert table.bins.kind == "oracle" and table.budgets == [1, 4, 16]
    assert table.bins.n_bins == 5 and table.probe.k == 4
    labels = {e.label for per in table.policy.values() for e in per.values()}
    assert labels  # every entry names a sweep curve and a registered strategy
    data = load_sweep(sweep_dir)
    for per in table.policy.values():
        for n, e in per.items():
            assert e.label in data.arms and data.arms[e.label].strategy == e.strategy
            assert e.options == data.points[(e.label, int(n))].options

    # the human-readable form names both bin kinds and the files
    code, text, err = run_cli(capsys, ["optimal", "--sweep", str(sweep_dir), "--out",
                                       str(tmp_path / "p2.json"), "--bootstrap", "0"])
    assert code == 0, err
    assert "predicted" in text and "oracle" in text and "p2.json" in text
    assert load_table(tmp_path / "p2.json").bins.kind == "predicted"


def test_report_gains_the_frontier_and_flops_sections(sweep_dir, tmp_path, capsys):
    # without optimal.json / flops.json the page is as before (tests/test_report.py)
    assert optimal_section(None) == "" and flops_section(None) == ""
    code, _, err = run_cli(capsys, ["optimal", "--sweep", str(sweep_dir), "--out",
                                    str(tmp_path / "p.json"), "--bootstrap", "5", "--json"])
    assert code == 0, err
    large = FakeGenerator(accuracy=lambda k: 0.97 ** (2 * k), num_parameters=14000)
    res = flops_matched(load_sweep(sweep_dir), "fake-large", generator=large)
    page = build_report(sweep_dir, dest=tmp_path / "full.html").read_text()
    figure = re.search(r'alt="compute-optimal frontier vs best-of-N" '
                       r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert figure and base64.b64decode(figure.group(1)).startswith(b"\x89PNG")
    assert "id='optimal'" in page and "Compute-optimal vs best-of-N" in page
    assert str(tmp_path / "p.json") in page
    assert "id='flops'" in page and "FLOPs-matched comparison" in page
    assert page.count("<td>22</td>") == len([r for r in res["rows"] if r["R"] == 22])
    (sweep_dir / "flops.json").write_text("{broken")
    with pytest.raises(ValueError, match="flops.json is not valid JSON"):
        build_report(sweep_dir, dest=tmp_path / "x.html")
    (sweep_dir / "flops.json").unlink()


def test_flops_compares_with_the_large_model_and_resumes(sweep_dir):
    data = load_sweep(sweep_dir)
    large = FakeGenerator(accuracy=lambda k: 0.97 ** (2 * k), num_parameters=14000)
    res = flops_matched(data, "fake-large-b", generator=large, r_values=[0.16, 22.0])
    assert res["computed"] == 20 and res["resumed"] == 0
    # M measured from stored FLOPs and tokens: 14000 / 1000 parameters
    assert res["multiplier_M"] == pytest.approx(14.0)
    assert {r["R"] for r in res["rows"]} == {0.16, 22.0}
    bins = {r["bin"] for r in res["rows"]}
    assert bins == {"all", "1", "2", "3", "4", "5"}
    for r in res["rows"]:
        assert r["multiplier_X"] == pytest.approx(14 + 39 / r["R"])
        if r["small_budget"] is not None:
            assert r["small_flops"] <= r["allowance_flops"]
            assert r["delta"] == pytest.approx(r["small_accuracy"] - r["large_accuracy"])
    # at R=0.16 the small model may spend more than at R=22
    a016 = next(r for r in res["rows"] if r["R"] == 0.16 and r["bin"] == "all")
    a22 = next(r for r in res["rows"] if r["R"] == 22.0 and r["bin"] == "all")
    assert a016["allowance_flops"] > a22["allowance_flops"]
    assert (a016["small_budget"] or 0) >= (a22["small_budget"] or 0)
    # rerun: the large model's answers come from the store, no generation
    again = FakeGenerator(accuracy=0.0, num_parameters=14000)
    res2 = flops_matched(data, "fake-large-b", generator=again, r_values=[0.16, 22.0])
    assert res2["resumed"] == 20 and res2["computed"] == 0 and again.calls == []
    assert res2["rows"] == res["rows"]
    # an explicit M overrides the measurement
    res3 = flops_matched(data, "fake-large-b", generator=again, multiplier=2.0,
                         r_values=[1.0])
    assert res3["rows"][0]["multiplier_X"] == pytest.approx(2 + 3 * 1 / 1.0)


def test_flops_cli_on_a_real_tiny_large_model(sweep_dir, tmp_path, capsys, tiny_policy_dir):
    code, out, err = run_cli(capsys, ["optimal", "flops", "--sweep", str(sweep_dir), "--large",
                                      str(tiny_policy_dir), "--multiplier", "14", "--r", "0.79",
                                      "--json", "--no-progress"])
    assert code == 0, err
    res = json.loads(out)
    assert res["large"] == str(tiny_policy_dir) and res["computed"] == 20
    assert [r["bin"] for r in res["rows"]][0] == "all"
    assert all(r["large_flops"] > 0 for r in res["rows"])
    code, text, err = run_cli(capsys, ["optimal", "flops", "--sweep", str(sweep_dir), "--large",
                                       str(tiny_policy_dir), "--multiplier", "14", "--r", "0.79",
                                       "--no-progress"])
    assert code == 0, err
    assert "FLOPs-matched" in text and "flops.json" in text
    (sweep_dir / "flops.json").unlink()


@pytest.mark.parametrize("argv, needle", [
    (["optimal", "--out", "x.json"], "missing --sweep DIR"),
    (["optimal", "--sweep", "SWEEP"], "missing --out TABLE.json"),
    (["optimal", "--sweep", "SWEEP", "--out", "x.json", "--bins", "magic"], "--bins 'magic'"),
    (["optimal", "--sweep", "SWEEP", "--out", "x.json", "--probe-k", "0"], "--probe-k 0"),
    (["optimal", "--sweep", "SWEEP", "--out", "x.json", "--probe-k", "17"],
     "probe size k=17 must be between 1 and the pool size N_max=16"),
    (["optimal", "--sweep", "SWEEP", "--out", "x.json", "--targets", "16,x"],
     "--targets: 'x' is not a number"),
    (["optimal", "--sweep", "SWEEP", "--out", "x.json", "--baseline", "beam"],
     "--baseline 'beam'"),
    (["optimal", "--sweep", "SWEEP", "--out", "TMP"], "is a folder"),
    (["optimal", "--sweep", "TMP/none", "--out", "x.json"], "is not a folder"),
    (["optimal", "--sweep", "TMP", "--out", "x.json"], "no sweep.json in"),
    (["optimal", "flops", "--sweep", "SWEEP", "--r", "0.5,-1"], "--r: '-1' must be > 0"),
    (["optimal", "flops", "--sweep", "SWEEP", "--multiplier", "0.5"], "--multiplier 0.5"),
    (["optimal", "flops", "--sweep", "SWEEP", "--large", "/nonexistent/large"],
     "/nonexistent/large"),
    (["optimal", "flops"], "missing --sweep DIR"),
])
def test_cli_errors_are_one_line(capsys, sweep_dir, tmp_path, argv, needle):
    argv = [a.replace("SWEEP", str(sweep_dir)).replace("TMP", str(tmp_path)) for a in argv]
    argv = [str(tmp_path / a) if a == "x.json" else a for a in argv]
    code, out, err = run_cli(capsys, argv)
    assert out == ""
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "x.json").exists()


def test_a_sweep_without_a_scored_pool_is_refused(tmp_path, capsys):
    out = _make_sweep(tmp_path / "maj", "majority", "1,4", 6)
    code, stdout, err = run_cli(capsys, ["optimal", "--sweep", str(out), "--out",
                                         str(tmp_path / "p.json")])
    assert code == 1 and stdout == ""
    assert "no PRM-scored pool" in err and len(err.strip().splitlines()) == 1
