"""The compute-optimal policy as a versioned JSON table: per difficulty bin and budget, which
strategy to run with which options.

Why a file with a schema: the table is built once from a sweep (``ttscale optimal``) and applied
later to new questions by the ``compute-optimal`` strategy, possibly by another ttscale version
or after a hand edit. Loading validates everything a run will rely on (every bin has every
budget, strategies exist, cut points ascend) and fails with one line naming the file and the
field, before any model is loaded.

Layout (``schema_version`` 1)::

    {"schema_version": 1, "kind": "ttscale-policy-table",
     "task": "testbed", "models": {"policy": ..., "prm": ..., "revision": null},
     "bins": {"kind": "oracle" | "predicted", "statistic": "mean PRM final-step score",
              "thresholds": [4 ascending cut points]},
     "probe": {"k": 4, "reuse": true},
     "budgets": [1, 4, 16, 64],
     "policy": {"1": {"1": {"strategy": "majority", "options": {}, "label": "majority", ...},
                      "4": {...}, ...},
                ... "5": {...}},
     "sampling": {...}, "source": {...}, "created": "..."}

Bins are ``"1"`` (easiest) .. ``str(len(thresholds) + 1)`` (hardest). A new question is binned
by the online probe's mean final-step score against ``thresholds`` (``difficulty.bin_of``),
whatever ``bins.kind`` the policy was selected with (oracle bins need the gold answer, which a
new question does not have).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ttscale.strategies.difficulty_probe import STATISTIC, bin_of, charged_generations

SCHEMA_VERSION = 1
KIND = "ttscale-policy-table"


class PolicyTableError(ValueError):
    """A policy table that cannot be read or does not validate; one line naming file and field."""


class PolicyEntry(BaseModel):
    """What to run for one (bin, budget)."""

    model_config = ConfigDict(extra="forbid")

    strategy: str
    options: dict[str, Any] = Field(default_factory=dict)
    #: the sweep curve it came from, e.g. "weighted-best-of-n/min" or "beam-m4"
    label: str | None = None
    #: accuracy on the questions of this bin it was selected on (informative)
    accuracy: float | None = Field(None, ge=0.0, le=1.0)
    n_questions: int | None = Field(None, ge=0)
    fallback: bool = False

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        from ttscale.strategies.registry import STRATEGIES, get_strategy

        if v == "compute-optimal":
            raise ValueError("a policy entry cannot be compute-optimal itself")
        try:
            get_strategy(v)
        except ValueError:
            raise ValueError(f"unknown strategy {v!r}; choose one of "
                             f"{', '.join(sorted(STRATEGIES))}") from None
        return v

    @model_validator(mode="after")
    def _options_of_the_strategy(self) -> PolicyEntry:
        """The entry's options must parse as its strategy's (a hand-edited typo fails at load,
        not on the first question of that bin)."""
        from ttscale.strategies.registry import parse_options

        parse_options(self.strategy, self.options)
        return self


class BinSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["oracle", "predicted"]
    statistic: str = STATISTIC
    thresholds: list[float]

    @field_validator("thresholds")
    @classmethod
    def _ascending(cls, v: list[float]) -> list[float]:
        if any(not math.isfinite(x) for x in v):
            raise ValueError("thresholds must be finite numbers")
        if any(b < a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"thresholds must be in ascending order, got {v}")
        return v

    @property
    def n_bins(self) -> int:
        return len(self.thresholds) + 1


class ProbeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(4, ge=1)
    #: reuse the probe's samples as part of a majority/best-of-N budget (``difficulty``)
    reuse: bool = True


class PolicyTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int
    kind: Literal["ttscale-policy-table"] = KIND
    task: str
    models: dict[str, str | None] = Field(default_factory=dict)
    bins: BinSpec
    probe: ProbeSpec = Field(default_factory=ProbeSpec)
    budgets: list[int]
    policy: dict[str, dict[str, PolicyEntry]]
    sampling: dict[str, Any] = Field(default_factory=dict)
    source: dict[str, Any] = Field(default_factory=dict)
    created: str | None = None

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"schema_version {v} is not supported (this ttscale reads "
                             f"{SCHEMA_VERSION})")
        return v

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("at least one budget is needed")
        if any(b < 1 for b in v) or sorted(set(v)) != v:
            raise ValueError(f"budgets must be distinct integers >= 1 in ascending order, "
                             f"got {v}")
        return v

    @model_validator(mode="after")
    def _complete(self) -> PolicyTable:
        want_bins = [str(b) for b in range(1, self.bins.n_bins + 1)]
        if sorted(self.policy, key=_num) != want_bins:
            raise ValueError(f"field 'policy': must have exactly bins {', '.join(want_bins)} "
                             f"(len(bins.thresholds) + 1), got "
                             f"{', '.join(sorted(self.policy)) or 'none'}")
        want_budgets = {str(b) for b in self.budgets}
        for b in want_bins:
            have = set(self.policy[b])
            if have != want_budgets:
                lacking = sorted(want_budgets - have, key=_num)
                extra = sorted(have - want_budgets, key=_num)
                what = (f"lacks budget(s) {', '.join(lacking)}" if lacking
                        else f"has budget(s) {', '.join(extra)} not in budgets")
                raise ValueError(f"field 'policy.{b}': {what}")
        return self

    # ---- use ---------------------------------------------------------------------------------

    def bin_of(self, score: float) -> int:
        return bin_of(score, self.bins.thresholds)

    def entry(self, bin_: int, budget: int) -> PolicyEntry:
        try:
            return self.policy[str(bin_)][str(budget)]
        except KeyError:
            raise KeyError(f"policy table has no entry for bin {bin_}, budget {budget}") from None

    def lookup(self, bin_: int, budget: int, k: int | None = None, reuse: bool | None = None,
               within_budget: bool = False) -> tuple[int, PolicyEntry]:
        """``(table budget, entry)`` for a question of bin ``bin_`` run at ``budget``.

        By default the largest table budget ``<= budget``, the probe's cost coming on top (what
        the offline analysis charges, so the curves and a run agree). ``within_budget``: the
        largest table budget whose entry fits in ``budget`` generations WITH the probe counted
        (``difficulty.charged_generations``). Raises a one-line error when none qualifies.
        """
        k = self.probe.k if k is None else k
        reuse = self.probe.reuse if reuse is None else reuse
        for b in sorted(self.budgets, reverse=True):
            if b > budget:
                continue
            e = self.entry(bin_, b)
            if not within_budget or charged_generations(e.strategy, b, k, reuse) <= budget:
                return b, e
        if within_budget:
            raise ValueError(f"compute-optimal: budget N={budget} cannot pay for the difficulty "
                             f"probe (k={k} samples) plus the policy's smallest budget "
                             f"{min(self.budgets)}; use a larger --budget or a smaller "
                             "options.probe_k")
        raise ValueError(f"compute-optimal: budget N={budget} is below the policy table's "
                         f"smallest budget {min(self.budgets)}")


def _num(s: str) -> tuple[int, str]:
    return (int(s), s) if s.isdigit() else (10**9, s)


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(x) for x in loc)


def validate_table(data: Any, where: str) -> PolicyTable:
    """Validate a decoded table; errors name ``where`` and the field."""
    if not isinstance(data, dict):
        raise PolicyTableError(f"policy table {where}: expected a JSON object, got "
                               f"{type(data).__name__}")
    version = data.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise PolicyTableError(f"policy table {where} has schema_version {version}, newer than "
                               f"this ttscale reads ({SCHEMA_VERSION}); upgrade ttscale")
    try:
        return PolicyTable.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        more = f" (and {len(e.errors()) - 1} more error(s))" if len(e.errors()) > 1 else ""
        field = f"field {_field(err['loc'])!r}: " if err["loc"] else ""
        raise PolicyTableError(f"policy table {where}: {field}{msg}{more}") from None


def load_table(path: str | Path) -> PolicyTable:
    """Read and validate a policy table file (one-line errors naming the file)."""
    p = Path(path)
    if not p.is_file():
        raise PolicyTableError(f"policy table {p} not found; build one with `ttscale optimal "
                               "--sweep DIR --out TABLE.json`")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyTableError(f"policy table {p} cannot be read: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise PolicyTableError(f"policy table {p} line {e.lineno}: invalid JSON: {e.msg}") \
            from None
    return validate_table(data, str(p))


def save_table(table: PolicyTable, path: str | Path) -> Path:
    """Write atomically (a reader never sees half a table)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(table.model_dump(mode="json"), indent=1, allow_nan=False) + "\n",
                   encoding="utf-8")
    os.replace(tmp, p)
    return p
