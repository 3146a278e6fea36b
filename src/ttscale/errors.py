"""Errors that cross layers."""

from __future__ import annotations


class ProblemError(RuntimeError):
    """An error about one problem, not the engine: e.g. a server refused this one request (its
    prompt overflows the model's context). The run stores it as that problem's failure and goes
    on; engine-wide faults (server down) are other exceptions and stop the run."""
