"""Sizes and training settings of the shipped testbed models (one place, read by the builder,
the model cards and the docs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchSpec:
    hidden: int
    layers: int
    heads: int
    ffn: int
    max_positions: int = 512


SMALL = ArchSpec(hidden=96, layers=3, heads=4, ffn=384)
LARGE = ArchSpec(hidden=256, layers=6, heads=8, ffn=1024)
