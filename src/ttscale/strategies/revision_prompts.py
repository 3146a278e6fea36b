"""Prompt formats of the revision model: how a question and earlier attempts become one prompt.

A revision model (Snell et al. 2024, section 6) reads the question and up to W earlier attempts,
oldest first, and writes a fresh full solution. The strategies (``revisions``, ``combined``) only
need ``prompt(problem, previous)`` and the stop strings, so a format is chosen per task and model:

* ``testbed``: delegates to ``task.revision_prompt`` (the question line, then one ``P:`` line per
  earlier attempt). The shipped testbed revision model is trained on exactly this format
  (``train/revision.py``), writes its new attempt after the prompt and ends it with EOS.
* ``chat``: for instruction-tuned models behind an OpenAI-compatible engine (vLLM, SGLang,
  llama.cpp). A plain-text prompt built from a configurable template that lists the earlier
  attempts and asks for a corrected step-by-step solution ending with ``\\boxed{}``; the model's
  completion (until EOS) is the new attempt. Beware: the paper (section 6.1, after Huang et
  al. 2023) found that simply prompting an off-the-shelf model to correct its own mistakes is
  largely ineffective on reasoning problems, which is why it fine-tunes a revision model. This
  format exists so that a fine-tuned revision model served by such an engine can be used, and so
  that the weak prompted baseline can be measured; do not expect gains from prompting alone.

The first attempt of a chain is the format with no previous attempts: for ``testbed`` that is the
plain problem prompt, for ``chat`` the task's own prompt unless a ``revision_first_template`` is
given.

Templates are filled by one pass of plain replacement of ``{question}``, ``{attempts}``,
``{index}`` and ``{solution}`` (not ``str.format``), so LaTeX braces such as ``\\boxed{}`` in a
template or in model text are safe and text inserted is never rescanned for placeholders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import Field, model_validator

from ttscale.strategies.base import StrategyOptions
from ttscale.types import Problem

FORMATS = ("testbed", "chat")

DEFAULT_CHAT_TEMPLATE = (
    "Solve the following math problem step by step. Write each step as one paragraph and "
    "separate the steps with a blank line. Put the final answer in \\boxed{} in the last step."
    "\n\nProblem: {question}\n\n"
    "Below are previous attempts at this problem, oldest first. They may contain mistakes. "
    "Check them, find any mistake, and write a new, corrected solution step by step, ending with "
    "the final answer in \\boxed{}.\n\n{attempts}\n\nCorrected solution:\n\n"
)
DEFAULT_ATTEMPT_TEMPLATE = "Attempt {index}:\n{solution}"
ATTEMPT_SEPARATOR = "\n\n"

_PLACEHOLDER = re.compile(r"\{(question|attempts|index|solution)\}")


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace the known ``{name}`` placeholders present in ``values`` in one pass."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


class RevisionFormat(Protocol):
    name: str
    #: strings that end a revision (empty: the model ends its attempt with EOS)
    stop: tuple[str, ...]

    def prompt(self, problem: Problem, previous: Sequence[str]) -> str:
        """The prompt for a new attempt after ``previous`` attempts (oldest first; may be empty).
        """
        ...


@dataclass(frozen=True)
class TestbedRevisionFormat:
    """``task.revision_prompt``: the format the testbed revision model is trained on."""

    __test__ = False  # not a pytest class despite its name

    task: Any
    name: str = "testbed"
    stop: tuple[str, ...] = ()

    def prompt(self, problem: Problem, previous: Sequence[str]) -> str:
        return self.task.revision_prompt(problem, list(previous))


@dataclass(frozen=True)
class ChatRevisionFormat:
    """A plain-text revision prompt for instruction-tuned models (see the module docstring).

    ``template`` must contain ``{question}`` and ``{attempts}``; ``{attempts}`` becomes each
    earlier attempt rendered by ``attempt_template`` (``{index}`` from 1, ``{solution}`` its text),
    joined by blank lines. The first attempt uses ``first_template`` (``{question}``) when given,
    else the task's own problem prompt.
    """

    template: str = DEFAULT_CHAT_TEMPLATE
    attempt_template: str = DEFAULT_ATTEMPT_TEMPLATE
    first_template: str | None = None
    name: str = "chat"
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field_name, text, needed in (("revision_template", self.template,
                                          ("{question}", "{attempts}")),
                                         ("revision_attempt_template", self.attempt_template,
                                          ("{solution}",)),
                                         ("revision_first_template", self.first_template,
                                          ("{question}",))):
            if text is None:
                continue
            if not isinstance(text, str):
                raise ValueError(f"option {field_name} must be a string, got "
                                 f"{type(text).__name__}")
            missing = [p for p in needed if p not in text]
            if missing:
                raise ValueError(f"option {field_name} must contain {' and '.join(missing)}")

    def prompt(self, problem: Problem, previous: Sequence[str]) -> str:
        if not previous:
            if self.first_template is None:
                return problem.prompt
            return fill(self.first_template, {"question": problem.question})
        listing = ATTEMPT_SEPARATOR.join(
            fill(self.attempt_template, {"index": str(i), "solution": text.strip()})
            for i, text in enumerate(previous, 1))
        return fill(self.template, {"question": problem.question, "attempts": listing})


class RevisionFormatOptions(StrategyOptions):
    """Options that choose and shape the revision prompt (``revisions``, ``combined``)."""

    revision_format: Literal["testbed", "chat"] | None = Field(
        None, description="revision prompt format: testbed or chat (default: testbed when the "
        "task has a revision prompt, else chat)")
    revision_template: str = Field(
        DEFAULT_CHAT_TEMPLATE, description="chat format: the revision prompt, with {question} "
        "and {attempts}")
    revision_attempt_template: str = Field(
        DEFAULT_ATTEMPT_TEMPLATE, description="chat format: one earlier attempt, with {index} "
        "and {solution}")
    revision_first_template: str | None = Field(
        None, description="chat format: the first attempt's prompt, with {question} (default: "
        "the task's own prompt)")

    @model_validator(mode="after")
    def _templates(self) -> RevisionFormatOptions:
        if self.revision_format != "testbed":  # a bad template fails before anything runs
            ChatRevisionFormat(self.revision_template, self.revision_attempt_template,
                               self.revision_first_template)
        return self


def revision_format(task: Any, options: Mapping[str, Any]) -> RevisionFormat:
    """The format named by option ``revision_format`` (default: ``testbed`` when the task has a
    ``revision_prompt``, else ``chat``), with the chat template options applied."""
    name = options.get("revision_format")
    if name is None:
        name = "testbed" if hasattr(task, "revision_prompt") else "chat"
    if name == "testbed":
        if not hasattr(task, "revision_prompt"):
            raise ValueError(f"option revision_format='testbed': task "
                             f"{getattr(task, 'name', task)!r} has no revision_prompt; "
                             f"use revision_format='chat'")
        return TestbedRevisionFormat(task)
    if name == "chat":
        return ChatRevisionFormat(
            template=options.get("revision_template", DEFAULT_CHAT_TEMPLATE),
            attempt_template=options.get("revision_attempt_template", DEFAULT_ATTEMPT_TEMPLATE),
            first_template=options.get("revision_first_template"))
    raise ValueError(f"option revision_format={name!r}: choose one of {', '.join(FORMATS)}")
