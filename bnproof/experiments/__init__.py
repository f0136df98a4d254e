"""Numerical experiments around the paper's claims; every result is plain data.

Each experiment returns a JSON-serialisable ``dict`` and does no I/O: the
command line (``bnproof drift``, ``bnproof report``) and the report read the
results, and :mod:`bnproof.plots` draws them. Importing this package imports
none of the experiments (nor Numba); import the module you need.

Modules
-------
accuracy
    :func:`~bnproof.experiments.accuracy.accuracy_vs_offset`: float32
    accuracy of the normalized output as ``|mean| / std`` grows.
crosscheck
    :func:`~bnproof.experiments.crosscheck.cross_check`: the kernels against
    the SymPy derivation and finite differences.
drift
    :func:`~bnproof.experiments.drift.run_drift`: section 2 of Ioffe &
    Szegedy (2015) re-run (the bias drift when the normalization is computed
    outside the gradient step).
"""

__all__: list[str] = []
