"""An outcome reward model run in-process: one score for a whole solution.

It fits the ``StepScorer`` interface by repeating that score for every step, so the ``last``,
``min`` and ``mean`` aggregations return it (``prod`` compounds it over the steps) and every
strategy runs unchanged; but a partial solution is scored as if it were finished, which is why the
paper prefers PRMs for search.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ttscale.hf_loading import check_model_dir, count_parameters, load_tokenizer
from ttscale.verifiers.base import StepScores
from ttscale.verifiers.checkpoint import load_checked
from ttscale.verifiers.hf_prm import _check_inputs, label_probs

__all__ = ["OutcomeRM"]


class OutcomeRM:
    """A ``StepScorer`` over an ``AutoModelForSequenceClassification`` (1 label: sigmoid;
    2 labels: p(label 1)). Input = BOS + prompt + steps each followed by ``step_delimiter``."""

    def __init__(self, model: Any, tokenizer: Any, step_delimiter: str = "\n", *,
                 add_bos: bool = True, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.step_delimiter = step_delimiter
        self.bos_id: int | None = tokenizer.bos_token_id if add_bos else None
        self.max_batch = max_batch
        self.num_parameters = count_parameters(model)
        self.device = next(model.parameters()).device
        self.max_len: int | None = getattr(model.config, "max_position_embeddings", None)
        # sequence classifiers pool at the last token that is not the config's pad id
        if model.config.pad_token_id is None:
            model.config.pad_token_id = next(
                (i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
        self.pad_id: int = model.config.pad_token_id

    @classmethod
    def from_pretrained(cls, path: str | Path, step_delimiter: str = "\n", device: str = "cpu",
                        dtype: str | torch.dtype | None = None, **kwargs: Any) -> OutcomeRM:
        from transformers import AutoModelForSequenceClassification

        p = check_model_dir(path, "ORM")
        tokenizer = load_tokenizer(p)
        model = load_checked(AutoModelForSequenceClassification, p,
                             "sequence-classification ORM", dtype, device)
        return cls(model.to(device), tokenizer, step_delimiter, **kwargs)

    def _encode(self, prompts: Sequence[str],
                solutions: Sequence[Sequence[str]]) -> list[list[int]]:
        texts = [p + "".join(s + self.step_delimiter for s in steps)
                 for p, steps in zip(prompts, solutions, strict=True)]
        if not texts:
            return []
        enc = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        head = [self.bos_id] if self.bos_id is not None else []
        return [head + list(ids) for ids in enc]

    def score(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> StepScores:
        _check_inputs(prompts, solutions)
        todo = [i for i, s in enumerate(solutions) if len(s)]
        seqs = self._encode([prompts[i] for i in todo], [solutions[i] for i in todo])
        for i, s in zip(todo, seqs, strict=True):
            if self.max_len is not None and len(s) > self.max_len:
                raise ValueError(f"solution {i}: {len(s)} tokens exceed the ORM's context of "
                                 f"{self.max_len} tokens")
        whole: dict[int, float] = {}
        order = sorted(range(len(todo)), key=lambda k: -len(seqs[k]))
        with torch.inference_mode():
            for start in range(0, len(order), self.max_batch):
                chunk = order[start:start + self.max_batch]
                self._score_chunk([seqs[k] for k in chunk], [todo[k] for k in chunk], whole)
        scores = [[whole[i]] * len(s) if len(s) else [] for i, s in enumerate(solutions)]
        return StepScores(scores, sum(len(s) for s in seqs))

    def _score_chunk(self, seqs: list[list[int]], ids: list[int], out: dict[int, float]) -> None:
        """Left padding puts every row's last token in the last column; a row whose last token
        equals the pad id would be pooled at the wrong place, so it is scored alone."""
        alone = [k for k, s in enumerate(seqs) if s[-1] == self.pad_id]
        batch = [k for k in range(len(seqs)) if k not in alone]
        if batch:
            probs = self._forward([seqs[k] for k in batch])
            for k, p in zip(batch, probs, strict=True):
                out[ids[k]] = p
        for k in alone:
            out[ids[k]] = self._forward_unpadded(seqs[k])

    def _forward(self, seqs: list[list[int]]) -> list[float]:
        width = max(len(s) for s in seqs)
        x = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            x[r, width - len(s):] = torch.tensor(s)
            mask[r, width - len(s):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=x.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), use_cache=False)
        return label_probs(out.logits).cpu().tolist()

    def _forward_unpadded(self, seq: list[int]) -> float:
        # a batch of one without a pad id configured makes the classifier pool the last position
        config = self.model.config
        saved, config.pad_token_id = config.pad_token_id, None
        try:
            out = self.model(input_ids=torch.tensor([seq], device=self.device), use_cache=False)
        finally:
            config.pad_token_id = saved
        return float(label_probs(out.logits)[0])
