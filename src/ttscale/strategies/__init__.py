"""Search strategies; importing this package registers the built-in ones by name."""

from ttscale.strategies import (  # noqa: F401
    adaptive,
    beam,
    best_of_n,
    combined,
    compute_optimal,
    confidence_vote,
    deepconf_online,
    dvts,
    lookahead,
    majority,
    particle_filtering,
    revisions,
)
from ttscale.strategies.base import STRATEGIES, SearchContext, get_strategy, register

__all__ = ["STRATEGIES", "SearchContext", "get_strategy", "register"]
