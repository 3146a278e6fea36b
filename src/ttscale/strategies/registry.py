"""Every strategy ttscale knows, listed explicitly: name, function, typed options, facts.

Why a list and not registration by import side effect: the runner, the sweep, the proxy and
compute-optimal all need the same facts about a strategy (does it need a verifier, does it use a
revision model, may it reuse the difficulty probe's samples, which option names a file), and a
strategy that declares them once here cannot disagree with itself across those parts.

User plugins add themselves with :func:`register` (a ``StrategySpec``); built-ins are in
``BUILTINS`` below.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from ttscale.strategies import (
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
from ttscale.strategies.base import StrategyOptions, StrategySpec

BUILTINS: tuple[StrategySpec, ...] = (
    StrategySpec("majority", majority.majority, majority.MajorityOptions,
                 needs_verifier=False, reuses_probe=True,
                 description="majority vote over N sampled solutions (no verifier)"),
    StrategySpec("best-of-n", best_of_n.best_of_n, best_of_n.BestOfNOptions,
                 reuses_probe=True,
                 description="N sampled solutions, the best-scored one by the PRM"),
    StrategySpec("weighted-best-of-n", best_of_n.weighted_best_of_n, best_of_n.BestOfNOptions,
                 reuses_probe=True,
                 description="N sampled solutions, the answer with the largest summed PRM score"),
    StrategySpec("beam", beam.beam, beam.BeamOptions,
                 description="PRM beam search: N/M beams, M next steps each per round"),
    StrategySpec("lookahead", lookahead.lookahead, lookahead.LookaheadOptions,
                 description="beam search valuing each step by a k-step greedy rollout"),
    StrategySpec("dvts", dvts.dvts, dvts.DvtsOptions,
                 description="diverse verifier tree search: N/M independent greedy subtrees"),
    # needs_verifier: the default selection is "verifier" (with selection=majority the strategy
    # never calls it, but the PRM is still named in the run key)
    StrategySpec("revisions", revisions.revisions, revisions.RevisionsOptions,
                 uses_reviser=True,
                 description="N/L chains of L sequential revisions by the revision model"),
    StrategySpec("combined", combined.combined, combined.CombinedOptions, uses_reviser=True,
                 description="PRM beam search, then revision chains seeded by its best answers"),
    StrategySpec("particle-filtering", particle_filtering.particle_filtering,
                 particle_filtering.ParticleFilteringOptions,
                 description="N particles resampled every step by PRM weights (Puri et al. "
                 "2025)"),
    StrategySpec("confidence-vote", confidence_vote.confidence_vote_strategy,
                 confidence_vote.ConfidenceVoteOptions, needs_verifier=False,
                 description="N samples, least confident filtered, confidence-weighted vote "
                 "from the policy's token log-probs (DeepConf offline; no PRM)"),
    StrategySpec("deepconf-online", deepconf_online.deepconf_online,
                 deepconf_online.DeepConfOnlineOptions, needs_verifier=False,
                 description="warm-up traces set a confidence threshold, later traces stop "
                 "when below it (DeepConf online; N is a cap)"),
    StrategySpec("adaptive", adaptive.adaptive, adaptive.AdaptiveOptions,
                 needs_verifier=False,
                 description="samples in rounds until the count/confidence vote is decided "
                 "(Beta or ESC rule; N is a cap)"),
    StrategySpec("adaptive-prm", adaptive.adaptive_prm, adaptive.AdaptivePrmOptions,
                 description="samples in rounds, PRM-scored, until the best score passes a "
                 "threshold (or Beta/ESC on PRM votes; N is a cap)"),
    StrategySpec("compute-optimal", compute_optimal.compute_optimal,
                 compute_optimal.ComputeOptimalOptions, uses_reviser=True,
                 file_options=("policy_table",),
                 description="per question: a difficulty probe, then the strategy a policy "
                 "table chose for that difficulty and budget"),
)

#: name -> spec of every known strategy (built-ins first, then plugins in registration order)
STRATEGIES: dict[str, StrategySpec] = {s.name: s for s in BUILTINS}


def register(spec: StrategySpec) -> StrategySpec:
    """Add a user strategy (replacing one of the same name); returns the spec."""
    if not isinstance(spec, StrategySpec):
        raise TypeError(f"register() takes a StrategySpec, got {type(spec).__name__}")
    STRATEGIES[spec.name] = spec
    return spec


def get_spec(name: str) -> StrategySpec:
    """The spec of strategy ``name``; a one-line ValueError listing the known ones."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of "
                         f"{', '.join(STRATEGIES)}") from None


def own_options(name: str, shared: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``shared`` (options meant for several strategies: a sweep's, a server's
    defaults) that strategy ``name`` takes; ``beam_width`` means nothing to majority voting."""
    fields = get_spec(name).options.model_fields
    return {k: v for k, v in shared.items() if k in fields}


#: a spec is callable like the strategy function it wraps
get_strategy = get_spec


def parse_options(name: str, raw: Mapping[str, Any] | None = None,
                  budget: int | None = None) -> StrategyOptions:
    """Strategy ``name``'s typed options from a raw mapping (defaults filled), checked against
    ``budget`` when given. Needs no context and no model: call it before loading anything."""
    return get_spec(name).parse(raw, budget)


def options_doc(spec: StrategySpec) -> list[tuple[str, str, str, str]]:
    """``(option, type, default, description)`` rows of a strategy's options model."""
    rows = []
    for key, f in spec.options.model_fields.items():
        kind = _type_name(f.annotation)
        default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
        if len(default) > 40:
            default = default[:37] + "..."
        rows.append((key, kind, default, f.description or ""))
    return rows


def _type_name(ann: Any) -> str:
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(ann))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(ann)[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(ann))
    if ann is type(None):
        return "None"
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")
