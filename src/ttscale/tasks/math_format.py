"""The MATH step format, in one place: the JSONL tasks (MATH-500, GSM8K) and the proxy's
``math``/``qwen-math`` formats write and read solutions the same way.

A solution is a sequence of paragraphs (steps) separated by a blank line; the step that holds
``\\boxed{}`` (or ``\\fbox{}``) is final, and the answer is read as ``ttscale grade`` reads a
response (``grading.extract_response``). Prompt templates hold ``{question}``, replaced by plain
text replacement (so LaTeX braces are safe), and end with the step delimiter.
"""

from __future__ import annotations

from ttscale.grading import extract_response

#: steps are blank-line separated paragraphs
STEP_DELIMITER = "\n\n"

#: the plain MATH-style prompt; it ends with the step delimiter, as the testbed prompt ends
#: with its "\n"
DEFAULT_PROMPT_TEMPLATE = (
    "Solve the following math problem step by step. Write each step as one paragraph and "
    "separate the steps with a blank line. Put the final answer in \\boxed{} in the last step."
    "\n\nProblem: {question}\n\nSolution:\n\n"
)

#: the question in Qwen2.5-Math-Instruct's chat template (ChatML with its system prompt), for
#: instruction-tuned policies driven through the completions API
QWEN_MATH_TEMPLATE = (
    "<|im_start|>system\nPlease reason step by step, and put your final answer within "
    "\\boxed{}.<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
)


def prompt(template: str, question: str) -> str:
    return template.replace("{question}", question)


def solution_text(steps: list[str]) -> str:
    """Every step followed by the delimiter, so prompt + solution_text(steps) is a well-formed
    prefix from which the next step can be generated."""
    return "".join(s + STEP_DELIMITER for s in steps)


def is_final_step(step: str) -> bool:
    return "\\boxed" in step or "\\fbox" in step


def extract_answer(solution: str) -> str | None:
    """The answer of a whole solution, as ``ttscale grade`` extracts a "response" field."""
    return extract_response(solution)
