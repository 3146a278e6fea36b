"""Run configuration: one validated object built from a YAML recipe, CLI flags and ``--set``.

Validation happens here, at the edge, so that a typo in a recipe fails in milliseconds with a line
naming the key and where it came from, instead of deep inside a strategy after models are loaded.
Precedence (later wins): field defaults < recipe file < CLI flags < ``--set key=value``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:
    from ttscale.strategies.base import SearchSettings


class ConfigError(ValueError):
    """A bad recipe, flag or ``--set``; the message is one line that names the key."""


class RunConfig(BaseModel):
    """Everything ``ttscale run`` needs; model paths left ``None`` mean the testbed models."""

    model_config = ConfigDict(extra="forbid")

    # what to solve
    task: str = Field(description="'testbed' or a .jsonl file of problems")
    split: str = Field("test", description="testbed split: train, dev or test")
    limit: int | None = Field(None, ge=1, description="first K problems only")
    shard: str | None = Field(
        None, description="'I/K': only problems I, I+K, I+2K, ... of the selected ones, so K "
        "processes (same --out) share one run; the run key is the same for every shard")
    task_options: dict[str, Any] = Field(
        default_factory=dict, description="extra task arguments, e.g. testbed seed/min_ops")
    # how to search
    strategy: str = Field(description="majority, best-of-n, beam, lookahead, dvts, ...")
    budget: int = Field(ge=1, description="generations per problem (N in the paper)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="strategy options: beam_width, lookahead, aggregation")
    seed: int = Field(0, description="sampling seed; each problem derives its own from it")
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_step_tokens: int = Field(64, ge=1)
    max_solution_tokens: int = Field(256, ge=1)
    max_rounds: int = Field(40, ge=1, description="most steps a step-wise search takes")
    # which models, where
    engine: Literal["hf", "openai"] = Field(
        "hf", description="hf: transformers in-process; openai: an OpenAI-compatible server")
    base_url: str | list[str] | None = Field(
        None, description="engine=openai: server URL(s), e.g. http://localhost:8000/v1")
    policy: str | None = Field(
        None, description="policy model folder (hf) or served model name (openai); "
        "default: testbed policy-small; 'testbed:NAME' names any testbed model")
    policy_params: int | None = Field(
        None, ge=1, description="engine=openai: the served policy's parameter count, for FLOPs "
        "(default: read from the served name, e.g. '1.5B'; when it says nothing, 0 with a warning)")
    context_length: int | None = Field(
        None, ge=2, description="engine=openai: the policy's context in tokens (default: what "
        "the server reports; max_tokens is capped to what a prompt leaves)")
    prm: str | None = Field(None, description="PRM folder; default: testbed prm")
    revision: str | None = Field(
        None, description="revision model folder for revisions/combined strategies; default: "
        "the shipped one on the testbed with the shipped policy, else none (the policy revises "
        "its own attempts); 'testbed:revision' names the shipped one")
    prm_params: int | None = Field(
        None, ge=1, description="the PRM's parameter count, for FLOPs (default: counted for an "
        "in-process PRM, reported or read from the served name for an HTTP one)")
    prm_kind: Literal["token-classification", "qwen-prm", "orm", "math-shepherd",
                      "value-head"] = Field(
        "token-classification", description="the PRM's family: token-classification (testbed, "
        "ttscale train prm), qwen-prm (Qwen2.5-Math-PRM), orm, math-shepherd (causal LM, +/- "
        "at a step tag), value-head (Skywork-o1-Open-PRM)")
    device: str = Field("cpu", description="torch device for in-process models")
    # where results go
    out: str = Field("runs", description="output folder; holds ttscale.db, resumed on rerun")

    @field_validator("limit", "budget", "seed", "temperature", "top_p", "max_step_tokens",
                     "max_solution_tokens", "max_rounds", mode="before")
    @classmethod
    def _no_bool_numbers(cls, v: Any) -> Any:
        # YAML reads `yes`/`true` as a bool and pydantic would quietly turn it into 1
        if isinstance(v, bool):
            raise ValueError("expected a number, got a boolean")
        return v


    def search_settings(self) -> SearchSettings:
        """The frozen sampling/search settings of this run (what ``SearchContext`` holds)."""
        from ttscale.strategies.base import SearchSettings

        return SearchSettings(self.seed, self.temperature, self.top_p, self.max_step_tokens,
                              self.max_solution_tokens, self.max_rounds)

    @field_validator("shard")
    @classmethod
    def _shard_format(cls, v: str | None) -> str | None:
        if v is not None:
            parse_shard(v)
        return v


def parse_shard(spec: str) -> tuple[int, int]:
    """``"I/K"`` -> (I, K) with 0 <= I < K."""
    index, sep, count = str(spec).partition("/")
    if not (sep and index.strip().isdigit() and count.strip().isdigit()
            and 0 <= int(index) < int(count)):
        raise ValueError(f"shard {spec!r}: expected I/K with 0 <= I < K, e.g. 0/2")
    return int(index), int(count)


#: fields whose value is a mapping, so dotted keys (``options.beam_width``) may set inside them
MAPPING_FIELDS = ("options", "task_options")


def known_keys() -> list[str]:
    return list(RunConfig.model_fields)


def parse_set(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a YAML-typed value (``4``: int, ``null``: None, ``[1, 2]``: list)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set options.beam_width=4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({_one_line(e)})") from e
    return key, value


def read_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe into a plain mapping (validated later, with the other sources)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"config file {p} not found") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {p} cannot be read: {_one_line(e)}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or _one_line(e)
        raise ConfigError(f"config file {p}{where}: invalid YAML: {problem}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: expected a mapping of keys, got {type(data).__name__}")
    return data


def _set_key(data: dict[str, Any], key: str, value: Any, source: str,
             sources: dict[str, str]) -> None:
    head, _, rest = key.partition(".")
    if head not in RunConfig.model_fields:
        raise ConfigError(_unknown_key_message(head, source))
    sources[head] = source
    if not rest:
        data[head] = value
        return
    if head not in MAPPING_FIELDS:
        raise ConfigError(f"config key {key!r} (from {source}): {head!r} is not a mapping; "
                          f"dotted keys go into {', '.join(MAPPING_FIELDS)}")
    node = data.get(head)
    if node is None:
        node = data[head] = {}
    if not isinstance(node, dict):
        raise ConfigError(f"config key {head!r} (from {sources.get(head, source)}) must be a "
                          f"mapping, got {type(node).__name__}")
    *parents, leaf = rest.split(".")
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"config key {key!r} (from {source}): {part!r} is not a mapping")
        node = child
    node[leaf] = value


def _unknown_key_message(key: str, source: str) -> str:
    close = difflib.get_close_matches(key, known_keys(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; strategy options go in options.{key}"
    return f"unknown config key {key!r} (from {source}){hint}"


def build_config(recipe: str | Path | None = None,
                 flags: Mapping[str, Any] | None = None,
                 sets: Iterable[str] = (), *, check_options: bool = True) -> RunConfig:
    """Merge a recipe file, CLI flags (``None`` = not given) and ``--set`` items, then validate.

    ``check_options``: parse ``options`` with the strategy's options model now (a sweep, whose
    options are shared by several strategies, checks them against its plan instead).

    Flag keys may be dotted (``options.beam_width``) like ``--set`` keys.
    """
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if recipe is not None:
        for key, value in read_recipe(recipe).items():
            _set_key(data, str(key), value, f"config file {recipe}", sources)
    for key, value in (flags or {}).items():
        if value is not None:
            _set_key(data, key, value, f"--{key.split('.')[-1].replace('_', '-')}", sources)
    for item in sets:
        key, value = parse_set(item)
        _set_key(data, key, value, f"--set {key}", sources)
    if check_options:
        _check_options(data)
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_validation_message(e, sources)) from e
    _check_placeholders(cfg, sources)
    return cfg


def _check_options(data: Mapping[str, Any]) -> None:
    """A typo in a strategy option is reported first, naming the key (the strategy's typed
    options model decides; budget rules are checked by the run, which knows the budget)."""
    strategy, options = data.get("strategy"), data.get("options")
    if not isinstance(strategy, str) or not isinstance(options, dict):
        return
    from ttscale.strategies.registry import STRATEGIES

    spec = STRATEGIES.get(strategy)
    if spec is not None:  # an unknown strategy is reported by the run, with the known ones
        try:
            spec.parse(options)
        except ValueError as e:
            raise ConfigError(str(e)) from None


def _check_placeholders(cfg: RunConfig, sources: Mapping[str, str]) -> None:
    """Recipes mark what the user must fill in as ``<...>``; say so instead of 'not found'."""
    for key, value in cfg.model_dump().items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str) and v.startswith("<") and v.endswith(">"):
                where = f" (from {sources[key]})" if key in sources else ""
                raise ConfigError(f"config key {key!r}{where} is still the placeholder {v!r}: "
                                  "fill it in (see the comments in the recipe)")


def _validation_message(e: ValidationError, sources: Mapping[str, str]) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    head = str(err["loc"][0]) if err["loc"] else ""
    if err["type"] == "missing":
        flag = "--" + head.replace("_", "-")
        return (f"missing required config key {loc!r}: give {flag} or set `{head}:` "
                "in a --config file")
    where = f" (from {sources[head]})" if head in sources else ""
    shown = "input" in err and not isinstance(err["input"], dict)
    got = f" (got {err['input']!r})" if shown else ""
    more = f"; and {len(e.errors()) - 1} more error(s)" if len(e.errors()) > 1 else ""
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"config key {loc!r}{where}: {msg}{got}{more}"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
