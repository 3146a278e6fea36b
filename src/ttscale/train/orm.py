"""Outcome reward models (ORM): one label per solution, read off the gold answer.

Why: the paper compares its PRM with an ORM (App. H) and uses an ORM as the verifier of its
revision model's outputs, trained on those outputs **with the earlier attempts in context**
(App. N), because a PRM trained on the base policy's samples has never seen a revision. Both
come from the same two steps here:

1. **records** (:func:`outcome_records`): sample solutions and grade each against the gold
   answer (``is_right``: on the testbed a right answer reached by wrong steps counts as wrong).
   Without a reviser, the policy's samples on the problem prompt. With a reviser, chains of
   ``chain_length`` attempts of the revision model, attempt k written (and recorded) under the
   revision prompt that shows the chain's last ``window`` attempts, exactly as the ``revisions``
   strategy prompts it; the ORM is then meant to score an attempt under that same prompt
   (``revisions`` option ``verifier_prompt="revision"``).
2. **training** (:func:`train_orm`): ``train.prm`` with label kind ``outcome``: the solution's
   correctness at every step end (a verifier trained the way Cobbe et al. train theirs); the
   ``last`` aggregation reads it at the final step. Records are written as the JSON lines
   ``ttscale label`` writes, so a file can be inspected or reused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ttscale.engines.base import Generator, SamplingParams
from ttscale.train.revision import is_right

SAMPLE_BATCH = 64


def _record(problem: Any, prompt: str, texts_ok: list[tuple[str, bool]], delim: str) -> dict:
    sols = []
    for text, ok in texts_ok:
        steps = [s for s in text.split(delim) if s.strip()]
        sols.append({"steps": steps, "outcome": [float(ok)] * len(steps), "correct": ok})
    return {"problem_id": problem.id, "prompt": prompt, "answer": problem.answer,
            "solutions": sols}


def outcome_records(task: Any, generator: Generator, samples: int = 8, seed: int = 0,
                    temperature: float = 1.0, max_tokens: int = 256, *,
                    reviser: Generator | None = None, chain_length: int = 4,
                    window: int = 4) -> list[dict]:
    """Label records with outcome labels (module docstring). With ``reviser``, ``samples``
    attempts per question are ``samples // chain_length`` chains (``samples`` must be a
    multiple of ``chain_length``); one record per distinct prompt."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    problems = task.problems()
    delim = task.step_delimiter
    records: list[dict] = []
    if reviser is None:
        for start in range(0, len(problems), SAMPLE_BATCH):
            batch = problems[start: start + SAMPLE_BATCH]
            outs = generator.generate([p.prompt for p in batch], SamplingParams(
                n=samples, temperature=temperature, max_tokens=max_tokens, seed=seed + start))
            for problem, comps in zip(batch, outs, strict=True):
                records.append(_record(problem, problem.prompt,
                                       [(c.text, is_right(task, problem, c.text))
                                        for c in comps], delim))
        return records
    if not hasattr(task, "revision_prompt"):
        raise ValueError(f"task {task.name!r} has no revision prompt format")
    if chain_length < 1 or samples % chain_length:
        raise ValueError(f"samples={samples} must be a multiple of chain_length={chain_length}")
    n_chains = samples // chain_length
    for start in range(0, len(problems), SAMPLE_BATCH):
        batch = problems[start: start + SAMPLE_BATCH]
        chains = [(p, c, []) for p in batch for c in range(n_chains)]
        by_prompt: dict[tuple[str, str], tuple[Any, list[tuple[str, bool]]]] = {}
        for k in range(chain_length):
            prompts = [task.revision_prompt(p, hist[-window:]) for p, _, hist in chains]
            outs = reviser.generate(prompts, SamplingParams(
                n=1, temperature=temperature, max_tokens=max_tokens, seed=seed + 7919 * k
                + start))
            for (problem, _c, hist), prompt, comps in zip(chains, prompts, outs, strict=True):
                text = comps[0].text
                key = (problem.id, prompt)
                by_prompt.setdefault(key, (problem, []))[1].append(
                    (text, is_right(task, problem, text)))
                hist.append(text)
        for (_, prompt), (problem, texts_ok) in by_prompt.items():
            records.append(_record(problem, prompt, texts_ok, delim))
    return records


def write_records(records: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    return path


def train_orm(init: Path, records: list[dict], out_dir: Path, *, arch: str = "certainty",
              epochs: float = 4.0, learning_rate: float = 1e-2, batch_size: int = 64,
              seed: int = 0, delimiter: str = "\n", prompt_marker: str | None = None) -> dict:
    """Train an ORM on outcome ``records`` (written to ``out_dir/orm_labels.jsonl`` first)
    with ``train.prm``; returns its summary plus the share of right solutions."""
    from ttscale.train.prm import PRMTrainConfig, train_prm

    labels = write_records(records, Path(out_dir) / "orm_labels.jsonl")
    cfg = PRMTrainConfig(label_kind="outcome", arch=arch, epochs=epochs,
                         learning_rate=learning_rate, batch_size=batch_size, seed=seed,
                         delimiter=delimiter, prompt_marker=prompt_marker)
    out = train_prm(Path(init), labels, Path(out_dir), cfg)
    sols = [s for r in records for s in r["solutions"] if s["steps"]]
    out["right_share"] = sum(s["correct"] for s in sols) / len(sols) if sols else 0.0
    out["solutions"] = len(sols)
    return out
