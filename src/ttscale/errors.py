"""Errors that say who is affected: one problem, or the whole run.

``ProblemError``: something about ONE problem failed (a request the engine refused for it, e.g.
HTTP 4xx or a context overflow; a PRM refusing its input). The per-problem loop
(``ttscale.session.solve_and_store``) stores it as that problem's failure with its reason, counts
it wrong and goes on. Engines and verifiers raise it (or a subclass); anything else that escapes
a strategy (a server down after retries, a bug) stops the run, with every finished problem kept.
"""

from __future__ import annotations


class ProblemError(RuntimeError):
    """An error about one problem, not the engine: e.g. a server refused this one request (its
    prompt overflows the model's context). The run stores it as that problem's failure and goes
    on; engine-wide faults (server down) are other exceptions and stop the run."""
