"""Compute-optimal test-time scaling (Snell et al. 2024), with the cost of estimating difficulty
counted.

Modules: ``difficulty`` (predicted bins, the online probe and its charge), ``data`` (a sweep as
per-question tables), ``selection`` (2-fold cross-validated per-bin selection), ``frontier``
(matching budget, efficiency ratio, bootstrap), ``policy_table`` (the versioned JSON policy),
``analysis`` (``ttscale optimal`` end to end), ``flops`` (FLOPs-matched comparison with a larger
model), ``cli``. The ``compute-optimal`` strategy that applies a table lives in
``ttscale.strategies.compute_optimal``.
"""
