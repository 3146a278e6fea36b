"""Process reward models that are causal LMs: math-shepherd style (+/- token probabilities at a
step tag) and Skywork-o1-Open-PRM style (a scalar value head on the hidden states).

Why a module of their own: these checkpoints are not token classifiers. Loaded through
``AutoModelForTokenClassification`` they get a freshly initialised head and score noise (see
``ttscale.verifiers.checkpoint``). Each family here reads the model the way its authors do:

* ``MathShepherdPRM`` (Wang et al. 2024, ``peiyi9979/math-shepherd-mistral-7b-prm``): the input
  is ``question + " " + step_1 + " ки" + "\\n" + step_2 + " ки" ...``; at each step tag the model
  predicts the next token, and the step's score is P(good) / (P(good) + P(bad)), the softmax of
  the language-model logits of the good (``+``) and bad (``-``) tokens only.
* ``ValueHeadPRM`` (``Skywork/Skywork-o1-Open-PRM-Qwen-2.5-*``, TRL's value-head models): a causal
  LM whose checkpoint also stores ``v_head.summary.{weight,bias}``, a linear map from the last
  hidden state to one logit; the step's score is its sigmoid at the step token that ends the step.
  The input is built the way Skywork's ``prepare_input`` builds it: BOS + ``question + "\\n"``,
  then each step tokenised on its own followed by the step token ("\\n").

Both are causal, so a step's score depends only on the question and the steps up to it, and one
pass scores every prefix (beam search relies on that).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ttscale.hf_loading import check_model_dir, load_tokenizer
from ttscale.verifiers.base import StepScores
from ttscale.verifiers.checkpoint import (
    MissingWeightsError,
    checkpoint_keys,
    load_checked,
    read_tensors,
)
from ttscale.verifiers.hf_prm import _BatchedScorer, _check_inputs, step_end_positions
from ttscale.verifiers.prm_input import SHEPHERD_STEP_TAG, question_of_prompt, shepherd_text

__all__ = ["MathShepherdPRM", "ValueHeadModel", "ValueHeadPRM", "candidate_token_ids"]

VALUE_HEAD_PREFIX = "v_head.summary."


def candidate_token_ids(tokenizer: Any, good: str, bad: str) -> tuple[int, int]:
    """Ids of the good and bad label tokens: math-shepherd's own recipe
    (``tokenizer.encode(f"{good} {bad}")`` without special tokens, when that gives two tokens:
    ``▁+`` and ``▁-`` on sentencepiece vocabularies), else the two strings as vocabulary
    tokens."""
    pair = tokenizer.encode(f"{good} {bad}", add_special_tokens=False)
    if len(pair) == 2 and pair[0] != pair[1]:
        return int(pair[0]), int(pair[1])
    ids = []
    for t in (good, bad):
        i = tokenizer.convert_tokens_to_ids(t)
        if i is None or i == tokenizer.unk_token_id:
            raise ValueError(f"the PRM tokenizer has no single token for the label {t!r}; pass "
                             "good_token/bad_token (or good_token_id/bad_token_id) that it has")
        ids.append(int(i))
    if ids[0] == ids[1]:
        raise ValueError(f"the good and bad label tokens are the same token ({ids[0]})")
    return ids[0], ids[1]


class MathShepherdPRM(_BatchedScorer):
    """A ``StepScorer`` over a math-shepherd style causal-LM PRM (see the module docstring).

    ``step_tag`` is written after each step (after a space); ``step_separator`` between steps.
    ``good_token``/``bad_token`` (or their ids) are the label tokens; ``question_of`` maps the
    policy prompt to the question (default: the user turn of a chat prompt, else the prompt).
    """

    def __init__(self, model: Any, tokenizer: Any, *, step_tag: str = SHEPHERD_STEP_TAG,
                 good_token: str = "+", bad_token: str = "-", good_token_id: int | None = None,
                 bad_token_id: int | None = None, step_separator: str = "\n",
                 question_of: Callable[[str], str] | None = None, add_bos: bool = True,
                 max_batch: int = 16, max_batch_tokens: int = 65536) -> None:
        if not step_tag:
            raise ValueError("step_tag must be a non-empty string")
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("MathShepherdPRM needs a fast tokenizer (offset mappings)")
        if model.get_output_embeddings() is None:
            raise ValueError("MathShepherdPRM needs a causal LM with an output (lm_head) layer")
        super().__init__(model, tokenizer, max_batch, max_batch_tokens)
        if good_token_id is None or bad_token_id is None:
            good_token_id, bad_token_id = candidate_token_ids(tokenizer, good_token, bad_token)
        self.label_ids = torch.tensor([good_token_id, bad_token_id])
        self.step_tag = step_tag
        self.step_separator = step_separator
        self.question_of = question_of or question_of_prompt
        self.bos_id: int | None = tokenizer.bos_token_id if add_bos else None

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu",
                        dtype: str | torch.dtype | None = None,
                        **kwargs: Any) -> MathShepherdPRM:
        """Load a local causal-LM PRM (``AutoModelForCausalLM``; a checkpoint without the
        language-model head is refused)."""
        from transformers import AutoModelForCausalLM

        p = check_model_dir(path, "PRM")
        tokenizer = load_tokenizer(p)
        model = load_checked(AutoModelForCausalLM, p, "causal-LM PRM (math-shepherd style)",
                             dtype, device)
        kwargs.pop("step_delimiter", None)  # the step tag is the model's, not the task's
        return cls(model.to(device), tokenizer, **kwargs)

    def render(self, prompt: str, steps: Sequence[str]) -> tuple[str, list[int]]:
        """The text the PRM reads, and the index of the last character of each step tag."""
        return shepherd_text(self.question_of(prompt), steps, self.step_tag, self.step_separator)

    def _encode_many(self, prompts: Sequence[str],
                     solutions: Sequence[Sequence[str]]) -> list[tuple[list[int], list[int]]]:
        if not prompts:
            return []
        rendered = [self.render(p, s) for p, s in zip(prompts, solutions, strict=True)]
        enc = self.tokenizer([r[0] for r in rendered], add_special_tokens=False,
                             return_offsets_mapping=True)
        head = [self.bos_id] if self.bos_id is not None else []
        out = []
        for ids, offsets, (_, ends) in zip(enc["input_ids"], enc["offset_mapping"], rendered,
                                           strict=True):
            pos = step_end_positions(offsets, ends) if ends else []
            out.append((head + list(ids), [q + len(head) for q in pos]))
        return out

    def _scores_at(self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor,
                   cols: torch.Tensor) -> torch.Tensor:
        # the language-model head only at the tag positions: a 7B PRM's full-vocabulary logits
        # at every position would cost gigabytes for nothing
        hidden = self.model.base_model(input_ids=ids, attention_mask=mask,
                                       use_cache=False).last_hidden_state
        at = hidden[rows.to(hidden.device), cols.to(hidden.device)]
        logits = self.model.get_output_embeddings()(at)
        pair = logits[:, self.label_ids.to(logits.device)].float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:  # Gemma-2 style models cap their logits after the head
            pair = torch.tanh(pair / cap) * cap
        return torch.softmax(pair, dim=-1)[:, 0]

    def score(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> StepScores:
        _check_inputs(prompts, solutions)
        return self._score_encoded(self._encode_many(prompts, solutions))


class ValueHeadModel(nn.Module):
    """A transformer backbone and a linear value head (hidden -> 1 logit), as one module so
    that parameters are counted (FLOPs) and moved together."""

    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.v_head = head
        self.config = backbone.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                **kw: Any) -> torch.Tensor:
        """Value logits ``[batch, seq, 1]``."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               **kw).last_hidden_state
        return self.v_head(hidden.to(self.v_head.weight.dtype))


class ValueHeadPRM(_BatchedScorer):
    """A ``StepScorer`` over a Skywork-o1-Open-PRM style value-head PRM (module docstring).

    ``step_token`` ends every step ("\\n" for Skywork); its id is the last token of
    ``tokenizer.encode(step_token)``. ``question_of``: as for ``MathShepherdPRM``.
    """

    def __init__(self, model: ValueHeadModel, tokenizer: Any, *, step_token: str = "\n",
                 question_of: Callable[[str], str] | None = None, add_bos: bool = True,
                 max_batch: int = 16, max_batch_tokens: int = 65536) -> None:
        if not step_token:
            raise ValueError("step_token must be a non-empty string")
        super().__init__(model, tokenizer, max_batch, max_batch_tokens)
        ids = tokenizer.encode(step_token, add_special_tokens=False)
        if not ids:
            raise ValueError(f"the tokenizer turns the step token {step_token!r} into no token")
        self.step_id = int(ids[-1])
        self.step_token = step_token
        self.question_of = question_of or question_of_prompt
        self.bos_id: int | None = tokenizer.bos_token_id if add_bos else None

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu",
                        dtype: str | torch.dtype | None = None,
                        head_prefix: str = VALUE_HEAD_PREFIX, **kwargs: Any) -> ValueHeadPRM:
        """Load a local value-head PRM: the backbone through ``AutoModel`` (the checkpoint's
        ``lm_head`` is not needed), the head from the ``{head_prefix}weight``/``bias`` tensors
        of its safetensors files. A checkpoint without them is refused before the backbone
        is loaded."""
        from transformers import AutoModel

        p = check_model_dir(path, "PRM")
        keys = checkpoint_keys(p)
        want = [f"{head_prefix}weight", f"{head_prefix}bias"]
        if not keys:
            raise ValueError(f"{p}: a value-head PRM needs safetensors weights "
                             "(model.safetensors or its sharded index)")
        if want[0] not in keys:
            lacking = [k for k in want if k not in keys]
            raise MissingWeightsError(
                f"{p}: not a value-head PRM checkpoint: it lacks {', '.join(lacking)} (the head "
                f"would be freshly initialised and score noise); choose the prm_kind that "
                f"matches the checkpoint")
        tokenizer = load_tokenizer(p)
        backbone = load_checked(AutoModel, p, "value-head PRM backbone", dtype, device)
        tensors = read_tensors(p, head_prefix)
        weight = tensors["weight"]
        if weight.dim() != 2 or weight.shape[0] != 1 or \
                weight.shape[1] != backbone.config.hidden_size:
            raise MissingWeightsError(
                f"{p}: {head_prefix}weight has shape {tuple(weight.shape)}, expected "
                f"(1, {backbone.config.hidden_size})")
        head = nn.Linear(weight.shape[1], 1, bias="bias" in tensors)
        with torch.no_grad():
            head.weight.copy_(weight)
            if "bias" in tensors:
                head.bias.copy_(tensors["bias"])
        head = head.to(device=device, dtype=next(backbone.parameters()).dtype)
        kwargs.pop("step_delimiter", None)  # the step token is the model's, not the task's
        return cls(ValueHeadModel(backbone, head).to(device), tokenizer, **kwargs)

    def encode(self, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """Skywork's ``prepare_input``: token ids and the position of each step's end token."""
        head = [self.bos_id] if self.bos_id is not None else []
        ids = head + self.tokenizer.encode(self.question_of(prompt) + "\n",
                                           add_special_tokens=False)
        positions = []
        for step in steps:
            ids += self.tokenizer.encode(step, add_special_tokens=False) + [self.step_id]
            positions.append(len(ids) - 1)
        return ids, positions

    def _scores_at(self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor,
                   cols: torch.Tensor) -> torch.Tensor:
        hidden = self.model.backbone(input_ids=ids, attention_mask=mask,
                                     use_cache=False).last_hidden_state
        at = hidden[rows.to(hidden.device), cols.to(hidden.device)]
        return torch.sigmoid(self.model.v_head(at.to(self.model.v_head.weight.dtype))[:, 0]
                             .float())

    def score(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> StepScores:
        _check_inputs(prompts, solutions)
        return self._score_encoded([self.encode(prompt, steps) if len(steps) else ([], [])
                                    for prompt, steps in zip(prompts, solutions, strict=True)])
