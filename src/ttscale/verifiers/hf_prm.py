"""Process reward models run in-process with transformers.

Two input conventions, one batching core:

* ``TokenClassificationPRM``: a token-classification head (the testbed PRM, and PRMs trained by
  ``ttscale train prm``). Input = BOS + prompt + steps, each followed by the step delimiter; the
  score of step k is read at the token holding the last character of step k's delimiter. This is
  the exact rule the trainer (``ttscale.train.prm``) labels, so scores mean what was trained.
* ``QwenPRM``: the Qwen2.5-Math-PRM convention: a chat (system / user question / assistant steps
  joined by ``<extra_0>`` with a trailing ``<extra_0>``), scores read at the ``<extra_0>`` tokens.

Because the models are causal, the score of step k depends only on the prompt and steps 1..k, so
scoring a whole solution gives every prefix's score in one pass.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import ttscale.verifiers.certainty_prm  # noqa: F401  (registers the certainty PRM with Auto*)
from ttscale.hf_loading import (
    check_model_dir,
    count_parameters,
    load_tokenizer,
    read_config,
)
from ttscale.verifiers.base import StepScores
from ttscale.verifiers.checkpoint import load_checked
from ttscale.verifiers.prm_input import (
    QWEN_STEP_TAG,
    QWEN_SYSTEM,
    question_of_prompt,
    qwen_messages,
)

__all__ = ["QWEN_STEP_TOKEN", "QWEN_SYSTEM", "QwenPRM", "TokenClassificationPRM", "label_probs",
           "step_end_positions"]

QWEN_STEP_TOKEN = QWEN_STEP_TAG


def label_probs(logits: torch.Tensor) -> torch.Tensor:
    """Scores in [0, 1] from classifier logits ``[..., num_labels]``: sigmoid of the single logit
    (num_labels=1) or the softmax probability of label 1 (num_labels=2)."""
    n = logits.shape[-1]
    if n == 1:
        return torch.sigmoid(logits[..., 0].float())
    if n == 2:
        return torch.softmax(logits.float(), dim=-1)[..., 1]
    raise ValueError(f"a reward model head must have 1 or 2 labels, this one has {n}")


def step_end_positions(offsets: Sequence[tuple[int, int]], char_ends: Sequence[int]) -> list[int]:
    """For each character index in ``char_ends``, the index of the last token starting at or
    before it (the token holding it; for tokenizers that drop characters, the nearest before)."""
    starts = [o[0] for o in offsets]
    out = []
    for c in char_ends:
        j = bisect_right(starts, c) - 1
        if j < 0:
            raise ValueError(f"no token covers character {c}")
        out.append(j)
    return out


def _check_inputs(prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> None:
    if len(prompts) != len(solutions):
        raise ValueError(f"score() got {len(prompts)} prompts but {len(solutions)} solutions")
    for i, sol in enumerate(solutions):
        if isinstance(sol, str):
            raise ValueError(f"solution {i} is a string; pass its list of steps")


class _BatchedScorer:
    """Right-padded, length-sorted micro-batches through a model returning per-token logits."""

    def __init__(self, model: Any, tokenizer: Any, max_batch: int, max_batch_tokens: int) -> None:
        if max_batch < 1 or max_batch_tokens < 1:
            raise ValueError("max_batch and max_batch_tokens must be >= 1")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_batch_tokens = max_batch_tokens
        self.num_parameters = count_parameters(model)
        self.device = next(model.parameters()).device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.max_len: int | None = getattr(model.config, "max_position_embeddings", None)

    def _check_length(self, i: int, n: int) -> None:
        if self.max_len is not None and n > self.max_len:
            raise ValueError(f"solution {i}: {n} tokens exceed the verifier's context of "
                             f"{self.max_len} tokens")

    def _chunks(self, order: list[int], lengths: list[int]) -> list[list[int]]:
        chunks: list[list[int]] = []
        for i in order:  # longest first, so a chunk's first row sets its width
            if chunks and len(chunks[-1]) < self.max_batch and \
                    lengths[chunks[-1][0]] * (len(chunks[-1]) + 1) <= self.max_batch_tokens:
                chunks[-1].append(i)
            else:
                chunks.append([i])
        return chunks

    def _forward_logits(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=mask, use_cache=False)
        return out.logits if hasattr(out, "logits") else out[0]

    def _scores_at(self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor,
                   cols: torch.Tensor) -> torch.Tensor:
        """Scores in [0, 1] at (row, column) token positions of one padded micro-batch; the
        families differ only here (classifier head, +/- token probabilities, value head)."""
        logits = self._forward_logits(ids, mask)
        return label_probs(logits[rows.to(logits.device), cols.to(logits.device)])

    def _score_encoded(self, encoded: Sequence[tuple[list[int], list[int]]]) -> StepScores:
        """Scores of solutions already encoded as (token ids, step-end positions), with the
        tokens the verifier read (solutions without steps read none)."""
        seqs, positions = [e[0] for e in encoded], [e[1] for e in encoded]
        for i, s in enumerate(seqs):
            if positions[i]:
                self._check_length(i, len(s))
        scores = self._score_positions(seqs, positions)
        return StepScores(scores, sum(len(s) for s, p in zip(seqs, positions, strict=True) if p))

    def _score_positions(self, seqs: list[list[int]],
                         positions: list[list[int]]) -> list[list[float]]:
        """Probability at each listed token position of each sequence."""
        lengths = [len(s) for s in seqs]
        result: list[list[float]] = [[] for _ in seqs]
        todo = [i for i in range(len(seqs)) if positions[i]]
        order = sorted(todo, key=lambda i: -lengths[i])
        with torch.inference_mode():
            for chunk in self._chunks(order, lengths):
                width = lengths[chunk[0]]
                ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for r, i in enumerate(chunk):
                    ids[r, :lengths[i]] = torch.tensor(seqs[i])
                    mask[r, :lengths[i]] = 1
                rows = torch.tensor([r for r, i in enumerate(chunk) for _ in positions[i]])
                cols = torch.tensor([p for i in chunk for p in positions[i]])
                probs = self._scores_at(ids.to(self.device), mask.to(self.device), rows, cols)
                flat = probs.float().cpu().tolist()
                k = 0
                for i in chunk:
                    result[i] = flat[k:k + len(positions[i])]
                    k += len(positions[i])
        return result


class TokenClassificationPRM(_BatchedScorer):
    """A ``StepScorer`` over an ``AutoModelForTokenClassification`` PRM (1 or 2 labels).

    ``step_delimiter`` follows each step in the scored text ("\\n" for the testbed, "\\n\\n" for
    MATH style). ``add_bos`` prepends the tokenizer's BOS token when it has one.
    """

    def __init__(self, model: Any, tokenizer: Any, step_delimiter: str = "\n", *,
                 add_bos: bool = True, max_batch: int = 64,
                 max_batch_tokens: int = 65536) -> None:
        if not step_delimiter:
            raise ValueError("step_delimiter must be a non-empty string")
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("TokenClassificationPRM needs a fast tokenizer (offset mappings)")
        super().__init__(model, tokenizer, max_batch, max_batch_tokens)
        self.step_delimiter = step_delimiter
        self.bos_id: int | None = tokenizer.bos_token_id if add_bos else None

    @classmethod
    def from_pretrained(cls, path: str | Path, step_delimiter: str | None = None,
                        device: str = "cpu", dtype: str | torch.dtype | None = None,
                        **kwargs: Any) -> TokenClassificationPRM:
        """Load a local PRM. ``step_delimiter`` defaults to the one recorded at training time
        (``config.ttscale.step_delimiter``), else "\\n"."""
        from transformers import AutoModelForTokenClassification

        p = check_model_dir(path, "PRM")
        if step_delimiter is None:
            meta = read_config(p).get("ttscale") or {}
            step_delimiter = meta.get("step_delimiter", "\n") if isinstance(meta, dict) else "\n"
        tokenizer = load_tokenizer(p)
        model = load_checked(AutoModelForTokenClassification, p, "token-classification PRM",
                             dtype, device)
        return cls(model.to(device), tokenizer, step_delimiter, **kwargs)

    def encode(self, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """Token ids of BOS + prompt + delimited steps, and each step's score position."""
        return self._encode_many([prompt], [steps])[0]

    def _encode_many(self, prompts: Sequence[str],
                     solutions: Sequence[Sequence[str]]) -> list[tuple[list[int], list[int]]]:
        if not prompts:
            return []
        texts, ends = [], []
        for prompt, steps in zip(prompts, solutions, strict=True):
            text, char_ends = prompt, []
            for step in steps:
                text += step + self.step_delimiter
                char_ends.append(len(text) - 1)
            texts.append(text)
            ends.append(char_ends)
        enc = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        head = [self.bos_id] if self.bos_id is not None else []
        out = []
        for ids, offsets, char_ends in zip(enc["input_ids"], enc["offset_mapping"], ends,
                                           strict=True):
            pos = step_end_positions(offsets, char_ends) if char_ends else []
            out.append((head + list(ids), [p + len(head) for p in pos]))
        return out

    def score(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> StepScores:
        _check_inputs(prompts, solutions)
        return self._score_encoded(self._encode_many(prompts, solutions))


class QwenPRM(_BatchedScorer):
    """A ``StepScorer`` with the Qwen2.5-Math-PRM input convention (2-way head, p(label 1)).

    ``question_of`` maps the problem prompt given to ``score`` to the question shown as the user
    turn (default: :func:`~ttscale.verifiers.prm_input.question_of_prompt`, the user turn of a
    chat-formatted policy prompt, else the prompt itself; the HTTP client does the same).
    """

    def __init__(self, model: Any, tokenizer: Any, *,
                 question_of: Callable[[str], str] | None = None,
                 system_prompt: str = QWEN_SYSTEM, step_token: str = QWEN_STEP_TOKEN,
                 max_batch: int = 16, max_batch_tokens: int = 65536) -> None:
        super().__init__(model, tokenizer, max_batch, max_batch_tokens)
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("QwenPRM needs a tokenizer with a chat template")
        step_id = tokenizer.convert_tokens_to_ids(step_token)
        if step_id is None or step_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {step_token!r} token")
        self.step_id: int = step_id
        self.step_token = step_token
        self.system_prompt = system_prompt
        self.question_of = question_of or question_of_prompt

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu",
                        dtype: str | torch.dtype | None = None,
                        trust_remote_code: bool | None = None, **kwargs: Any) -> QwenPRM:
        """Load a local Qwen-style PRM. The released Qwen2.5-Math-PRM ships its own model class
        (config ``auto_map``), loaded through ``AutoModel`` with remote code; pass
        ``trust_remote_code=False`` to refuse running code from the model directory."""
        from transformers import AutoModel, AutoModelForTokenClassification

        p = check_model_dir(path, "PRM")
        auto_map = read_config(p).get("auto_map") or {}
        remote = "AutoModel" in auto_map
        if remote and trust_remote_code is False:
            raise ValueError(f"{p} needs its own model code (config auto_map); "
                             "trust_remote_code=False forbids running it")
        tokenizer = load_tokenizer(p)
        if remote:
            model = load_checked(AutoModel, p, "Qwen-style PRM", dtype, device,
                                 trust_remote_code=True)
        else:
            model = load_checked(AutoModelForTokenClassification, p, "Qwen-style PRM", dtype,
                                 device)
        return cls(model.to(device), tokenizer, **kwargs)

    def render(self, prompt: str, steps: Sequence[str]) -> str:
        """The chat text the PRM reads for one solution."""
        messages = qwen_messages(self.system_prompt, self.question_of(prompt), steps,
                                 self.step_token)
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=False)

    def score(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> StepScores:
        _check_inputs(prompts, solutions)
        todo = [i for i, s in enumerate(solutions) if len(s)]
        texts = [self.render(prompts[i], solutions[i]) for i in todo]
        enc = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        seqs: list[list[int]] = [[] for _ in solutions]
        positions: list[list[int]] = [[] for _ in solutions]
        for i, ids in zip(todo, enc, strict=True):
            pos = [j for j, t in enumerate(ids) if t == self.step_id]
            if len(pos) != len(solutions[i]):
                raise ValueError(
                    f"solution {i}: {len(solutions[i])} steps but {len(pos)} {self.step_token} "
                    f"tokens after the chat template (does a step contain {self.step_token}?)")
            self._check_length(i, len(ids))
            seqs[i], positions[i] = list(ids), pos
        scores = self._score_positions(seqs, positions)
        return StepScores(scores, sum(len(s) for s in seqs))
