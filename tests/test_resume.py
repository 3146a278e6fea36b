"""Kill `ttscale run` mid-way (SIGKILL), rerun it, and check nothing stored was recomputed and the
final results equal those of an uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ttscale.cli import main

N_PROBLEMS = 20

#: runs the real CLI in a child process, with the majority strategy wrapped to log each call and
#: to take a little longer per problem, so the parent can kill it between problems
DRIVER = r"""
import os, sys, time
import torch
torch.set_num_threads(int(os.environ["TTSCALE_TEST_THREADS"]))  # same numerics as the parent
import dataclasses
from ttscale.strategies.registry import STRATEGIES
inner = STRATEGIES["majority"]
def logged(problem, budget, ctx):
    with open(os.environ["TTSCALE_TEST_CALL_LOG"], "a") as f:
        f.write(problem.id + "\n")
    time.sleep(float(os.environ["TTSCALE_TEST_DELAY_S"]))
    return inner(problem, budget, ctx)
STRATEGIES["majority"] = dataclasses.replace(inner, fn=logged)
from ttscale.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _rows(db: Path) -> dict[str, tuple]:
    if not db.exists():
        return {}
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT problem_id, answer, correct, grade_reason, candidates, trace, "
                            "cost, created FROM results").fetchall()
    except sqlite3.OperationalError:  # not created yet
        rows = []
    finally:
        conn.close()
    return {r[0]: r[1:] for r in rows}


def _comparable(row: tuple) -> tuple:
    """Everything of a stored result except timings (wall clock differs between runs)."""
    answer, correct, reason, candidates, trace, cost, _created = row
    cost = {k: v for k, v in json.loads(cost).items() if k != "wall_s"}
    return answer, correct, reason, json.loads(candidates), json.loads(trace), cost


@pytest.mark.slow
def test_kill_and_resume_recomputes_nothing_stored(tmp_path, capsys, monkeypatch,
                                                   tiny_policy_dir):
    policy = tiny_policy_dir  # a real random-init Llama on the testbed tokenizer (conftest.py)
    args = ["run", "--task", "testbed", "--strategy", "majority", "--budget", "2",
            "--limit", str(N_PROBLEMS), "--seed", "7", "--policy", str(policy),
            "--set", "max_solution_tokens=16", "--json", "--no-progress"]
    out_a, out_b = tmp_path / "interrupted", tmp_path / "uninterrupted"
    db_a = out_a / "ttscale.db"
    log = tmp_path / "calls.log"

    import torch

    env = {**os.environ, "TTSCALE_TEST_CALL_LOG": str(log), "TTSCALE_TEST_DELAY_S": "0.15",
           "TTSCALE_TEST_THREADS": str(torch.get_num_threads())}
    child = subprocess.Popen([sys.executable, "-c", DRIVER, *args, "--out", str(out_a)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while len(_rows(db_a)) < 4:
            if child.poll() is not None:
                pytest.fail(f"run ended before it could be killed: {child.stderr.read()!r}")
            assert time.monotonic() < deadline, "no results stored in time"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL

    before = _rows(db_a)
    started = log.read_text().split()
    assert 4 <= len(before) < N_PROBLEMS
    assert set(before) <= set(started)
    assert len(set(started) - set(before)) <= 1  # at most the problem in flight was lost
    conn = sqlite3.connect(db_a)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    # rerun the same command in this process, counting strategy calls
    import dataclasses

    from ttscale.strategies.registry import STRATEGIES

    inner = STRATEGIES["majority"]
    calls: list[str] = []

    def counted(problem, budget, ctx):
        calls.append(problem.id)
        return inner(problem, budget, ctx)

    monkeypatch.setitem(STRATEGIES, "majority", dataclasses.replace(inner, fn=counted))
    assert main([*args, "--out", str(out_a)]) == 0
    resumed = json.loads(capsys.readouterr().out)
    after = _rows(db_a)
    assert sorted(calls) == sorted(set(after) - set(before))  # none of the stored ones again
    assert len(calls) == len(set(calls))
    assert resumed["resumed"] == len(before) and resumed["computed"] == len(calls)
    assert resumed["n_problems"] == N_PROBLEMS == len(after)
    for pid, row in before.items():  # stored rows untouched, timestamps included
        assert after[pid] == row

    # an uninterrupted run with the same seed ends with exactly the same results
    calls.clear()
    assert main([*args, "--out", str(out_b)]) == 0
    fresh = json.loads(capsys.readouterr().out)
    assert len(calls) == N_PROBLEMS
    clean = _rows(out_b / "ttscale.db")
    assert set(clean) == set(after)
    for pid in clean:
        assert _comparable(after[pid]) == _comparable(clean[pid]), pid
    assert fresh["accuracy"] == resumed["accuracy"]
    assert fresh["run_key"] == resumed["run_key"]
    gens = {k: v for k, v in fresh["cost"].items() if k != "wall_s"}
    assert gens == {k: v for k, v in resumed["cost"].items() if k != "wall_s"}


def test_run_key_changes_only_with_what_changes_results(tmp_path):
    from ttscale.config import build_config
    from ttscale.session import run_key

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights-1")

    def key(sets: list[str], policy: Path = model) -> str:
        cfg = build_config(None, {"task": "testbed", "strategy": "beam", "budget": 4}, sets)
        return run_key(cfg, str(policy), None)

    base = key([])
    assert key([]) == base  # stable
    # limit, output folder: same results per problem, so a rerun may extend or move the run
    assert key(["limit=7", "out=elsewhere"]) == base
    for change in (["budget=8"], ["seed=1"], ["options.beam_width=2"], ["temperature=0.5"],
                   ["split=dev"], ["strategy=dvts"], ["max_step_tokens=9"]):
        assert key(change) != base, change
    # a copied model with the same weights resumes; retrained weights in place do not
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in model.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert key([], copy) == base
    (model / "model.safetensors").write_bytes(b"weights-2")
    assert key([]) != base


def test_testbed_problems_do_not_depend_on_limit():
    """The run key leaves out --limit because the runner asks the testbed for n=limit problems
    and relies on the first K being the same for any n (so a larger --limit extends a run)."""
    from ttscale.config import build_config
    from ttscale.session import build_task, select_problems

    def problems(limit: int):
        cfg = build_config(None, {"task": "testbed", "strategy": "majority", "budget": 1,
                                  "limit": limit})
        return select_problems(build_task(cfg), cfg)

    assert problems(5) == problems(40)[:5]


def test_shards_share_one_run_and_equal_an_unsharded_run(tmp_path):
    """K processes with ``shard=I/K`` and the same ``out`` fill one run: afterwards the whole run
    resumes with nothing to compute, and every result equals an unsharded run's."""
    import torch

    from ttscale.config import build_config
    from ttscale.runner import run

    torch.set_num_threads(1)
    base = {"task": "testbed", "strategy": "majority", "budget": 2, "limit": 5,
            "max_solution_tokens": 48}
    shards = [run(build_config(None, {**base, "out": str(tmp_path / "a"), "shard": f"{i}/2"},
                               ()), progress=False) for i in range(2)]
    assert [s.n_problems for s in shards] == [3, 2] and shards[0].run_key == shards[1].run_key
    whole = run(build_config(None, {**base, "out": str(tmp_path / "a")}, ()), progress=False)
    assert whole.computed == 0 and whole.n_problems == 5
    fresh = run(build_config(None, {**base, "out": str(tmp_path / "b")}, ()), progress=False)
    assert whole.run_key == fresh.run_key
    rows_a, rows_b = _rows(tmp_path / "a" / "ttscale.db"), _rows(tmp_path / "b" / "ttscale.db")
    assert {k: _comparable(v) for k, v in rows_a.items()} == {
        k: _comparable(v) for k, v in rows_b.items()}


@pytest.mark.parametrize("spec", ["2/2", "1", "a/2", "-1/2", "0/0"])
def test_bad_shard_is_a_one_line_config_error(spec):
    from ttscale.config import build_config

    with pytest.raises(ValueError, match="shard"):
        build_config(None, {"task": "testbed", "strategy": "majority", "budget": 2,
                            "shard": spec}, ())
