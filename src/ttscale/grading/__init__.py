"""Answer grading: extract a final answer, then decide whether it equals the gold answer.

Model text is untrusted. ``extract_answer`` and the fast path of ``grade`` are linear string
scans in this process; only answers that need real maths reach math-verify, and then only inside
a resource-limited worker process that is killed when a check runs over its time limit.
"""

from ttscale.grading.equivalence import GradeResult, grade, grade_file, grade_many
from ttscale.grading.extract import extract_answer, find_boxed
from ttscale.grading.normalize import normalize_answer, precheck
from ttscale.grading.sandbox import Sandbox, Verdict, default_sandbox

__all__ = [
    "GradeResult",
    "Sandbox",
    "Verdict",
    "default_sandbox",
    "extract_answer",
    "find_boxed",
    "grade",
    "grade_file",
    "grade_many",
    "normalize_answer",
    "precheck",
]
