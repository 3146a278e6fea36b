"""A process reward model behind HTTP: vLLM's pooling API (``POST /pooling``), as used for
Qwen2.5-Math-PRM, or ``ttscale serve-prm`` which answers the same way.

How vLLM scores steps: the PRM is served as a pooling model (``vllm serve MODEL --runner pooling``;
vLLM releases before the runner rework spelled it ``--task reward``). Its STEP pooler finds every
occurrence of the step tag token in the input (``<extra_0>``, id 151651, for Qwen2.5-Math-PRM)
and returns, per occurrence, the softmax over the classifier's labels: ``[[p_bad, p_good], ...]``.
So the client writes the step tag after every step and reads ``p_good`` (``label_index``) of the
last ``len(steps)`` rows; any tag the prompt itself contains comes first and is skipped, and a
step that contains the tag is refused (its scores would shift).

Input formats (``input_format``):

* ``chat`` (Qwen2.5-Math-PRM's documented use): ``messages`` = system prompt, the question as the
  user turn, the steps joined and ended by the step tag as the assistant turn; the server applies
  the model's own chat template. One request per solution (the pooling API takes one chat per
  request), sent concurrently.
* ``chatml``: the same conversation rendered here in Qwen's ChatML, sent as text in batches.
* ``text``: ``prompt + step_1 + tag + step_2 + tag ...``, in batches. With the task's step
  delimiter as the tag this is exactly what a token-classification PRM trained by ttscale reads
  (``ttscale serve-prm`` serves those).
* ``math-shepherd``: ``question + " " + step_1 + " ки" + "\n" + step_2 + " ки" ...``, the text
  ``MathShepherdPRM`` scores in-process; vLLM serves such a causal-LM PRM as a STEP pooler that
  returns the softmax over the +/- tokens (``--override-pooler-config '{"pooling_type": "STEP",
  "step_tag_id": 12902, "returned_token_ids": [648, 387]}'`` for math-shepherd-mistral-7b-prm),
  so ``label_index`` is 0 (the ``+`` column).

For chat formats the user turn is the question: when the policy prompt is itself a chat
(a prompt template for an instruction-tuned policy), its user turn is taken
(``ttscale.verifiers.prm_input.question_of_prompt``, shared with the in-process ``QwenPRM``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

from ttscale.net.discovery import discover_model, guess_parameters
from ttscale.net.pool import ReplicaPool, ServerError
from ttscale.verifiers.base import StepScores
from ttscale.verifiers.prm_input import (
    QWEN_STEP_TAG,
    QWEN_SYSTEM,
    question_of_prompt,
    qwen_messages,
    render_chatml,
    shepherd_text,
)

__all__ = ["QWEN_STEP_TAG", "QWEN_SYSTEM", "HTTPPRM", "chatml_user_turn", "render_chatml"]

InputFormat = Literal["chat", "chatml", "text", "math-shepherd"]
_FORMATS = ("chat", "chatml", "text", "math-shepherd")

#: the old name of :func:`ttscale.verifiers.prm_input.question_of_prompt`
chatml_user_turn = question_of_prompt


class HTTPPRM:
    """A ``StepScorer`` over a pooling-API server (vLLM, or ``ttscale serve-prm``).

    ``model``: served name (None: the first the server lists). ``label_index``: which column of a
    score row is "the step is right" (1 for a 2-way softmax; a 1-wide row is used as is).
    ``num_parameters``: for FLOPs (default: ``ttscale serve-prm``'s report, else a guess from the
    model name, else 0). ``pooling_task``: sent as the request's ``task`` when set (newer vLLM
    accepts ``token_classify``). ``batch_size``: texts per request for the text formats.
    """

    def __init__(self, base_url: str | Sequence[str], model: str | None = None, *,
                 input_format: InputFormat = "chat", step_tag: str = QWEN_STEP_TAG,
                 system_prompt: str = QWEN_SYSTEM,
                 question_of: Callable[[str], str] | None = None, label_index: int = 1,
                 num_parameters: int | None = None, pooling_task: str | None = None,
                 batch_size: int = 16, api_key: str | None = None, max_concurrency: int = 8,
                 timeout_s: float = 300.0, retries: int = 5, backoff_s: float = 0.25,
                 backoff_max_s: float = 8.0) -> None:
        if input_format not in _FORMATS:
            raise ValueError(f"input_format must be one of {', '.join(_FORMATS)}, "
                             f"got {input_format!r}")
        if not step_tag:
            raise ValueError("step_tag must be a non-empty string")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.pool = ReplicaPool(base_url, max_concurrency=max_concurrency, timeout_s=timeout_s,
                                retries=retries, backoff_s=backoff_s,
                                backoff_max_s=backoff_max_s, headers=headers)
        self.input_format: InputFormat = input_format
        self.step_tag = step_tag
        self.system_prompt = system_prompt
        self.question_of = question_of or question_of_prompt
        self.label_index = label_index
        self.pooling_task = pooling_task
        self.batch_size = batch_size
        self._model = model
        self._num_parameters = num_parameters
        self._discovered = False

    @classmethod
    def for_kind(cls, base_url: str | Sequence[str], kind: str = "qwen-prm",
                 step_delimiter: str | None = None, **kwargs: Any) -> HTTPPRM:
        """The client matching a local verifier kind: ``qwen-prm`` (chat format, ``<extra_0>``),
        ``math-shepherd`` (its own text, ``ки``, the ``+`` column) or ``token-classification``
        (text format, the task's step delimiter as the tag)."""
        kwargs.pop("device", None)  # a remote model has no local device
        kwargs.pop("dtype", None)
        if kind == "qwen-prm":
            return cls(base_url, input_format=kwargs.pop("input_format", "chat"), **kwargs)
        if kind == "math-shepherd":
            kwargs.pop("step_delimiter", None)  # the tag is the model's, not the task's
            kwargs.setdefault("step_tag", "ки")
            kwargs.setdefault("label_index", 0)
            return cls(base_url, input_format="math-shepherd", **kwargs)
        if kind == "token-classification":
            return cls(base_url, input_format="text", step_tag=step_delimiter or "\n",
                       **kwargs)
        raise ValueError(f"verifier kind {kind!r} cannot be served over HTTP; use qwen-prm, "
                         "math-shepherd or token-classification")

    @property
    def num_parameters(self) -> int:
        if self._num_parameters is not None:
            return self._num_parameters
        return guess_parameters(self._model or "")

    @property
    def model(self) -> str | None:
        return self._model

    def close(self) -> None:
        self.pool.close()

    # -- StepScorer ---------------------------------------------------------------------------

    def score(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> StepScores:
        if len(prompts) != len(solutions):
            raise ValueError(f"score() got {len(prompts)} prompts but {len(solutions)} "
                             "solutions")
        for i, sol in enumerate(solutions):
            if isinstance(sol, str):
                raise ValueError(f"solution {i} is a string; pass its list of steps")
            for step in sol:
                if self.step_tag in step:
                    raise ValueError(f"solution {i}: a step contains the step tag "
                                     f"{self.step_tag!r}; its scores would be misaligned")
        return self.pool.run(self._score(list(prompts), [list(s) for s in solutions]))

    async def _score(self, prompts: list[str], solutions: list[list[str]]) -> StepScores:
        if not self._discovered:
            self._model, self._num_parameters = await discover_model(
                self.pool, self._model, self._num_parameters, override="prm_params")
            self._discovered = True
        todo = [i for i, s in enumerate(solutions) if s]
        scores: list[list[float]] = [[] for _ in solutions]
        tokens = 0
        if self.input_format == "chat":
            results = await asyncio.gather(*(
                self._request({"messages": self._messages(prompts[i], solutions[i])}, [i],
                              solutions) for i in todo))
        else:
            batches = [todo[k:k + self.batch_size] for k in range(0, len(todo), self.batch_size)]
            results = await asyncio.gather(*(
                self._request({"input": [self._text(prompts[i], solutions[i]) for i in b]}, b,
                              solutions) for b in batches))
        for rows, used in results:
            tokens += used
            for i, s in rows.items():
                scores[i] = s
        return StepScores(scores, tokens)

    def _messages(self, prompt: str, steps: list[str]) -> list[dict[str, str]]:
        question = self.question_of(prompt)
        if self.step_tag in question or self.step_tag in self.system_prompt:
            # the server's chat template may add text around the turns, so only the assistant
            # turn may hold tags for the rows to be counted right
            raise ValueError(f"input_format='chat': the question or system prompt contains the "
                             f"step tag {self.step_tag!r}; use input_format='text'")
        return qwen_messages(self.system_prompt, question, steps, self.step_tag)

    def _text(self, prompt: str, steps: list[str]) -> str:
        if self.input_format == "chatml":
            return render_chatml(self.system_prompt, self.question_of(prompt), steps,
                                 self.step_tag)
        if self.input_format == "math-shepherd":
            return shepherd_text(self.question_of(prompt), steps, self.step_tag)[0]
        return prompt + "".join(s + self.step_tag for s in steps)

    def _expected_rows(self, payload_item: Any) -> int:
        if isinstance(payload_item, list):  # messages: only the assistant turn has tags
            return payload_item[-1]["content"].count(self.step_tag)
        return str(payload_item).count(self.step_tag)

    async def _request(self, payload: dict[str, Any], which: list[int],
                       solutions: list[list[str]]) -> tuple[dict[int, list[float]], int]:
        body = {"model": self._model, **payload}
        if self.pooling_task is not None:
            body["task"] = self.pooling_task
        data = await self.pool.request_json("POST", "/pooling", body, root=True)
        where = f"{self.pool.urls[0]} /pooling"
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != len(which):
            raise ServerError(f"{where}: expected {len(which)} results, got "
                              f"{str(data)[:200]}")
        items = sorted(items, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
        inputs = [payload["messages"]] if "messages" in payload else payload["input"]
        out: dict[int, list[float]] = {}
        for i, item, sent in zip(which, items, inputs, strict=True):
            rows = item.get("data") if isinstance(item, dict) else None
            if not isinstance(rows, list):
                raise ServerError(f"{where}: a result has no 'data' list: {str(item)[:200]}")
            want = self._expected_rows(sent)
            if len(rows) != want:
                raise ServerError(
                    f"{where}: {len(rows)} step scores for an input with {want} step tags "
                    f"{self.step_tag!r} (is the server's step tag the same? vLLM: "
                    "--pooler-config step_tag_id)")
            out[i] = [self._value(r, where) for r in rows[len(rows) - len(solutions[i]):]]
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        used = usage.get("prompt_tokens", 0)
        return out, int(used) if isinstance(used, (int, float)) else 0

    def _value(self, row: Any, where: str) -> float:
        if isinstance(row, list):
            if not row:
                raise ServerError(f"{where}: an empty score row")
            v = row[0] if len(row) == 1 else row[self.label_index]
        else:
            v = row
        if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
            raise ServerError(f"{where}: step score {v!r} is not a probability in [0, 1] "
                              "(is the server's activation/softmax off?)")
        return float(v)
