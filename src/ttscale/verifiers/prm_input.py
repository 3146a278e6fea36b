"""What a PRM reads: the question behind a policy prompt, and the Qwen-PRM chat around the steps.

Why one module: the policy's prompt is often itself a chat (a ChatML, Llama-3 or Gemma template
for an instruction-tuned policy), while a PRM has its own conversation format. Both the
in-process and the HTTP PRM clients must take the *question* out of the policy prompt the same
way and build the PRM's own input the same way, or the same PRM scores differently per path.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["QWEN_STEP_TAG", "QWEN_SYSTEM", "SHEPHERD_STEP_TAG", "question_of_prompt",
           "qwen_messages", "render_chatml", "shepherd_text"]

QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
QWEN_STEP_TAG = "<extra_0>"
SHEPHERD_STEP_TAG = "ки"

#: (start of a user turn, end of a turn) of the chat templates whose prompts are recognised
_USER_TURNS = (
    ("<|im_start|>user\n", "<|im_end|>"),                               # ChatML (Qwen, ...)
    ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),     # Llama 3
    ("<start_of_turn>user\n", "<end_of_turn>"),                         # Gemma
    ("[INST]", "[/INST]"),                                              # Mistral / Llama 2
)


def question_of_prompt(prompt: str) -> str:
    """The last user turn of a chat-formatted policy prompt (ChatML, Llama 3, Gemma, Mistral
    ``[INST]``), stripped of surrounding whitespace; a prompt in none of these formats is
    returned unchanged (it is the question as the policy saw it)."""
    best: tuple[int, str] | None = None
    for head, end in _USER_TURNS:
        i = prompt.rfind(head)
        if i >= 0 and (best is None or i > best[0]):
            best = (i, prompt[i + len(head):].split(end, 1)[0].strip())
    return prompt if best is None else best[1]


def qwen_messages(system: str, question: str, steps: Sequence[str],
                  tag: str = QWEN_STEP_TAG) -> list[dict[str, str]]:
    """The Qwen2.5-Math-PRM conversation: system prompt, the question as the user turn, the
    steps joined and ended by the step tag as the assistant turn."""
    return [{"role": "system", "content": system},
            {"role": "user", "content": question},
            {"role": "assistant", "content": tag.join(steps) + tag}]


def render_chatml(system: str, question: str, steps: Sequence[str], tag: str) -> str:
    """Qwen2.5's chat template applied to :func:`qwen_messages`, no generation prompt."""
    answer = tag.join(steps) + tag
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
            f"<|im_start|>assistant\n{answer}<|im_end|>\n")


def shepherd_text(question: str, steps: Sequence[str], tag: str = SHEPHERD_STEP_TAG,
                  separator: str = "\n") -> tuple[str, list[int]]:
    """math-shepherd's input, ``question + " " + step_1 + " ки" + "\n" + step_2 + " ки" ...``,
    and the index of the last character of each step tag (where each step is read)."""
    text = question + " "
    ends = []
    for k, step in enumerate(steps):
        if k:
            text += separator
        text += f"{step} {tag}"
        ends.append(len(text) - 1)
    return text, ends
