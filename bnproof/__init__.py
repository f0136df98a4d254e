"""bnproof: batch normalization, derived and proved with SymPy, computed with Numba.

The package answers a question about the bias paragraph of section 2 of
Ioffe & Szegedy (2015), "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift", arXiv:1502.03167.

Subpackages
-----------
symbolic
    Pure SymPy models of batch normalization, the registry of claims and
    their proofs (:func:`bnproof.symbolic.prove_all`).
kernels
    Numba kernels for the forward and backward passes.
experiments
    Numeric experiments (the section 2 drift, accuracy against offset).
report
    Writers for the derivation report (HTML with MathML, Markdown, LaTeX).

Importing :mod:`bnproof` is cheap: it imports neither SymPy nor Numba and
compiles nothing. Import the subpackage you need.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
