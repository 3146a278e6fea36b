"""`ttscale flips`: the flip analysis of stored revisions/combined runs, from the CLI.

The runs are real: the revisions and combined strategies run through the runner on the shipped
testbed models (policy, PRM and the revision model, the testbed default) into a tmp store. The
CLI's numbers must be exactly ``revision_flips`` over the stored results, computed directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli

from ttscale.analysis.revisions import (
    by_difficulty_label,
    caching_grader,
    records_from_results,
    revision_flips,
)
from ttscale.config import build_config
from ttscale.runner import run
from ttscale.store.sqlite import Store

SMALL = ["max_solution_tokens=40", "max_step_tokens=8", "max_rounds=4"]


def _run_into(out: Path, strategy: str, budget: int, **options: object) -> str:
    flags = {"task": "testbed", "strategy": strategy, "budget": budget, "limit": 3, "seed": 1,
             "out": str(out), **{f"options.{k}": v for k, v in options.items()}}
    return run(build_config(None, flags, SMALL), progress=False).run_key


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """One store with a revisions run (N=4, L=4), a combined run (N=8) and a majority run."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)  # tiny models: more threads only fight over busy cores
    out = tmp_path_factory.mktemp("flips")
    keys = {"revisions": _run_into(out, "revisions", 4, chain_length=4),
            "combined": _run_into(out, "combined", 8),
            "majority": _run_into(out, "majority", 1)}
    return out, keys


def test_json_is_revision_flips_of_the_stored_results(capsys, store_dir):
    out, keys = store_dir
    code, stdout, err = run_cli(capsys, ["flips", str(out), "--json", "--by-difficulty"])
    assert code == 0, err
    report = json.loads(stdout)
    runs = {r["run_key"]: r for r in report["runs"]}
    assert set(runs) == {keys["revisions"], keys["combined"]}  # majority is no revision run
    with Store.in_dir(out) as store:
        stored = {k: store.results(k) for k in runs}
    for key, got in runs.items():
        rows = stored[key]
        want = revision_flips(records_from_results(rows))
        assert {k: got[k] for k in want.to_dict()} == want.to_dict()
        assert got["n_problems"] == 3
        for d, group in by_difficulty_label(rows).items():
            part = revision_flips(records_from_results(group)).to_dict()
            assert got["by_difficulty"][d] == {"n_problems": len(group), **part}
        assert sum(g["n_chains"] for g in got["by_difficulty"].values()) == got["n_chains"]
    rev, comb = runs[keys["revisions"]], runs[keys["combined"]]
    assert (rev["strategy"], rev["chain_length"], rev["chains_per_problem"]) == ("revisions", 4, 1)
    assert rev["n_chains"] == 3 and len(rev["by_position"]) == 3 and not rev["seeded"]
    assert len(rev["accuracy_by_position"]) == 4
    assert rev["overall"]["n"] == 3 * 3
    # combined: N_r = 4 revisions in one chain of L=4 (default), seeded by beam search
    assert (comb["strategy"], comb["chain_length"], comb["seeded"]) == ("combined", 4, True)
    assert len(comb["accuracy_by_position"]) == 5


def test_one_run_by_key_and_the_tables(capsys, store_dir):
    out, keys = store_dir
    code, stdout, err = run_cli(capsys, ["flips", str(out), "--run-key", keys["revisions"],
                                         "--json"])
    assert code == 0, err
    report = json.loads(stdout)
    assert [r["run_key"] for r in report["runs"]] == [keys["revisions"]]
    assert "by_difficulty" not in report["runs"][0]
    code, text, err = run_cli(capsys, ["flips", str(out), "--by-difficulty"])
    assert code == 0, err
    for needle in ("revisions N=4 L=4", "combined N=8", "correct->incorrect", "seed",
                   "difficulty", keys["revisions"], "ttscale.db"):
        assert needle in text


def test_caching_grader_grades_each_pair_once():
    seen: list[list[tuple[str | None, str]]] = []

    def grader(pairs):
        seen.append(list(pairs))
        return [a == g for a, g in pairs]

    grade = caching_grader(grader)
    assert grade([("1", "1"), ("2", "1"), ("1", "1")]) == [True, False, True]
    assert grade([("2", "1"), (None, "1")]) == [False, False]
    assert seen == [[("1", "1"), ("2", "1")], [(None, "1")]]


def test_errors_are_one_line(capsys, store_dir, tmp_path):
    out, keys = store_dir
    code, o, e = run_cli(capsys, ["flips", str(tmp_path / "nope")])
    assert code == 1 and o == ""
    assert_one_line_error(code, e, "is not a folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, o, e = run_cli(capsys, ["flips", str(empty)])
    assert code == 1 and o == ""
    assert_one_line_error(code, e, "no ttscale.db in")
    assert not (empty / "ttscale.db").exists()  # a wrong folder is not turned into a store
    code, o, e = run_cli(capsys, ["flips", str(out), "--run-key", "0123abcd"])
    assert code == 1 and o == ""
    assert_one_line_error(code, e, "no run with key '0123abcd'")
    assert keys["revisions"] in e
    code, o, e = run_cli(capsys, ["flips", str(out), "--run-key", keys["majority"]])
    assert code == 1 and o == ""
    assert_one_line_error(code, e, "is a 'majority' run")
    only_majority = tmp_path / "maj"
    _run_into(only_majority, "majority", 1)
    capsys.readouterr()  # the model loading's progress
    code, o, e = run_cli(capsys, ["flips", str(only_majority), "--json"])
    assert code == 1 and o == ""
    assert_one_line_error(code, e, "no revisions or combined run")
    assert "majority N=1" in e


def test_locality_says_where_a_revision_changed_the_attempt():
    from ttscale.analysis.revision_locality import Locality, chain_locality

    def labels(steps: list[str]) -> list[bool]:  # a step is right when it is upper case
        return [s.isupper() for s in steps]

    chains = [
        [["A", "B"], ["A", "B"], ["A", "C"]],  # right copied, then right changed
        [["x", "B"], ["y", "B"]],  # wrong from its first step
        [["A", "x", "y"], ["A", "B", "C"]],  # right prefix kept, first wrong step changed
        [["A", "B", "x"], ["A", "C", "D"]],  # a right step before the first wrong one changed
        [["A", "x"], ["A", "x", "C"]],  # the wrong step copied
    ]
    loc = chain_locality(chains, labels)
    assert loc == Locality(right_kept=1, right_changed=1, wrong_first_step=1, wrong_before=1,
                           wrong_at=1, wrong_after=1)
    d = loc.to_dict()
    assert d["right_kept_share"] == 0.5
    assert d["local_correction_share"] == d["wrong_before_share"] == pytest.approx(1 / 3)
    assert Locality().to_dict()["local_correction_share"] is None


def test_locality_of_the_stored_runs(capsys, store_dir):
    from ttscale.analysis.revision_locality import chain_locality, result_chains
    from ttscale.tasks.testbed import TestbedTask

    out, keys = store_dir
    code, stdout, err = run_cli(capsys, ["flips", str(out), "--json", "--locality"])
    assert code == 0, err
    runs = {r["run_key"]: r for r in json.loads(stdout)["runs"]}
    task = TestbedTask(split="test", n=3)
    problems = {p.id: p for p in task.problems()}
    with Store.in_dir(out) as store:
        for key in (keys["revisions"], keys["combined"]):
            loc = None
            for row in store.results(key):
                p = problems[row.problem_id]
                loc = chain_locality(result_chains(row.candidates, row.meta),
                                     lambda steps, p=p: list(task.step_labels(p, steps)), loc)
            got = runs[key]["locality"]
            assert {k: got[k] for k in loc.__dict__} == loc.__dict__
            # every revision is counted once
            assert sum(loc.__dict__.values()) == runs[key]["overall"]["n"]
    code, text, err = run_cli(capsys, ["flips", str(out), "--locality"])
    assert code == 0, err
    assert "first wrong step changed (local)" in text


def test_stationary_accuracy_is_where_the_flip_rates_settle():
    from ttscale.analysis.revisions import Transitions

    t = Transitions(correct_to_correct=6, correct_to_incorrect=2, incorrect_to_correct=3,
                    incorrect_to_incorrect=9)
    # broken 2/8 = 0.25, fixed 3/12 = 0.25: a long chain settles at one half
    assert t.stationary_accuracy == pytest.approx(0.5)
    assert t.to_dict()["stationary_accuracy"] == pytest.approx(0.5)
    assert Transitions(correct_to_correct=4).stationary_accuracy is None  # nothing wrong seen
    assert Transitions(correct_to_correct=1, incorrect_to_incorrect=1).stationary_accuracy is None
