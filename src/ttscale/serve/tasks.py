"""How the proxy turns a user's question into a policy prompt and reads the answer back.

A search strategy needs a ``Task``: the prompt format, the step delimiter, when a step is final
and how to extract the answer. Over the OpenAI API there is no dataset, only a question, so the
proxy builds one ``Problem`` per request with a ``ProxyTask`` of one of these formats:

* ``testbed``: the testbed format (``Q:...`` then one step per line, ``A:NN``), for the shipped
  testbed models;
* ``math``: the MATH-style plain prompt of ``ttscale.tasks.jsonl`` (steps are blank-line
  separated paragraphs, the answer in ``\\boxed{}``);
* ``qwen-math``: the same steps and answers, with the question in Qwen2.5-Math-Instruct's chat
  template (ChatML, its "reason step by step ... \\boxed{}" system prompt), for instruction-tuned
  policies driven through the completions API.

``prompt_template`` (with ``{question}``) replaces the format's template; the answer convention
stays the format's.
"""

from __future__ import annotations

from typing import Any

from ttscale.tasks import math_format
from ttscale.tasks.math_format import QWEN_MATH_TEMPLATE
from ttscale.types import Problem

__all__ = ["FORMATS", "QWEN_MATH_TEMPLATE", "ProxyTask"]
FORMATS = ("testbed", "math", "qwen-math")


class ProxyTask:
    """A ``Task`` without a dataset: it only formats questions and reads solutions."""

    def __init__(self, fmt: str = "testbed", prompt_template: str | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown prompt format {fmt!r}; choose one of {', '.join(FORMATS)}")
        if prompt_template is not None and "{question}" not in prompt_template:
            raise ValueError("prompt_template must contain '{question}'")
        self.name = f"proxy-{fmt}"
        self.format = fmt
        if fmt == "testbed":
            from ttscale.tasks.testbed import TestbedTask

            self._base: Any = TestbedTask(n=1)
            self.template = prompt_template or "{question}\n"
            self.step_delimiter = "\n"
        else:
            self._base = None
            default = (math_format.DEFAULT_PROMPT_TEMPLATE if fmt == "math"
                       else QWEN_MATH_TEMPLATE)
            self.template = prompt_template or default
            self.step_delimiter = math_format.STEP_DELIMITER

    def problem(self, pid: str, question: str) -> Problem:
        """The problem for one request; its gold answer is unknown (empty)."""
        q = question.strip() if self.format == "testbed" else question
        return Problem(id=pid, question=q, answer="", prompt=self.template.replace("{question}", q))

    def problems(self) -> list[Problem]:
        return []

    def solution_text(self, steps: list[str]) -> str:
        return "".join(s + self.step_delimiter for s in steps)

    def is_final_step(self, step: str) -> bool:
        if self._base is not None:
            return bool(self._base.is_final_step(step))
        return math_format.is_final_step(step)

    def extract_answer(self, solution: str) -> str | None:
        if self._base is not None:
            return self._base.extract_answer(solution)
        return math_format.extract_answer(solution)

    def __getattr__(self, name: str) -> Any:
        # e.g. revision_prompt for the revision strategies, where the base task has one
        base = self.__dict__.get("_base")
        if base is not None and not name.startswith("_"):
            return getattr(base, name)
        raise AttributeError(name)
