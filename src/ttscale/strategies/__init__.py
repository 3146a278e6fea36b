"""Search strategies. ``registry`` lists the built-ins explicitly (``STRATEGIES``, ``get_spec``,
``parse_options``); ``register(spec)`` adds a user strategy."""

from ttscale.strategies.base import SearchContext, StrategyOptions, StrategySpec
from ttscale.strategies.registry import (
    STRATEGIES,
    get_spec,
    get_strategy,
    own_options,
    parse_options,
    register,
)

__all__ = ["STRATEGIES", "SearchContext", "StrategyOptions", "StrategySpec", "get_spec",
           "get_strategy", "own_options", "parse_options", "register"]
