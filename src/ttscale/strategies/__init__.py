"""Search strategies; importing this package registers the built-in ones by name."""

from ttscale.strategies import beam, best_of_n, dvts, lookahead, majority  # noqa: F401
from ttscale.strategies.base import STRATEGIES, SearchContext, get_strategy, register

__all__ = ["STRATEGIES", "SearchContext", "get_strategy", "register"]
