"""The ``ttscale`` command line (typer app ``app``; console script ``ttscale = ttscale.cli:app``).

Kept import-light on purpose: only typer is imported at module level, and every command imports
what it drives (torch, transformers, pydantic, the store) inside its body, so ``ttscale --help``
and flag errors answer at once.

Errors are one line on stderr (``error: ...``) with a non-zero exit code and no traceback: bad
flags exit 2, bad input or a failing run exit 1, Ctrl-C exits 130. Set ``TTSCALE_DEBUG=1`` to get
the traceback of an unexpected error.

Other verbs (testbed, label, train, demo, sweep, flips, optimal, report, serve) live in the
modules that implement them, imported statically at the end of this file: each defines
``register(app: typer.Typer) -> None`` (calling ``app.command(...)`` or
``app.add_typer(sub_app, name=...)``). Keep those modules import-light too.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer


class TTScaleApp(typer.Typer):
    """A Typer app whose console-script entry reports errors as one line (see :func:`main`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # called like a click command (e.g. by a test runner): stay compatible
            return super().__call__(*args, **kwargs)
        sys.exit(main())


app = TTScaleApp(
    name="ttscale",
    help="Compute-optimal test-time scaling: search against a process reward model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from ttscale import __version__

        typer.echo(f"ttscale {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Compute-optimal test-time scaling: search against a process reward model."""


# ---- ttscale run ---------------------------------------------------------------------------


@app.command("run")
def run_cmd(
    task: Annotated[str | None, typer.Option(
        "--task", help="'testbed' or a .jsonl file of problems.")] = None,
    strategy: Annotated[str | None, typer.Option(
        "--strategy", help="majority, best-of-n, weighted-best-of-n, beam, lookahead, dvts, "
        "revisions, combined, compute-optimal (`ttscale strategies` lists their options).")
    ] = None,
    budget: Annotated[int | None, typer.Option(
        "--budget", help="Generations per problem (N).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="First K problems only.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Sampling seed.")] = None,
    out: Annotated[str | None, typer.Option(
        "--out", help="Output folder (holds ttscale.db; a rerun resumes).  [default: runs]")
    ] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object on stdout instead of tables.")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", help="YAML recipe (see recipes/); flags and --set override it.")] = None,
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=VALUE override, YAML-typed, repeatable; dotted keys go into "
        "options/task_options, e.g. --set options.beam_width=4.")] = None,
    policy: Annotated[str | None, typer.Option(
        "--policy", help="Policy model folder (default: testbed policy-small).")] = None,
    prm: Annotated[str | None, typer.Option(
        "--prm", help="PRM folder (default: testbed prm).")] = None,
    revision: Annotated[str | None, typer.Option(
        "--revision", help="Revision model folder for revisions/combined (default: the "
        "policy revises itself; testbed:revision names the shipped one).")] = None,
    beam_width: Annotated[int | None, typer.Option(
        "--beam-width", help="Beams kept per round (options.beam_width).")] = None,
    lookahead: Annotated[int | None, typer.Option(
        "--lookahead", help="Lookahead steps (options.lookahead).")] = None,
    aggregation: Annotated[str | None, typer.Option(
        "--aggregation", help="Step-score aggregation: last, min, prod, mean.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="Testbed split.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, ...")] = None,
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Progress bar on stderr.")] = True,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Solve again the problems a previous run stored as failed "
        "(a refused request, a context overflow); without it they stay failed.")] = False,
) -> None:
    """Run a search strategy at a budget over a task; grade, store and summarise."""
    from ttscale.config import build_config
    from ttscale.runner import run

    flags = {"task": task, "strategy": strategy, "budget": budget, "limit": limit, "seed": seed,
             "out": out, "policy": policy, "prm": prm, "revision": revision, "split": split,
             "device": device,
             "options.beam_width": beam_width, "options.lookahead": lookahead,
             "options.aggregation": aggregation}
    cfg = build_config(config, flags, sets or ())
    try:
        if json_out:
            # stray prints from libraries must not break the one-object-on-stdout contract
            from contextlib import redirect_stdout

            with redirect_stdout(sys.stderr):
                summary = run(cfg, progress=progress, retry_failed=retry_failed)
        else:
            summary = run(cfg, progress=progress, retry_failed=retry_failed)
    except KeyboardInterrupt:
        _err(f"interrupted; finished problems are stored in {cfg.out}, rerun the same command "
             "to resume")
        raise typer.Exit(130) from None
    if json_out:
        typer.echo(json.dumps(summary.to_dict()))
    else:
        _print_summary(summary)


def _print_summary(s: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    c = s.cost
    t = Table(title=f"ttscale run: {s.strategy} N={s.budget} on {s.task}", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    rows = [
        ("accuracy", f"{s.accuracy:.3f} ({s.n_correct}/{s.n_problems})"),
        ("problems (resumed / computed)", f"{s.n_problems} ({s.resumed} / {s.computed})"),
        ("failed (counted wrong; --retry-failed)", f"{s.n_failed}"),
        ("generations", f"{c['generations']:,}"),
        ("generated tokens", f"{c['generated_tokens']:,}"),
        ("prompt tokens (cached)", f"{c['prompt_tokens']:,} ({c['prompt_tokens_cached']:,})"),
        ("PRM tokens", f"{c['prm_tokens']:,}"),
        ("FLOPs (policy + PRM)", f"{c['total_flops']:.3g}"),
        ("wall s (sum over problems)", f"{c['wall_s']:.1f}"),
        ("stored in", s.db),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console = Console()
    console.print(t)
    if s.accuracy_by_difficulty:
        d = Table(title="accuracy by difficulty")
        d.add_column("difficulty")
        d.add_column("problems", justify="right")
        d.add_column("accuracy", justify="right")
        for k, acc in s.accuracy_by_difficulty.items():
            d.add_row(k, str(s.n_by_difficulty[k]), f"{acc:.3f}")
        console.print(d)


# ---- ttscale strategies --------------------------------------------------------------------


@app.command("strategies")
def strategies_cmd(
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object on stdout instead of text.")] = False,
) -> None:
    """List every strategy with its options (from its typed options model): set them with
    --set options.NAME=VALUE."""
    from ttscale.strategies.registry import STRATEGIES, options_doc

    if json_out:
        typer.echo(json.dumps({name: {
            "description": spec.description, "needs_verifier": spec.needs_verifier,
            "uses_reviser": spec.uses_reviser,
            "options": {k: {"type": t, "default": d, "description": h}
                        for k, t, d, h in options_doc(spec)}}
            for name, spec in STRATEGIES.items()}))
        return
    for name, spec in STRATEGIES.items():
        facts = [] if spec.needs_verifier else ["no verifier"]
        if spec.uses_reviser:
            facts.append("uses the revision model")
        more = f" [{', '.join(facts)}]" if facts else ""
        typer.echo(f"{name}: {spec.description}{more}")
        rows = options_doc(spec)
        if not rows:
            typer.echo("    (no options)")
        for key, kind, default, doc in rows:
            typer.echo(f"    options.{key} ({kind}, default {default}): {doc}")


# ---- ttscale grade -------------------------------------------------------------------------


@app.command("grade")
def grade_cmd(
    in_path: Annotated[Path, typer.Option(
        "--in", help='JSONL: per line "pred" or "response", and "gold" or "gold_solution".')],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write graded lines here (default: stdout).")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Summary as one JSON object (stdout with --out, else stderr).")] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Seconds per math-verify check (killed after); default 3.5, "
        "with 1.5 s for extracting a response, so one line stays under 5 s.")] = None,
    ordered_lists: Annotated[bool, typer.Option(
        "--ordered-lists", help="Compare bare comma lists in order (default: as sets).")] = False,
    require_reduced: Annotated[bool, typer.Option(
        "--require-reduced", help="A fraction not in lowest terms is wrong.")] = False,
    rel_tol: Annotated[float, typer.Option(
        "--rel-tol", help="Relative tolerance for plain numbers (default 0: exact).")] = 0.0,
    accept_rounded: Annotated[bool, typer.Option(
        "--accept-rounded", help="Accept a decimal that is gold rounded to its digits.")] = False,
    no_choice_letters: Annotated[bool, typer.Option(
        "--no-choice-letters", help='Do not match "B" against "(B) 12".')] = False,
) -> None:
    """Grade predictions against gold answers: each output line adds equal, reason, seconds and
    the extracted pred and gold compared; other fields are echoed.

    Model text is never executed; every check is bounded in time. Without --out the graded lines
    go to stdout and the summary to stderr. A bad line gets an output line with "error" and
    the command exits 1 after grading everything else.
    """
    from ttscale.grading import GradeOptions, grade_file

    if not in_path.exists():
        raise FileNotFoundError(f"input file {in_path} not found")
    if not in_path.is_file():
        raise ValueError(f"input {in_path} is not a file")
    options = GradeOptions(ordered_lists=ordered_lists, require_reduced=require_reduced,
                           rel_tol=rel_tol, accept_rounded=accept_rounded,
                           choice_letters=not no_choice_letters)
    limits = {} if timeout is None else {"timeout_s": timeout}
    records = grade_file(in_path, out, options=options, **limits)
    if out is None:
        for rec in records:
            sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
    errors = [r["error"] for r in records if "error" in r]
    n = len(records) - len(errors)
    n_equal = sum(bool(r.get("equal")) for r in records if "error" not in r)
    summary = {"n": n, "n_equal": n_equal, "accuracy": n_equal / n if n else 0.0,
               "n_errors": len(errors),
               "seconds": sum(float(r.get("seconds") or 0.0) for r in records),
               "out": None if out is None else str(out)}
    text = (json.dumps(summary) if json_out else
            f"graded {n} lines: {n_equal} equal ({summary['accuracy']:.3f}), "
            f"{summary['seconds']:.2f} s checking" +
            (f", {len(errors)} bad lines" if errors else ""))
    if out is not None:
        typer.echo(text)
    else:
        _err(text, prefix="")
    for e in errors:
        _err(e)
    if errors:
        raise typer.Exit(1)


# ---- entry point and error reporting -------------------------------------------------------


def _err(msg: str, prefix: str = "error: ") -> None:
    # plain write, not rich: rich wraps long lines to the terminal width
    sys.stderr.write(prefix + " ".join(str(msg).split()) + "\n")
    sys.stderr.flush()


def _message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.strerror}: {e.filename}"
    text = str(e) or type(e).__name__
    return text


def _cli_exceptions() -> dict[str, tuple[type[BaseException], ...]]:
    """The usage-error classes of the click that typer uses: recent typer vendors its own copy
    (``typer._click``), older typer uses ``click``; accept both so neither leaks a traceback."""
    mods = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mods.append(importlib.import_module(name))
        except ImportError:
            continue

    def collect(attr: str) -> tuple[type[BaseException], ...]:
        return tuple(getattr(m, attr) for m in mods if hasattr(m, attr))

    return {"help": collect("NoArgsIsHelpError"), "usage": collect("UsageError"),
            "click": collect("ClickException"), "abort": (typer.Abort, *collect("Abort"))}


def _apply_threads() -> None:
    """Honour ``TTSCALE_THREADS`` (a shared machine: see README) without importing torch, so a
    flag error still answers at once: torch reads ``OMP_NUM_THREADS`` for its intra-op threads
    when it is first imported (as ``torch.set_num_threads`` sets them); if it is already
    imported, set them directly."""
    raw = os.environ.get("TTSCALE_THREADS", "").strip()
    if not raw.isdigit() or int(raw) < 1:
        return
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(raw))
    else:
        os.environ["OMP_NUM_THREADS"] = raw


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code; every error becomes one line on stderr."""
    exc = _cli_exceptions()
    command = typer.main.get_command(app)
    _apply_threads()
    try:
        rv = command.main(args=argv, prog_name="ttscale", standalone_mode=False)
    except exc["help"]:  # bare `ttscale`: typer has already printed the help
        return 0
    except exc["usage"] as e:
        ctx = getattr(e, "ctx", None)
        where = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
        _err(e.format_message().rstrip(".") + where)
        return 2
    except exc["click"] as e:
        _err(e.format_message())
        return int(getattr(e, "exit_code", 1))
    except exc["abort"]:
        _err("aborted")
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except (ValueError, OSError, LookupError, RuntimeError) as e:
        if os.environ.get("TTSCALE_DEBUG"):
            raise
        _err(_message(e))
        return 1
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get("TTSCALE_DEBUG"):
            raise
        _err(f"{type(e).__name__}: {_message(e)} (set TTSCALE_DEBUG=1 for the traceback)")
        return 1
    return rv if isinstance(rv, int) else 0


def _register_verbs() -> None:
    from ttscale import demo  # ttscale demo
    from ttscale.analysis import cli as analysis_cli  # ttscale sweep, ttscale flips
    from ttscale.optimal import cli as optimal_cli  # ttscale optimal
    from ttscale.report import cli as report_cli  # ttscale report
    from ttscale.serve import cli as serve_cli  # ttscale serve
    from ttscale.testbed import cli as testbed_cli  # ttscale testbed ...
    from ttscale.train import cli as train_cli  # ttscale label, ttscale train ...

    for module in (testbed_cli, train_cli, analysis_cli, optimal_cli, report_cli, serve_cli,
                   demo):
        module.register(app)


_register_verbs()
