"""Verifiers: the ``StepScorer`` interface, score aggregations and the in-process loaders.

``load_verifier`` imports transformers lazily, so ``import ttscale.verifiers.base`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ttscale.verifiers.base import AGGREGATIONS, StepScorer, StepScores, aggregate

#: ``kind`` names accepted by :func:`load_verifier`
VERIFIER_KINDS = ("token-classification", "qwen-prm", "orm", "math-shepherd", "value-head")

__all__ = ["AGGREGATIONS", "VERIFIER_KINDS", "StepScorer", "StepScores", "aggregate",
           "load_verifier"]


def load_verifier(path: str | Path, kind: str = "token-classification", **kwargs: Any) -> Any:
    """Load a local reward model as a ``StepScorer``.

    ``kind``: ``token-classification`` (testbed-style PRM, see ``TokenClassificationPRM``),
    ``qwen-prm`` (Qwen2.5-Math-PRM convention, ``QwenPRM``), ``orm`` (sequence classifier,
    ``OutcomeRM``), ``math-shepherd`` (causal LM, +/- token probabilities at a step tag,
    ``MathShepherdPRM``) or ``value-head`` (Skywork-o1-Open-PRM style value head,
    ``ValueHeadPRM``). A checkpoint lacking the weights its kind needs is refused (one line
    naming them) instead of scoring with a freshly initialised head. ``kwargs`` go to the
    class's ``from_pretrained`` (``device``, ``dtype``,
    ``step_delimiter``, ``max_batch``, ...). An ``http(s)://`` URL instead of a folder gives the
    pooling-API client for that kind (``ttscale.verifiers.http_prm.HTTPPRM.for_kind``).
    """
    if kind not in VERIFIER_KINDS:
        raise ValueError(
            f"unknown verifier kind {kind!r}; choose one of {', '.join(VERIFIER_KINDS)}")
    if str(path).startswith(("http://", "https://")):  # a PRM server (vLLM pooling API)
        from ttscale.verifiers.http_prm import HTTPPRM

        return HTTPPRM.for_kind(str(path), kind, **kwargs)
    from ttscale.hf_loading import check_model_dir

    check_model_dir(path, f"verifier ({kind})")
    if kind == "token-classification":
        from ttscale.verifiers.hf_prm import TokenClassificationPRM

        return TokenClassificationPRM.from_pretrained(path, **kwargs)
    if kind == "qwen-prm":
        from ttscale.verifiers.hf_prm import QwenPRM

        return QwenPRM.from_pretrained(path, **kwargs)
    if kind == "math-shepherd":
        from ttscale.verifiers.causal_prm import MathShepherdPRM

        return MathShepherdPRM.from_pretrained(path, **kwargs)
    if kind == "value-head":
        from ttscale.verifiers.causal_prm import ValueHeadPRM

        return ValueHeadPRM.from_pretrained(path, **kwargs)
    from ttscale.verifiers.orm import OutcomeRM

    return OutcomeRM.from_pretrained(path, **kwargs)
