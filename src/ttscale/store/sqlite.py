"""SQLite store of every run's results, with per-problem commits so an interrupted run resumes.

One file, ``<out>/ttscale.db``, holds any number of runs; a run is identified by its ``run_key``,
a stable hash of the settings that change results (computed by the runner), so rerunning the same
command finds its finished problems and skips them, while a different budget or strategy writes
beside them. WAL mode lets a report read while a run writes, and since each problem is committed in
its own transaction a kill (even SIGKILL) loses at most the problem in flight.

Tables
- ``runs``: run_key, config (JSON), created.
- ``results``: one row per (run_key, problem_id): the chosen answer, grade, difficulty, Cost
  (JSON, contract keys), every candidate with its steps and per-step scores (JSON), the trace.
- ``samples``: the same candidates one row each (steps, per-step scores, answer, last score),
  so sample pools can be queried with SQL without parsing the results' JSON.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ttscale.types import Candidate, Cost, Problem, Result

DB_NAME = "ttscale.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    run_key TEXT NOT NULL REFERENCES runs(run_key),
    problem_id TEXT NOT NULL,
    idx INTEGER,
    question TEXT,
    gold TEXT,
    answer TEXT,
    correct INTEGER,
    grade_reason TEXT,
    difficulty INTEGER,
    cost TEXT NOT NULL,
    candidates TEXT NOT NULL,
    trace TEXT NOT NULL,
    meta TEXT NOT NULL,
    wall_s REAL,
    created REAL NOT NULL,
    PRIMARY KEY (run_key, problem_id)
);
CREATE TABLE IF NOT EXISTS samples (
    run_key TEXT NOT NULL,
    problem_id TEXT NOT NULL,
    sample_idx INTEGER NOT NULL,
    answer TEXT,
    finished INTEGER NOT NULL,
    n_steps INTEGER NOT NULL,
    last_score REAL,
    steps TEXT NOT NULL,
    scores TEXT NOT NULL,
    meta TEXT NOT NULL,
    PRIMARY KEY (run_key, problem_id, sample_idx)
);
"""


class StoreError(RuntimeError):
    """The database cannot be opened or has an unexpected layout; one-line message."""


@dataclass
class StoredResult:
    """One problem's stored outcome, decoded back into the shared types."""

    run_key: str
    problem_id: str
    idx: int | None
    question: str | None
    gold: str | None
    answer: str | None
    correct: bool | None
    grade_reason: str | None
    difficulty: int | None
    cost: Cost
    candidates: list[Candidate]
    trace: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    wall_s: float | None = None
    created: float = 0.0


def _json_default(obj: Any) -> Any:
    """Encode what strategies may leave in meta/trace: numpy/torch scalars, sets, dataclasses."""
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return obj.item()
        except (TypeError, ValueError):
            pass
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return str(obj)


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def candidate_to_dict(c: Candidate) -> dict[str, Any]:
    return {"steps": list(c.steps), "scores": [float(s) for s in c.scores],
            "finished": bool(c.finished), "answer": c.answer, "meta": c.meta}


def candidate_from_dict(d: dict[str, Any]) -> Candidate:
    return Candidate(steps=list(d.get("steps", [])), scores=list(d.get("scores", [])),
                     finished=bool(d.get("finished", False)), answer=d.get("answer"),
                     meta=dict(d.get("meta") or {}))


class Store:
    """A run database. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create output folder {self.path.parent}: {e}") from e
        try:
            self._conn = sqlite3.connect(self.path, timeout=30.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # with WAL, NORMAL survives a killed process (only power loss may drop the last commit)
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path} is not a usable ttscale database: {e}") from e

    @classmethod
    def in_dir(cls, out_dir: str | Path) -> Store:
        """The store of an output folder: ``<out>/ttscale.db``."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise StoreError(f"output path {out} exists and is not a folder")
        return cls(out / DB_NAME)

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer ttscale "
                             f"(schema {version} > {SCHEMA_VERSION}); upgrade ttscale")
        with self._conn:
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- runs -------------------------------------------------------------------------------

    def ensure_run(self, run_key: str, config: dict[str, Any]) -> bool:
        """Record a run (first config wins). True when the run is new to this database."""
        with self._conn:
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO runs (run_key, config, created) VALUES (?, ?, ?)",
                (run_key, dumps(config), time.time()))
        return cur.rowcount == 1

    def runs(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT r.run_key, r.config, r.created, COUNT(x.problem_id), SUM(x.correct) "
            "FROM runs r LEFT JOIN results x ON x.run_key = r.run_key "
            "GROUP BY r.run_key ORDER BY r.created").fetchall()
        return [{"run_key": k, "config": json.loads(c), "created": t, "n_results": n,
                 "n_correct": int(s or 0)} for k, c, t, n, s in rows]

    def run_config(self, run_key: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT config FROM runs WHERE run_key = ?",
                                 (run_key,)).fetchone()
        return json.loads(row[0]) if row else None

    # ---- results ----------------------------------------------------------------------------

    def done_ids(self, run_key: str) -> set[str]:
        """Problems of this run that are already stored (skipped on resume)."""
        rows = self._conn.execute("SELECT problem_id FROM results WHERE run_key = ?", (run_key,))
        return {r[0] for r in rows}

    def forget(self, run_key: str, problem_ids: Iterable[str]) -> int:
        """Delete these problems' results and samples (so a rerun solves them again, e.g. the
        failed ones with ``--retry-failed``); returns how many results were deleted."""
        ids = list(problem_ids)
        if not ids:
            return 0
        with self._conn:
            n = 0
            for pid in ids:
                n += self._conn.execute("DELETE FROM results WHERE run_key = ? AND problem_id = ?",
                                        (run_key, pid)).rowcount
                self._conn.execute("DELETE FROM samples WHERE run_key = ? AND problem_id = ?",
                                   (run_key, pid))
        return n

    def add_result(self, run_key: str, problem: Problem, result: Result, *,
                   grade_reason: str | None = None, idx: int | None = None) -> bool:
        """Store one problem's result and its samples in one transaction.

        Returns False (and changes nothing) when the problem was already stored for this run,
        e.g. by a concurrent process running the same command.
        """
        cands = [candidate_to_dict(c) for c in result.candidates]
        correct = None if result.correct is None else int(bool(result.correct))
        with self._conn:
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO results (run_key, problem_id, idx, question, gold, answer, "
                "correct, grade_reason, difficulty, cost, candidates, trace, meta, wall_s, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_key, problem.id, idx, problem.question, problem.answer, result.answer,
                 correct, grade_reason, problem.difficulty, dumps(result.cost.to_dict()),
                 dumps(cands), dumps(result.trace), dumps(result.meta), result.cost.wall_s,
                 time.time()))
            if cur.rowcount != 1:
                return False
            self._conn.executemany(
                "INSERT INTO samples (run_key, problem_id, sample_idx, answer, finished, n_steps, "
                "last_score, steps, scores, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_key, problem.id, i, c["answer"], int(c["finished"]), len(c["steps"]),
                  _finite(c["scores"][-1]) if c["scores"] else None, dumps(c["steps"]),
                  dumps(c["scores"]), dumps(c["meta"])) for i, c in enumerate(cands)])
        return True

    def results(self, run_key: str,
                problem_ids: Iterable[str] | None = None) -> list[StoredResult]:
        """Stored results of a run in problem order (optionally only the given problems)."""
        rows = self._conn.execute(
            "SELECT run_key, problem_id, idx, question, gold, answer, correct, grade_reason, "
            "difficulty, cost, candidates, trace, meta, wall_s, created FROM results "
            "WHERE run_key = ? ORDER BY idx, problem_id", (run_key,)).fetchall()
        wanted = None if problem_ids is None else set(problem_ids)
        out = []
        for r in rows:
            if wanted is not None and r[1] not in wanted:
                continue
            out.append(StoredResult(
                run_key=r[0], problem_id=r[1], idx=r[2], question=r[3], gold=r[4], answer=r[5],
                correct=None if r[6] is None else bool(r[6]), grade_reason=r[7],
                difficulty=r[8], cost=Cost.from_dict(json.loads(r[9])),
                candidates=[candidate_from_dict(c) for c in json.loads(r[10])],
                trace=json.loads(r[11]), meta=json.loads(r[12]), wall_s=r[13], created=r[14]))
        return out

    def samples(self, run_key: str, problem_id: str | None = None) -> list[dict[str, Any]]:
        """Every stored candidate of a run (or of one problem) as plain dicts."""
        sql = ("SELECT problem_id, sample_idx, answer, finished, n_steps, last_score, steps, "
               "scores, meta FROM samples WHERE run_key = ?")
        args: tuple[Any, ...] = (run_key,)
        if problem_id is not None:
            sql += " AND problem_id = ?"
            args += (problem_id,)
        rows = self._conn.execute(sql + " ORDER BY problem_id, sample_idx", args).fetchall()
        return [{"problem_id": p, "sample_idx": i, "answer": a, "finished": bool(f),
                 "n_steps": n, "last_score": s, "steps": json.loads(st),
                 "scores": json.loads(sc), "meta": json.loads(m)}
                for p, i, a, f, n, s, st, sc, m in rows]


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None
