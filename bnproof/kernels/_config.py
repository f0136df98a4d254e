"""Numba options for every kernel of :mod:`bnproof.kernels`, in one place.

Every jitted body in this package is decorated with :data:`JIT_OPTIONS`
(through :func:`jit`); a test checks that no kernel sets flags of its own.

Notes
-----
``FASTMATH`` lists LLVM fast-math flags one by one instead of ``fastmath=True``
so that ``nnan`` and ``ninf`` stay off: NaN and inf in the input must still
propagate to the affected channel (as in PyTorch), and the compiler may not
assume they are absent. The flags that are on:

``reassoc``
    Lets LLVM vectorize float64 reductions along contiguous rows. Every
    reduction still runs in an order fixed at compile time, so results do
    not depend on the number of threads.
``contract``
    Fused multiply-add where it helps (one rounding instead of two).
``nsz``
    Ignore the sign of zero (``x - mu`` may be ``+0`` or ``-0``).
``arcp``
    Division by a loop invariant may become multiplication by its reciprocal.

``afn`` (approximate ``sqrt`` and friends) stays off: the inverse standard
deviation is computed once per channel and must be correctly rounded.

Elementwise kernels (``jit(elementwise=True)``: normalize, input gradient)
run without ``reassoc`` (:data:`ELEMENTWISE_FASTMATH`). They have no
reduction to vectorize, and ``reassoc`` would let LLVM regroup
``dy - mean_dy - (x - mu) k`` differently in two loops that compute it (the
streamed and the plain output loop gave float64 results one ulp apart).
Without it, every loop evaluates the expression as written, contracted to
the same fused multiply-adds, so all paths give the same bits.

``cache=True`` is on purpose: compiled kernels are written next to the source
(or to Numba's user cache folder when that is read-only), so a new process
loads them in milliseconds instead of compiling for seconds. Nothing compiles
at import time: kernels are compiled (or loaded) on their first call.
"""

from __future__ import annotations

#: LLVM fast-math flags for every kernel: no ``nnan``/``ninf``/``afn``.
FASTMATH = frozenset({"reassoc", "contract", "nsz", "arcp"})

#: Fast-math flags of elementwise kernels: :data:`FASTMATH` without ``reassoc``.
ELEMENTWISE_FASTMATH = FASTMATH - {"reassoc"}

#: Keyword arguments of :func:`numba.njit` for every kernel.
JIT_OPTIONS = {
    "fastmath": set(FASTMATH),
    "cache": True,
    "nogil": True,
    "error_model": "numpy",
    "boundscheck": False,
}

#: Keyword arguments for kernels that run a ``prange`` loop.
PARALLEL_JIT_OPTIONS = {**JIT_OPTIONS, "parallel": True}


def jit(*, parallel: bool = False, elementwise: bool = False):
    """Return the :func:`numba.njit` decorator with this package's options.

    Parameters
    ----------
    parallel : bool, default False
        Compile ``prange`` loops to run on Numba's thread pool.
    elementwise : bool, default False
        The kernel has no reduction: use :data:`ELEMENTWISE_FASTMATH`.

    Returns
    -------
    callable
        A decorator. Numba is imported here, never at ``import bnproof``.
    """
    import numba

    options = dict(PARALLEL_JIT_OPTIONS if parallel else JIT_OPTIONS)
    if elementwise:
        options["fastmath"] = ELEMENTWISE_FASTMATH
    return numba.njit(**{k: (set(v) if isinstance(v, frozenset | set) else v)
                         for k, v in options.items()})
