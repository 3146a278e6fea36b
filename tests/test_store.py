"""The SQLite store: round trip of results and samples, resume bookkeeping, bad databases."""

from __future__ import annotations

import sqlite3

import pytest

from ttscale.store import DB_NAME, Store, StoreError
from ttscale.types import Candidate, Cost, Problem, Result


def _problem(i: int, difficulty: int | None = 3) -> Problem:
    return Problem(id=f"p{i}", question=f"Q:{10 + i}a+1", answer=f"{11 + i}",
                   prompt=f"Q:{10 + i}a+1\n", difficulty=difficulty)


def _result(i: int, correct: bool | None = True) -> Result:
    cands = [
        Candidate(steps=[f"a:{10 + i}+1={11 + i}", f"A:{11 + i}"], scores=[0.9, 0.75],
                  finished=True, answer=f"{11 + i}", meta={"node": 1, "round": 2}),
        Candidate(steps=["a:10+1=12"], scores=[0.125], finished=False, answer=None,
                  meta={"finish_reason": "length"}),
    ]
    cost = Cost(generations=4, prompt_tokens=30, prompt_tokens_cached=10, generated_tokens=50,
                prm_tokens=80, policy_flops=1.5e6, prm_flops=2.5e6, wall_s=0.25)
    trace = [{"round": 0, "nodes": [{"id": 1, "parent": 0, "step": "a:10+1=11", "score": 0.9,
                                     "kept": True, "finished": False, "answer": None}]}]
    return Result(problem_id=f"p{i}", answer=f"{11 + i}", candidates=cands, cost=cost,
                  trace=trace, correct=correct, meta={"strategy": "beam", "votes": {"11": 1.65}})


def test_round_trip_keeps_every_field(tmp_path):
    with Store.in_dir(tmp_path / "out") as store:
        assert store.ensure_run("k1", {"strategy": "beam", "budget": 4})
        assert not store.ensure_run("k1", {"strategy": "other"})  # first config wins
        assert store.add_result("k1", _problem(0), _result(0), grade_reason="exact", idx=0)
        assert store.add_result("k1", _problem(1, None), _result(1, False), grade_reason="x",
                                idx=1)

    assert (tmp_path / "out" / DB_NAME).is_file()
    with Store.in_dir(tmp_path / "out") as store:  # reopened: everything came from disk
        assert store.run_config("k1") == {"strategy": "beam", "budget": 4}
        assert store.done_ids("k1") == {"p0", "p1"}
        assert store.done_ids("other") == set()
        rows = store.results("k1")
        assert [r.problem_id for r in rows] == ["p0", "p1"]
        r0, r1 = rows
        want = _result(0)
        assert r0.answer == want.answer and r0.correct is True and r0.grade_reason == "exact"
        assert r0.gold == "11" and r0.difficulty == 3 and r0.idx == 0
        assert r0.cost == want.cost
        assert r0.candidates == want.candidates
        assert r0.trace == want.trace
        assert r0.meta == want.meta
        assert r0.wall_s == pytest.approx(0.25)
        assert r1.correct is False and r1.difficulty is None
        assert [r.problem_id for r in store.results("k1", ["p1"])] == ["p1"]

        samples = store.samples("k1", "p0")
        assert [s["sample_idx"] for s in samples] == [0, 1]
        assert samples[0]["steps"] == want.candidates[0].steps
        assert samples[0]["scores"] == want.candidates[0].scores
        assert samples[0]["last_score"] == pytest.approx(0.75)
        assert samples[1]["answer"] is None and samples[1]["finished"] is False
        assert len(store.samples("k1")) == 4

        runs = store.runs()
        assert [(r["run_key"], r["n_results"], r["n_correct"]) for r in runs] == [("k1", 2, 1)]


def test_second_insert_of_a_problem_changes_nothing(tmp_path):
    with Store.in_dir(tmp_path) as store:
        store.ensure_run("k", {})
        assert store.add_result("k", _problem(0), _result(0), idx=0)
        first = store.results("k")[0]
        other = _result(0, correct=False)
        other.answer = "99"
        assert not store.add_result("k", _problem(0), other, idx=0)
        again = store.results("k")[0]
        assert again.answer == first.answer and again.created == first.created
        assert len(store.samples("k")) == 2  # the ignored insert added no samples either


def test_runs_are_separated_by_key(tmp_path):
    with Store.in_dir(tmp_path) as store:
        store.ensure_run("a", {"budget": 1})
        store.ensure_run("b", {"budget": 2})
        store.add_result("a", _problem(0), _result(0), idx=0)
        assert store.done_ids("a") == {"p0"}
        assert store.done_ids("b") == set()
        assert store.results("b") == []


def test_uses_wal_and_commits_each_problem(tmp_path):
    store = Store.in_dir(tmp_path)
    store.ensure_run("k", {})
    store.add_result("k", _problem(0), _result(0), idx=0)
    # a second connection sees the row while the first is still open: it was committed
    other = sqlite3.connect(tmp_path / DB_NAME)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
    other.close()
    store.close()


def test_non_json_meta_is_encoded(tmp_path):
    np = pytest.importorskip("numpy")
    res = _result(0)
    res.meta = {"score": np.float32(0.5), "ids": {3}, "arr": np.arange(2)}
    with Store.in_dir(tmp_path) as store:
        store.ensure_run("k", {})
        store.add_result("k", _problem(0), res, idx=0)
        assert store.results("k")[0].meta == {"score": 0.5, "ids": [3], "arr": [0, 1]}


def test_not_a_database_is_one_clear_error(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a usable ttscale database"):
        Store.in_dir(tmp_path)


def test_out_path_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StoreError, match="not a folder"):
        Store.in_dir(f)


def test_newer_schema_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer ttscale"):
        Store.in_dir(tmp_path)
