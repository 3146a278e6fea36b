"""Math-Shepherd Monte-Carlo step labels (``ttscale.train.mc_labels``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from fakes import FakeGenerator

from ttscale.engines.base import SamplingParams
from ttscale.tasks import testbed
from ttscale.tasks.testbed import apply_op, parse_question
from ttscale.train.mc_labels import LabelConfig, label_batch, label_problems, read_done
from ttscale.types import Completion, Problem


def exact_match(pred: str | None, gold: str) -> bool:
    return pred == gold


@dataclass
class ScriptedGenerator:
    """Returns the completions written for each prompt (exactly ``n`` of them); records calls."""

    script: dict[str, list[str]]
    calls: list[tuple[list[str], SamplingParams]] = field(default_factory=list)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        self.calls.append((list(prompts), params))
        out = []
        for prompt in prompts:
            texts = self.script[prompt]
            assert len(texts) == params.n, (prompt, params.n)
            out.append([Completion(t, "eos", len(prompt), len(t)) for t in texts])
        return out


@dataclass
class SplitGenerator:
    """First call (the sampled solutions) to ``first``, later calls (rollouts) to ``rest``."""

    first: FakeGenerator
    rest: FakeGenerator
    calls: list[tuple[list[str], SamplingParams]] = field(default_factory=list)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        self.calls.append((list(prompts), params))
        return (self.first if len(self.calls) == 1 else self.rest).generate(prompts, params)


Q = "Q:10a+1b+2"  # a:10+1=11, b:11+2=13, A:13
GOLD = "a:10+1=11\nb:11+2=13\nA:13\n"
WRONG = "a:10+1=11\nb:11+2=14\nA:14\n"


def _problem() -> Problem:
    q = parse_question(Q)
    return Problem(id="p0", question=Q, answer=q.answer, prompt=Q + "\n", difficulty=2)


def _scripted() -> ScriptedGenerator:
    prompt = Q + "\n"
    return ScriptedGenerator({
        prompt: [GOLD, WRONG, GOLD],  # 3 samples; two identical
        # prefix (a) is shared by all three samples: rolled out once, 3 of 4 reach 13
        prompt + "a:10+1=11\n": ["b:11+2=13\nA:13\n", "b:11+2=13\nA:13\n",
                                 "b:11+2=15\nA:15\n", "b:11+2=13\nA:13\n"],
        # prefix (a, gold b): 2 of 4 reach 13 (the policy may still botch the answer line)
        prompt + "a:10+1=11\nb:11+2=13\n": ["A:13\n", "A:99\n", "A:13\n", "nothing"],
        # prefix (a, wrong b): none of 4
        prompt + "a:10+1=11\nb:11+2=14\n": ["A:14\n"] * 4,
    })


CFG = LabelConfig(samples_per_question=3, rollouts_per_prefix=4, max_solution_tokens=64,
                  seed=5)


def test_soft_and_hard_labels_are_the_hand_computed_fractions():
    gen = _scripted()
    task = testbed.TestbedTask("test", n=1)
    [rec] = label_batch([_problem()], task, gen, CFG, exact_match)
    assert rec["problem_id"] == "p0" and rec["prompt"] == Q + "\n" and rec["answer"] == "13"
    gold, wrong, gold2 = rec["solutions"]
    assert gold["steps"] == ["a:10+1=11", "b:11+2=13", "A:13"]
    assert gold["soft"] == [3 / 4, 2 / 4, 1.0]
    assert gold["hard"] == [1.0, 1.0, 1.0]
    assert gold["correct"] is True and gold2 == gold
    assert wrong["soft"] == [3 / 4, 0.0, 0.0]
    assert wrong["hard"] == [1.0, 0.0, 0.0]
    assert wrong["correct"] is False
    # the testbed's exact ("human") labels ride along
    assert gold["exact"] == [1.0, 1.0, 1.0]
    assert wrong["exact"] == [1.0, 0.0, 0.0]


def test_distinct_prefixes_are_rolled_out_once():
    gen = _scripted()
    label_batch([_problem()], testbed.TestbedTask("test", n=1), gen, CFG, exact_match)
    assert len(gen.calls) == 2  # one call for the samples, one for every rollout
    (sample_prompts, sample_params), (roll_prompts, roll_params) = gen.calls
    assert sample_prompts == [Q + "\n"] and sample_params.n == 3
    assert roll_params.n == 4
    assert sample_params.max_tokens == roll_params.max_tokens == 64
    # (a), (a, b=13), (a, b=14): the full solutions are judged by their own answer
    assert sorted(roll_prompts) == sorted([Q + "\na:10+1=11\n", Q + "\na:10+1=11\nb:11+2=13\n",
                                           Q + "\na:10+1=11\nb:11+2=14\n"])


def test_empty_sample_gets_no_labels():
    prompt = Q + "\n"
    gen = ScriptedGenerator({prompt: ["", "A:13\n"]})
    cfg = LabelConfig(samples_per_question=2, rollouts_per_prefix=2)
    [rec] = label_batch([_problem()], testbed.TestbedTask("test", n=1), gen, cfg, exact_match)
    empty, short = rec["solutions"]
    assert empty == {"steps": [], "soft": [], "hard": [], "correct": False, "exact": []}
    # a one-step solution has no prefix to roll out: its label is its answer's correctness
    assert short["soft"] == [1.0] and short["correct"] is True
    assert len(gen.calls) == 1


def _reachable(q, steps: list[str]) -> bool:
    """Whether continuing the arithmetic exactly from the last stated value hits the answer."""
    value = int(testbed.STEP_RE.match(steps[-1]).group(5))
    for op, x in q.ops[len(steps):]:
        value = apply_op(value, op, x)
    return f"{value:02d}" == q.answer


def test_labels_with_the_testbed_fake_generator():
    """Noisy samples, then rollouts by a policy that never errs: a prefix's soft label is 1 iff
    exact arithmetic from its last stated value reaches the gold answer (recomputed here)."""
    task = testbed.TestbedTask("train", n=6, seed=4, min_ops=3, max_ops=5)
    problems = task.problems()
    gen = SplitGenerator(FakeGenerator(accuracy=0.6), FakeGenerator(accuracy=1.0))
    cfg = LabelConfig(samples_per_question=4, rollouts_per_prefix=3, seed=1)
    records = label_batch(problems, task, gen, cfg, exact_match)
    assert [r["problem_id"] for r in records] == [p.id for p in problems]
    n_prefixes, n_wrong = set(), 0
    for p, rec in zip(problems, records, strict=True):
        q = parse_question(p.question)
        assert len(rec["solutions"]) == 4
        for sol in rec["solutions"]:
            steps = sol["steps"]
            assert len(sol["soft"]) == len(sol["hard"]) == len(sol["exact"]) == len(steps)
            assert sol["correct"] == (task.extract_answer("\n".join(steps)) == p.answer)
            assert sol["soft"][-1] == float(sol["correct"])  # last label = answer correctness
            assert sol["exact"] == [float(x) for x in testbed.step_correctness(q, steps)]
            for k in range(1, len(steps)):
                assert sol["soft"][k - 1] == float(_reachable(q, steps[:k]))
                n_prefixes.add((p.id, tuple(steps[:k])))
            assert sol["hard"] == [float(s > 0) for s in sol["soft"]]
            n_wrong += not sol["correct"]
    assert n_wrong > 0  # the noisy samples did produce wrong solutions to label
    roll_prompts = gen.calls[1][0]
    assert len(roll_prompts) == len(set(roll_prompts)) == len(n_prefixes)


def _problems(n: int) -> list[Problem]:
    return testbed.TestbedTask("train", n=n, seed=9, max_ops=3).problems()


def _lines(path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_label_problems_writes_one_line_per_question_and_reports_progress(tmp_path):
    task, out = testbed.TestbedTask("train", n=1), tmp_path / "sub" / "labels.jsonl"
    progress = []
    cfg = LabelConfig(samples_per_question=2, rollouts_per_prefix=2, questions_per_batch=2)
    n = label_problems(_problems(5), task, FakeGenerator(accuracy=0.7), out, cfg,
                       exact_match, on_progress=progress.append)
    assert n == 5
    assert [json.loads(line)["problem_id"] for line in _lines(out)] == [p.id for p in
                                                                         _problems(5)]
    assert progress == [0, 2, 4, 5]


@pytest.mark.parametrize("tear", ["mid-json", "no-newline"])
def test_resume_truncates_a_torn_last_line_and_labels_only_missing(tmp_path, tear):
    task, out = testbed.TestbedTask("train", n=1), tmp_path / "labels.jsonl"
    cfg = LabelConfig(samples_per_question=2, rollouts_per_prefix=2, questions_per_batch=1)
    problems = _problems(4)
    assert label_problems(problems[:3], task, FakeGenerator(accuracy=0.7), out, cfg,
                          exact_match) == 3
    full = _lines(out)
    # killed while writing the third record
    torn = full[2][: len(full[2]) // 2] if tear == "mid-json" else full[2].rstrip("\n")
    out.write_text("".join(full[:2]) + torn)
    gen = FakeGenerator(accuracy=0.7)
    assert label_problems(problems, task, gen, out, cfg, exact_match) == 2
    lines = _lines(out)
    assert len(lines) == 4 and all(line.endswith("\n") for line in lines)
    assert [json.loads(line)["problem_id"] for line in lines] == [p.id for p in problems]
    assert lines[:3] == full  # the relabelled question comes out the same (seeded)
    # only the two missing questions reached the model (samples and rollouts alike)
    asked = [prompt.split("\n")[0] for prompts, _ in gen.calls for prompt in prompts]
    assert set(asked) == {problems[2].question, problems[3].question}
    # a third run finds nothing to do and calls no model
    gen = FakeGenerator()
    assert label_problems(problems, task, gen, out, cfg, exact_match) == 0
    assert gen.calls == [] and _lines(out) == lines


def test_read_done(tmp_path):
    path = tmp_path / "labels.jsonl"
    assert read_done(path) == set()
    path.write_text('{"problem_id": "a", "solutions": []}\n{"problem_id": "b"}\n')
    assert read_done(path) == {"a", "b"}
    path.write_text("")
    assert read_done(path) == set()


def test_a_bad_line_before_the_last_is_an_error_not_a_silent_drop(tmp_path):
    path = tmp_path / "labels.jsonl"
    body = '{"problem_id": "a"}\nnot json\n{"problem_id": "c"}\n'
    path.write_text(body)
    with pytest.raises(ValueError, match=r"labels\.jsonl:2: not a label record"):
        read_done(path)
    assert path.read_text() == body  # nothing truncated
    path.write_text('{"problem_id": "a"}\n{"no_id": 1}\n{"problem_id": "c"}\n')
    with pytest.raises(ValueError, match=r"labels\.jsonl:2"):
        read_done(path)
