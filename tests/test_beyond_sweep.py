"""Sweeps, plots and the report with the issue-12 strategies (deterministic fakes): adaptive
strategies sit at their mean realised cost, overall and per bin; particle filtering and
confidence voting are ordinary per-budget curves."""

from __future__ import annotations

import pytest
from fakes import FakeGenerator, FakeScorer

from ttscale.analysis.cli import build_sweep_config
from ttscale.analysis.plan import parse_strategies
from ttscale.analysis.sweep import Parts, sweep
from ttscale.report import plots
from ttscale.report.beyond import beyond_section

NAMES = "majority,weighted-best-of-n,particle-filtering,confidence-vote,adaptive,adaptive-prm"


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    cfg, plan = build_sweep_config("testbed", NAMES, "2,8", limit=10, seed=3, out=str(out),
                                   sets=["task_options.min_ops=2", "task_options.max_ops=5"])
    parts = Parts(cfg, "fake-policy", "fake-prm", generator=FakeGenerator(0.8),
                  scorer=FakeScorer(noise=0.05))
    return sweep(cfg, plan, progress=False, parts=parts)


def test_plan_knows_the_new_strategies():
    got = {s.name: s for s in parse_strategies(NAMES)}
    assert got["adaptive"].adaptive_cost and got["adaptive-prm"].adaptive_cost
    assert not got["particle-filtering"].adaptive_cost
    assert not got["adaptive"].needs_verifier and got["adaptive-prm"].needs_verifier
    assert got["particle-filtering"].skip_reason(3, {}) is None  # any N


def test_adaptive_points_sit_at_their_realised_cost(summary):
    for name in ("adaptive", "adaptive-prm"):
        for n in ("2", "8"):
            e = summary["results"][name][n]
            assert e["adaptive_cost"] and 0 < e["cost"]["generations"] <= int(n)
            by_bin = e["generations_by_bin"]["oracle"]
            assert by_bin and all(0 < v <= int(n) for v in by_bin.values())
        xs, _ = plots._series(summary, name, lambda e: e["accuracy"])
        assert xs == [summary["results"][name][n]["cost"]["generations"] for n in ("2", "8")]
        lb = next(iter(summary["bins"]["oracle"]))
        xs_bin, _ = plots._series(summary, name, lambda e, lb=lb: e["accuracy_by_bin"]["oracle"]
                                  .get(lb), ("oracle", lb))
        assert xs_bin == [summary["results"][name][n]["generations_by_bin"]["oracle"][lb]
                          for n in ("2", "8")]
    # fixed-budget curves stay at N
    xs, _ = plots._series(summary, "particle-filtering", lambda e: e["accuracy"])
    assert xs == [2.0, 8.0]
    assert summary["results"]["particle-filtering"]["8"]["cost"]["generations"] == 8


def test_report_explains_the_new_strategies(summary):
    html = beyond_section(summary)
    for name in ("particle-filtering", "confidence-vote", "adaptive", "adaptive-prm"):
        assert f"<b>{name}</b>" in html
    assert "realised cost" in html and "gens bin 1" in html
    assert beyond_section({**summary, "strategies": ["majority"]}) == ""
