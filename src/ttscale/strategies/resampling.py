"""Resampling schemes of particle filters (Douc & Cappé 2005), as pure seeded functions.

Each takes normalised weights and a numpy ``Generator`` and returns ``n`` ancestor indices.
Multinomial draws each index independently (highest variance); stratified draws one uniform
per stratum ``[i/n, (i+1)/n)``; systematic uses a single uniform shifted by ``i/n`` (lowest
variance, the usual default); residual keeps ``floor(n w_i)`` copies of each particle and
draws the rest multinomially from the residual weights. All are unbiased: the expected number
of copies of particle ``i`` is ``n w_i``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

Scheme = Literal["multinomial", "systematic", "stratified", "residual"]
SCHEMES: tuple[str, ...] = ("multinomial", "systematic", "stratified", "residual")


def normalise(weights: Sequence[float]) -> np.ndarray:
    """Weights as probabilities; all-zero weights become uniform (nothing to prefer)."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or not len(w):
        raise ValueError("resampling needs a non-empty list of weights")
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"resampling weights must be finite and >= 0, got {list(weights)}")
    total = w.sum()
    return np.full(len(w), 1.0 / len(w)) if total <= 0 else w / total


def softmax_weights(log_weights: Sequence[float | None], temperature: float) -> np.ndarray:
    """Softmax of ``log_weights / temperature``; None (unscorable) gets weight 0 unless every
    entry is None (then uniform)."""
    if temperature <= 0:
        raise ValueError(f"weight temperature must be > 0, got {temperature}")
    x = np.array([-math.inf if v is None else v for v in log_weights], dtype=float)
    if np.all(np.isneginf(x)):
        return np.full(len(x), 1.0 / len(x))
    x = (x - x[np.isfinite(x)].max()) / temperature
    e = np.exp(x)
    return e / e.sum()


def _search(cdf: np.ndarray, positions: np.ndarray) -> list[int]:
    cdf = cdf.copy()
    cdf[-1] = 1.0  # rounding must never push a position past the last particle
    return np.searchsorted(cdf, positions, side="right").tolist()


def resample(weights: Sequence[float], n: int, scheme: str, rng: np.random.Generator
             ) -> list[int]:
    """``n`` ancestor indices drawn from ``weights`` with ``scheme`` (see module docstring)."""
    if n < 1:
        raise ValueError(f"resampling needs n >= 1, got {n}")
    w = normalise(weights)
    cdf = np.cumsum(w)
    if scheme == "multinomial":
        return sorted(_search(cdf, rng.random(n)))
    if scheme == "systematic":
        return _search(cdf, (rng.random() + np.arange(n)) / n)
    if scheme == "stratified":
        return _search(cdf, (rng.random(n) + np.arange(n)) / n)
    if scheme == "residual":
        copies = np.floor(n * w).astype(int)
        out = [i for i, c in enumerate(copies) for _ in range(c)]
        rest = n - len(out)
        if rest:
            resid = n * w - copies
            out += _search(np.cumsum(resid / resid.sum()), rng.random(rest))
        return sorted(out)
    raise ValueError(f"unknown resampling scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
