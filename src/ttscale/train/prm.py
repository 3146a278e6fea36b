"""Train a process reward model: a token-classification head read at the end of every step.

Data are the JSON lines written by ``ttscale label`` (``mc_labels.py``): each sampled solution
with per-step ``soft`` (fraction of rollouts reaching the gold answer), ``hard`` (any did) and,
on the testbed, ``exact`` labels. The loss is binary cross-entropy against the chosen labels at
the last token of each step's delimiter; every other position is ignored.

Built on the transformers ``Trainer`` (a custom loss only), so the same command trains a PRM on
a user's own model; ``init`` is any causal LM checkpoint, whose body is reused and whose head is
replaced by a one-logit scorer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
)

from ttscale.train.common import pad_batch, read_jsonl
from ttscale.verifiers.certainty_prm import CertaintyPRM
from ttscale.verifiers.hf_prm import TokenClassificationPRM

#: "outcome": the solution's final correctness at every step end (an outcome reward model
#: trained the way Cobbe et al. train a verifier; ``train.orm`` writes these labels)
LABEL_KINDS = ("soft", "hard", "exact", "outcome")


@dataclass
class PRMExample:
    input_ids: list[int]
    labels: list[float]  # -100 where ignored


def _label_record(rec: Any) -> dict:
    if not isinstance(rec, dict) or not isinstance(rec.get("solutions"), list):
        raise ValueError("need an object with a 'solutions' list")
    _check_solutions(rec["solutions"])
    return rec


def load_label_records(path: Path) -> list[dict]:
    return read_jsonl(path, _label_record, "not a label record", "no label records")


def _check_solutions(solutions: list) -> None:
    """Each solution has a list of steps and, for every label kind present, one label a step.

    Empty solutions are not checked (they are skipped, and files written before the labeller
    stopped giving them one label are still read)."""
    for i, sol in enumerate(solutions):
        if not isinstance(sol, dict) or not isinstance(sol.get("steps"), list):
            raise ValueError(f"solution {i}: need an object with a 'steps' list")
        for kind in LABEL_KINDS if sol["steps"] else ():
            if kind in sol and (not isinstance(sol[kind], list)
                                or len(sol[kind]) != len(sol["steps"])):
                raise ValueError(f"solution {i}: {kind!r} needs one label per step "
                                 f"({len(sol['steps'])})")


def build_examples(records: list[dict], encoder: TokenClassificationPRM, label_kind: str,
                   dedupe: bool = True) -> list[PRMExample]:
    """One example per distinct solution text (duplicates would over-weight easy answers).

    Inputs are encoded exactly as ``TokenClassificationPRM`` encodes them at scoring time."""
    if label_kind not in LABEL_KINDS:
        raise ValueError(f"unknown label kind {label_kind!r}; choose one of {LABEL_KINDS}")
    out, seen = [], set()
    for rec in records:
        for sol in rec["solutions"]:
            if label_kind not in sol:
                raise ValueError(f"problem {rec.get('problem_id')}: no {label_kind!r} labels")
            key = (rec["prompt"], tuple(sol["steps"]))
            if not sol["steps"] or (dedupe and key in seen):
                continue
            seen.add(key)
            ids, pos = encoder.encode(rec["prompt"], sol["steps"])
            labels = [-100.0] * len(ids)
            for p, y in zip(pos, sol[label_kind], strict=True):
                labels[p] = float(y)
            out.append(PRMExample(ids, labels))
    return out


class _ListDataset(Dataset):
    def __init__(self, items: list[PRMExample]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> PRMExample:
        return self.items[i]


class PRMTrainer(Trainer):
    """BCE on the step-end positions only (soft targets allowed)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        logits = model(**inputs).logits.squeeze(-1)
        mask = labels != -100
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits[mask], labels[mask].to(logits.dtype))
        return (loss, logits) if return_outputs else loss


@dataclass(frozen=True)
class PRMTrainConfig:
    label_kind: str = "soft"
    epochs: float = 3.0
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    seed: int = 0
    delimiter: str = "\n"
    #: "token-classification" (a head on the LM's hidden state) or "certainty" (the head also
    #: reads the LM's per-token log-probabilities; see verifiers/certainty_prm.py)
    arch: str = "token-classification"
    #: the token that ends the prompt (certainty arch: where the solution starts)
    prompt_end: str = "\n"
    train_body: bool = False
    #: certainty arch, multi-line prompts (revision prompts): the solution starts after the
    #: first prompt end that follows this token's last occurrence (testbed: "Q")
    prompt_marker: str | None = None


def _is_certainty_prm(init: Path) -> bool:
    import json

    try:
        cfg = json.loads((Path(init) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return cfg.get("model_type") == "ttscale_certainty_prm"


def reset_certainty_head(model: CertaintyPRM) -> None:
    """The head of ``CertaintyPRM.from_language_model``: certainty only, confident -> high."""
    with torch.no_grad():
        model.score.weight.zero_()
        model.score.weight[0, model.config.hidden_size] = 1.0
        model.score.bias.fill_(2.0)


def train_prm(init: Path, labels_path: Path, out_dir: Path, cfg: PRMTrainConfig,
              log_every: int = 50) -> dict:
    """Fine-tune ``init`` (a causal LM or PRM checkpoint) into a PRM saved at ``out_dir``."""
    tokenizer = AutoTokenizer.from_pretrained(init)
    records = load_label_records(labels_path)
    torch.manual_seed(cfg.seed)
    if cfg.arch == "certainty":
        end_id = tokenizer.convert_tokens_to_ids(cfg.prompt_end)
        if end_id is None or end_id == tokenizer.unk_token_id:
            raise ValueError(f"prompt end {cfg.prompt_end!r} is not one token of {init}")
        if _is_certainty_prm(init):
            # a trained certainty PRM (e.g. the shipped testbed prm): its strong body is reused
            # and its head starts again from "certainty only"
            model = CertaintyPRM.from_pretrained(str(init), dtype=torch.float32)
            model.config.prompt_end_token_id = end_id
            reset_certainty_head(model)
        else:
            model = CertaintyPRM.from_language_model(str(init), end_id, cfg.train_body)
        if cfg.prompt_marker is not None:
            marker_id = tokenizer.convert_tokens_to_ids(cfg.prompt_marker)
            if marker_id is None or marker_id == tokenizer.unk_token_id:
                raise ValueError(f"prompt marker {cfg.prompt_marker!r} is not one token of "
                                 f"{init}")
            model.config.prompt_marker_token_id = marker_id
    elif cfg.arch == "token-classification":
        model = AutoModelForTokenClassification.from_pretrained(init, num_labels=1,
                                                                dtype=torch.float32)
    else:
        raise ValueError(f"unknown PRM arch {cfg.arch!r}; choose token-classification or certainty")
    encoder = TokenClassificationPRM(model, tokenizer, cfg.delimiter)
    examples = build_examples(records, encoder, cfg.label_kind)
    random.Random(cfg.seed).shuffle(examples)
    model.config.problem_type = "regression"
    model.config.ttscale = {"kind": "orm" if cfg.label_kind == "outcome" else "prm",
                            "arch": cfg.arch, "label_kind": cfg.label_kind,
                            "step_delimiter": cfg.delimiter, "init": str(init)}

    def collate(items: list[PRMExample]) -> dict[str, torch.Tensor]:
        return pad_batch([x.input_ids for x in items], tokenizer.pad_token_id,
                         [x.labels for x in items], label_pad=-100.0)

    args = TrainingArguments(
        output_dir=str(out_dir / "_trainer"), num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type="cosine", logging_steps=log_every, save_strategy="no", report_to=[],
        use_cpu=not torch.cuda.is_available(), seed=cfg.seed, disable_tqdm=True,
        remove_unused_columns=False,
    )
    trainer = PRMTrainer(model=model, args=args, train_dataset=_ListDataset(examples),
                         data_collator=collate)
    out = trainer.train()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"examples": len(examples), "train_loss": out.training_loss,
            "steps": out.global_step}
