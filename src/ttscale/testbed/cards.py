"""Model cards for the shipped testbed models, written from what the build recorded."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ttscale.testbed.specs import LARGE, SMALL, ArchSpec


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _params(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as fh:
        return sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys())  # noqa: SIM118


def _arch(spec: ArchSpec) -> str:
    return (f"LlamaForCausalLM: hidden {spec.hidden}, {spec.layers} layers, {spec.heads} heads, "
            f"FFN {spec.ffn}, tied embeddings, RoPE, context {spec.max_positions}; "
            "character-level tokenizer (32 tokens)")


def _stage_seconds(work: Path, stage: str) -> str:
    rec = _read_json(work / f"{stage}.done")
    return f"{rec['seconds']:.0f} s" if "seconds" in rec else "not recorded"


COMMON = """
Task: the ttscale testbed (`ttscale.tasks.testbed`): chained arithmetic mod 100 with labelled
steps, 2-8 operations, train/dev/test split by a hash of the question. Trained in float32 on a
CPU, stored in float16 (loaded back as float32). Rebuild: `ttscale testbed train --seed {seed}`
(resumable; `--stages` picks stages). Held-out metrics: `ttscale testbed eval` (see EVAL.md
beside the models when present). License: Apache-2.0, like ttscale.
"""


def _snapshot(meta: dict[str, Any]) -> str:
    if not meta:
        return "not recorded"
    by_ops = {k: round(v, 2) for k, v in meta.get("by_ops", {}).items()}
    return (f"step {meta['step']}: dev pass@1 {meta['dev_pass1']:.3f}, greedy "
            f"{meta['dev_greedy']:.3f}, pass@1 by number of operations {json.dumps(by_ops)}")


def _large_training(cfg: Any) -> str:
    """How policy-large was trained: from scratch, or continued from earlier weights until
    its dev greedy accuracy plateaued."""
    stop = (f"stopped at dev greedy accuracy >= {cfg.large_stop_greedy} or {cfg.large_steps} "
            f"steps")
    if getattr(cfg, "large_patience", None):
        stop += (f", or once dev greedy had not beaten its best for {cfg.large_patience} "
                 f"evaluations (every {cfg.eval_every} steps: a plateau)")
    init = getattr(cfg, "large_init", None)
    if init is None:
        return (f"the same data stream as policy-small, batch {cfg.large_batch}, learning rate "
                f"{cfg.large_lr} (cosine), seed {cfg.seed}, {stop}")
    before = _read_json(Path(init) / "ttscale_meta.json")
    return (f"the same data stream as policy-small, batch {cfg.large_batch}; continued from "
            f"an earlier policy-large ({_snapshot(before)}) at learning rate {cfg.large_lr} "
            f"(cosine, new schedule; step numbers below count from the continuation), seed "
            f"{cfg.seed}, {stop}")


def write_cards(cfg: Any, only: tuple[str, ...] | None = None) -> None:
    """Write every model card, or the ``only`` ones (a model rebuilt on its own)."""
    out, work, seed = Path(cfg.out), Path(cfg.work), cfg.seed
    common = COMMON.format(seed=seed)
    small_meta = _read_json(out / "policy-small" / "ttscale_meta.json")
    large_meta = _read_json(out / "policy-large" / "ttscale_meta.json")
    n_small = _params(out / "policy-small")
    n_large = _params(out / "policy-large")
    target = ("a step-correct sample, or the reference solution where no sample was right"
              if getattr(cfg, "revision_reference", False) else "a step-correct sample")
    cards = {
        "policy-small": f"""# policy-small

The testbed's small policy ({n_small:,} parameters). {_arch(SMALL)}.

Training: supervised on gold solutions of fresh train-split questions (an endless seeded
stream), batch {cfg.small_batch}, learning rate {cfg.small_lr} (cosine), seed {seed}. Snapshots
every {cfg.eval_every} steps were scored on 140 dev questions; this is the snapshot whose sampled
dev pass@1 was closest to {cfg.weak_target} — right often enough to learn from, wrong often
enough for search to matter — {_snapshot(small_meta)}.
Stage time (small policy and PRM body together): {_stage_seconds(work, 'small')}.
{common}""",
        "policy-large": f"""# policy-large

The testbed's large policy ({n_large:,} parameters, {n_large / n_small:.1f}x policy-small), for
the FLOPs-matched comparison. {_arch(LARGE)}.

Training: {_large_training(cfg)}; shipped snapshot (the best dev greedy accuracy):
{_snapshot(large_meta)}.
Stage time: {_stage_seconds(work, 'large')}.
{common}""",
        "prm": f"""# prm

The testbed's process reward model (`ttscale.verifiers.certainty_prm.CertaintyPRM`,
{_params(out / 'prm'):,} parameters; load with `ttscale.verifiers.load_verifier(path)` or
`AutoModelForTokenClassification` after `import ttscale.verifiers.certainty_prm`). Its body is the
policy-small training run continued until dev greedy accuracy reached {cfg.strong_greedy} (a
verifier must be better at the skill than the policy it checks), frozen; its head reads the
body's hidden state and its log-probability of every solution token (running minimum) at the end
of each step. The head was trained on Math-Shepherd Monte-Carlo labels ({cfg.prm_label} labels:
fraction of {cfg.label_rollouts} rollouts of policy-small that reach the gold answer from each
step prefix; {cfg.label_questions} train questions x {cfg.label_samples} samples), binary
cross-entropy, {cfg.prm_epochs} epochs, learning rate {cfg.prm_lr}, seed {seed}. Why this
architecture, and the ablation against a plain head and against exact labels: docs/testbed.md.
Stage times: labels {_stage_seconds(work, 'labels')}, training {_stage_seconds(work, 'prm')}.
{common}""",
        "revision": f"""# revision

The testbed's revision model ({_params(out / 'revision'):,} parameters), fine-tuned from
policy-small on revision trajectories as in Snell et al. 2024: {cfg.revision_samples} samples
per question at temperature 1 on {cfg.revision_questions} train questions; each trajectory is 0-4
incorrect attempts (the last one the closest to the correct answer by character edit distance)
followed by a correct one
({target}). Prompt format: `TestbedTask.revision_prompt` (each earlier attempt on a
`P:` line, steps joined by `;`), then the new attempt. {cfg.revision_epochs} epochs, learning rate
{cfg.revision_lr}, seed {seed}. Stage time: {_stage_seconds(work, 'revision')}.
{common}""",
    }
    for name, text in cards.items():
        if only is None or name in only:
            (out / name / "README.md").write_text(text)
