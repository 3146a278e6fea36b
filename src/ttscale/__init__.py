"""ttscale: compute-optimal test-time scaling."""

__version__ = "0.1.0"
