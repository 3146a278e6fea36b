"""Search strategies; importing this package registers the built-in ones by name."""

from ttscale.strategies import (  # noqa: F401
    beam,
    best_of_n,
    combined,
    compute_optimal,
    dvts,
    lookahead,
    majority,
    revisions,
)
from ttscale.strategies.base import STRATEGIES, SearchContext, get_strategy, register

__all__ = ["STRATEGIES", "SearchContext", "get_strategy", "register"]
