"""Supervised fine-tuning of a causal LM on (prompt, completion) pairs, loss on the completion.

Used for the policy (question -> solution) and the revision model (question + earlier attempts ->
corrected attempt). Built on the transformers ``Trainer``; data may be a finite list (a user's
JSONL) or an endless stream (the procedural testbed), in which case ``max_steps`` bounds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from torch.utils.data import Dataset, IterableDataset
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from ttscale.train.common import pad_batch, read_jsonl

Pair = tuple[str, str]


def encode_pair(tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str,
                add_bos: bool = True) -> tuple[list[int], list[int]]:
    """Token ids of bos + prompt + completion + eos, and labels masking the prompt."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if add_bos and tokenizer.bos_token_id is not None:
        p = [tokenizer.bos_token_id] + p
    return p + c, [-100] * len(p) + c


def read_pairs(path: Path) -> list[Pair]:
    """JSONL lines with ``prompt`` and ``completion``; a bad line names file and line."""
    return read_jsonl(path, lambda rec: (str(rec["prompt"]), str(rec["completion"])),
                      "need prompt and completion", "no training pairs")


class _Encoded(Dataset):
    def __init__(self, tokenizer: PreTrainedTokenizerBase, pairs: list[Pair]) -> None:
        self.items = [encode_pair(tokenizer, p, c) for p, c in pairs]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.items[i]


class _Stream(IterableDataset):
    def __init__(self, tokenizer: PreTrainedTokenizerBase,
                 make_stream: Callable[[], Iterator[Pair]]) -> None:
        self.tokenizer, self.make_stream = tokenizer, make_stream

    def __iter__(self) -> Iterator[tuple[list[int], list[int]]]:
        for p, c in self.make_stream():
            yield encode_pair(self.tokenizer, p, c)


class EveryNSteps(TrainerCallback):
    """Calls ``fn(step, model)`` every ``every`` optimizer steps; ``fn`` returns True to stop."""

    def __init__(self, every: int, fn: Callable[[int, PreTrainedModel], bool]) -> None:
        self.every, self.fn = every, fn

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 and self.fn(state.global_step, model):
            control.should_training_stop = True
        return control


def train_sft(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
              data: list[Pair] | Callable[[], Iterator[Pair]], out_dir: Path, *,
              max_steps: int = -1, epochs: float = 1.0, batch_size: int = 64,
              learning_rate: float = 3e-3, warmup_steps: int = 50, seed: int = 0,
              callbacks: Iterable[TrainerCallback] = (), log_every: int = 50,
              checkpoint_every: int | None = None) -> dict:
    """Train in place and save model + tokenizer to ``out_dir``; returns a small summary.

    ``checkpoint_every``: keep the latest Trainer checkpoint (weights, optimizer, schedule,
    data position) under ``out_dir/_trainer`` every that many steps, and resume from it when
    one is there, so a killed long run continues where it stopped instead of starting over.
    """
    dataset = (_Encoded(tokenizer, data) if isinstance(data, list)
               else _Stream(tokenizer, data))
    if isinstance(dataset, IterableDataset) and max_steps <= 0:
        raise ValueError("a streamed dataset needs max_steps > 0")

    def collate(items: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        return pad_batch([i for i, _ in items], tokenizer.pad_token_id, [lab for _, lab in items])

    checkpoints = ({"save_strategy": "steps", "save_steps": checkpoint_every,
                    "save_total_limit": 1} if checkpoint_every else {"save_strategy": "no"})
    args = TrainingArguments(
        output_dir=str(out_dir / "_trainer"), max_steps=max_steps, num_train_epochs=epochs,
        per_device_train_batch_size=batch_size, learning_rate=learning_rate,
        warmup_steps=warmup_steps, lr_scheduler_type="cosine", weight_decay=0.01,
        logging_steps=log_every, report_to=[], seed=seed, **checkpoints,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                      callbacks=list(callbacks))
    resume = checkpoint_every is not None and any(
        (out_dir / "_trainer").glob("checkpoint-*"))
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"steps": result.global_step, "train_loss": result.training_loss}
