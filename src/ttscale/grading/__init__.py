"""Answer grading: extract a final answer, then decide whether it equals the gold answer.

Model text is untrusted. ``extract_answer`` and the fast path of ``grade`` are linear string
scans in this process; only answers that need real maths reach math-verify, and then only inside
resource-limited worker processes that are killed when a check runs over its time limit.
"""

from ttscale.grading.equivalence import GradeResult, grade, grade_many
from ttscale.grading.extract import (
    extract_answer,
    extract_response,
    extract_responses,
    extract_with_source,
    find_boxed,
)
from ttscale.grading.gradefile import grade_file, grade_records
from ttscale.grading.normalize import normalize_answer, precheck
from ttscale.grading.options import DEFAULT_OPTIONS, GradeOptions
from ttscale.grading.sandbox import Sandbox, SandboxPool, Verdict, default_sandbox

__all__ = [
    "DEFAULT_OPTIONS",
    "GradeOptions",
    "GradeResult",
    "Sandbox",
    "SandboxPool",
    "Verdict",
    "default_sandbox",
    "extract_answer",
    "extract_response",
    "extract_responses",
    "extract_with_source",
    "find_boxed",
    "grade",
    "grade_file",
    "grade_many",
    "grade_records",
    "normalize_answer",
    "precheck",
]
