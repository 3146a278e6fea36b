"""``ttscale report DIR``: registered on the main CLI app by ``ttscale.cli`` (``VERB_MODULES``).

Import-light: matplotlib and the store are imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)


def report_cmd(
    out_dir: Annotated[Path, typer.Argument(
        help="Output folder of a sweep (holds sweep.json and ttscale.db).")],
    dest: Annotated[Path | None, typer.Option(
        "--dest", help="Where to write the page (default: DIR/report.html).")] = None,
    tree_strategy: Annotated[str | None, typer.Option(
        "--tree-strategy", help="Tree run to draw: beam-m4, beam-msqrt, dvts, lookahead.")
    ] = None,
    tree_budget: Annotated[int | None, typer.Option(
        "--tree-budget", help="Budget of the tree run to draw (default: largest <= 16).")
    ] = None,
    question: Annotated[str | None, typer.Option(
        "--question", help="Problem id whose tree to draw (default: an informative one).")
    ] = None,
) -> None:
    """Write a static HTML report (figures, tables, one search tree) of a sweep folder."""
    from ttscale.report.html import build_report

    path = build_report(out_dir, strategy=tree_strategy, budget=tree_budget, question=question,
                        dest=dest)
    typer.echo(str(path))
