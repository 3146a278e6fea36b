"""Grading policy: the choices on which established graders differ, made explicit.

Every field has the default that agrees with math-verify and the MATH-style graders on their own
test suites; each one is exposed on ``ttscale grade`` and accepted by ``grade``/``grade_many``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GradeOptions", "DEFAULT_OPTIONS"]


@dataclass(frozen=True)
class GradeOptions:
    """How strict equivalence is. The defaults grade *values*, not presentation.

    - ``ordered_lists`` (default False): a bare comma list (``1, 2``; no brackets) is compared as
      a set, so ``2, 1`` equals ``1, 2``. MATH asks for "all solutions, separated by commas" and
      math-verify reads such a list as a set. True compares bare lists in order (as tuples).
      Bracketed tuples ``(1, 2)`` are always ordered, ``\\{1, 2\\}`` always a set.
    - ``require_reduced`` (default False): ``\\frac{2}{4}`` equals ``\\frac{1}{2}`` (the value is
      right). True marks a plain fraction not in lowest terms wrong.
    - ``rel_tol`` (default 0.0): plain numbers must be equal exactly (math-verify's own rounding
      at 6 decimals still applies to expressions). ``rel_tol=1e-4`` accepts numbers within that
      relative distance, as Qwen2.5-Math's grader does.
    - ``accept_rounded`` (default False): True accepts a decimal that is the exact gold value
      rounded to the digits shown (``0.33`` for ``1/3``), as many "round to the nearest
      hundredth" answers are written.
    - ``choice_letters`` (default True): when one side is a bare multiple-choice letter (``B``,
      ``(B)``) and the other starts with a choice label (``(B) 12``, ``B. 12``), the letters are
      compared. False compares the full texts.
    """

    ordered_lists: bool = False
    require_reduced: bool = False
    rel_tol: float = 0.0
    accept_rounded: bool = False
    choice_letters: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.rel_tol < 1.0:
            raise ValueError(f"rel_tol must be in [0, 1), got {self.rel_tol}")


DEFAULT_OPTIONS = GradeOptions()
