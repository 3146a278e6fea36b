"""The composition root (``ttscale.session``): the public Python API as the README shows it, and
the one per-problem loop: a problem that fails on its own is stored as a failure, the run goes
on, ``n_failed`` counts it, and only ``--retry-failed`` solves it again."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_helpers import run_cli
from fakes import FakeGenerator, FakeScorer

from ttscale.errors import ProblemError
from ttscale.tasks import testbed

ROOT = Path(__file__).resolve().parents[1]


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## From Python\n\n```python\n(.*?)```", text, re.S)
    assert block, "README has no '## From Python' python block"
    return block.group(1)


def test_the_readme_snippet_runs_on_the_shipped_models(capsys):
    code = readme_snippet()
    assert 8 <= len([ln for ln in code.splitlines() if ln.strip()]) <= 16
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102  (our own README)
    out = capsys.readouterr().out.splitlines()
    result = namespace["result"]
    assert result.cost.generations == 8 and result.trace and result.correct is not None
    assert out[0].startswith(str(result.answer))
    assert len(namespace["results"]) == 2 and all(r.cost.generations == 4
                                                   for r in namespace["results"])


def test_a_session_over_models_already_held_solves_text_and_problems():
    from ttscale import Session

    task = testbed.TestbedTask(split="test", n=4)
    session = Session.from_models(FakeGenerator(accuracy=0.9), FakeScorer(noise=0.1), task=task)
    problem = task.problems()[0]
    r = session.solve(problem, strategy="weighted-best-of-n", budget=4)
    assert r.correct is not None and r.cost.generations == 4
    text = session.solve(problem.question, strategy="majority", budget=4)
    assert text.correct is None  # a question as text has no gold answer to grade against
    with pytest.raises(ValueError, match="beam_widht"):
        session.solve(problem, strategy="beam", budget=8, beam_widht=2)
    alone = Session.from_models(FakeGenerator(accuracy=0.9), task=task)
    with pytest.raises(ValueError, match="needs a verifier"):
        alone.solve(problem, strategy="beam", budget=4)


class FailsOn(FakeGenerator):
    """A generator that refuses one problem's prompt, as an engine answers 400 to one request."""

    def __init__(self, bad_prompt: str, **kw) -> None:
        super().__init__(**kw)
        self.bad_prompt, self.armed = bad_prompt, True

    def generate(self, prompts, params):
        if self.armed and any(p.startswith(self.bad_prompt) for p in prompts):
            raise ProblemError("HTTP 400: prompt + max_tokens exceed the context (4096)")
        return super().generate(prompts, params)


def test_one_failed_problem_never_kills_a_run_and_is_retried_only_when_asked(tmp_path):
    from ttscale.config import build_config
    from ttscale.runner import run

    cfg = build_config(None, {"task": "testbed", "strategy": "beam", "budget": 4, "limit": 4,
                              "out": str(tmp_path), "options.beam_width": 2})
    task = testbed.TestbedTask(split=cfg.split, n=4)
    bad = task.problems()[1]
    gen = FailsOn(bad.prompt, accuracy=0.9)
    s = run(cfg, progress=False, generator=gen, scorer=FakeScorer(noise=0.1))
    assert s.n_problems == 4 and s.n_failed == 1 and s.computed == 4
    assert s.n_correct <= 3 and s.accuracy == s.n_correct / 4
    from ttscale.store.sqlite import Store

    with Store.in_dir(tmp_path) as store:
        row = [r for r in store.results(s.run_key) if r.problem_id == bad.id][0]
    assert row.correct is False and row.answer is None
    assert "context" in row.meta["failed"] and row.grade_reason == "failed"
    # a plain rerun resumes everything, the failure included
    again = run(cfg, progress=False, generator=gen, scorer=FakeScorer(noise=0.1))
    assert (again.resumed, again.computed, again.n_failed) == (4, 0, 1)
    # --retry-failed solves the failed problem only, which now succeeds
    gen.armed = False
    retried = run(cfg, progress=False, generator=gen, scorer=FakeScorer(noise=0.1),
                  retry_failed=True)
    assert (retried.resumed, retried.computed, retried.n_failed) == (3, 1, 0)


def test_an_engine_wide_fault_stops_the_run_with_the_finished_problems_kept(tmp_path):
    from ttscale.config import build_config
    from ttscale.runner import run

    class Down(FakeGenerator):
        calls = 0

        def generate(self, prompts, params):
            Down.calls += 1
            if Down.calls > 2:
                raise ConnectionError("connection refused after 3 retries")
            return super().generate(prompts, params)

    cfg = build_config(None, {"task": "testbed", "strategy": "majority", "budget": 2,
                              "limit": 4, "out": str(tmp_path)})
    with pytest.raises(ConnectionError):
        run(cfg, progress=False, generator=Down(accuracy=0.9))
    s = run(cfg, progress=False, generator=FakeGenerator(accuracy=0.9))
    assert (s.resumed, s.computed, s.n_failed) == (2, 2, 0)


def test_n_failed_is_in_the_json_summary(capsys, tmp_path):
    code, out, err = run_cli(capsys, ["run", "--task", "testbed", "--strategy", "majority",
                                      "--budget", "1", "--limit", "1", "--out", str(tmp_path),
                                      "--json", "--no-progress"])
    assert code == 0, err
    assert json.loads(out)["n_failed"] == 0
