"""The Numba kernels against the SymPy derivation and finite differences.

For batch sizes N = 2..8 the training-mode model of :mod:`bnproof.symbolic`
(``ConcreteBatch(N)``, Algorithm 1 of the paper) is differentiated by SymPy
(``loss_gradient``: the chain rule through the batch mean and variance) and
turned into a NumPy function with :func:`sympy.lambdify`. The kernels'
forward output ``y`` and backward ``dx``, ``dweight`` and ``dbias`` are
compared with it on random float64 inputs, and the gradients are also
checked by the dot-product finite-difference test of :mod:`bnproof.testing`.

Everything returned is plain JSON-serialisable data; nothing is printed or
written.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Iterable

import numpy as np

__all__ = ["CHANNELS", "EPS", "SYMBOLIC_RTOL", "cross_check"]

#: Channels per batch: every channel is an independent instance of the model.
CHANNELS = 4

#: The variance floor used on both sides.
EPS = 1e-5

#: Tolerance of kernel vs lambdified derivation, relative to the largest
#: magnitude of the compared quantity (at least 1). Both sides compute in
#: float64 with N <= 8 terms but in a different order (the derivation's
#: expression is evaluated as SymPy wrote it, the kernel's two-pass
#: statistics and closed form): a few hundred eps_mach (2.2e-16) is what
#: reordering costs; 1e-12 leaves a margin while a wrong term is off by O(1).
SYMBOLIC_RTOL = 1e-12

QUANTITIES = ("y", "dx", "dweight", "dbias")


#: Batch size -> where its derivation came from in this process ("computed" or
#: "reused", see :func:`_derivation`).
_SOURCES: dict[int, str] = {}


def _derivation_key(n: int) -> str:
    """Digest of what determines the lambdified derivation's code for batch size ``n``.

    The source of :mod:`bnproof.symbolic` and of this module, SymPy's,
    NumPy's and Python's versions, and ``n``.
    """
    import platform
    from pathlib import Path

    import sympy

    import bnproof.symbolic as symbolic
    from bnproof import _cache

    sources = [*sorted(Path(symbolic.__file__).parent.rglob("*.py")), Path(__file__)]
    return _cache.digest(sources, ["crosscheck-derivation", sympy.__version__, np.__version__,
                                   platform.python_version(), n])


def _from_source(source: str):
    """Compile lambdify's generated code in the namespace lambdify gives it (NumPy)."""
    import sympy

    namespace: dict = {}
    exec("from numpy import *", namespace)  # what lambdify's printer imports, and more
    namespace.update(sympy.lambdify([], 0, modules="numpy").__globals__)
    local: dict = {}
    exec(compile(source, "<bnproof-crosscheck-derivation>", "exec"), namespace, local)
    return local["_lambdifygenerated"]


def _lambdified_source(f) -> str:
    """Return the code :func:`sympy.lambdify` generated for ``f``."""
    import linecache

    return "".join(linecache.getlines(f.__code__.co_filename))


@functools.cache
def _derivation(n: int, reuse: bool = False):
    """Lambdified ``(y, dx, dweight, dbias)`` of the training model for batch size ``n``.

    The function takes ``x_1..x_n, g_1..g_n, gamma, beta, eps`` (arrays of
    one value per channel broadcast together) and returns lists of arrays.

    With ``reuse``, the code lambdify generated is stored in bnproof's cache
    folder under :func:`_derivation_key` and, when found there, compiled
    instead of derived again: the same text, so the same function. Any
    problem reading the cache means deriving it here.
    """
    if reuse:
        from bnproof import _cache

        key = _derivation_key(n)
        found = _cache.load("crosscheck-derivation", key)
        if found is not None and isinstance(found[0], str):
            try:
                f = _from_source(found[0])
            except Exception:  # a corrupt entry: derive it below
                pass
            else:
                _SOURCES[n] = "reused"
                return f
        f = _derivation(n)
        _cache.store("crosscheck-derivation", key, _lambdified_source(f))
        return f
    _SOURCES[n] = "computed"
    return _lambdified(n)


def _lambdified(n: int):
    """Derive the training model's outputs and gradients for ``n`` and lambdify them."""
    import sympy

    from bnproof.symbolic._models import (
        ConcreteBatch,
        beta,
        eps,
        g,
        gamma,
        loss_gradient,
        training,
        x,
    )

    batch = ConcreteBatch(n)
    model = training(batch)
    xs = [batch.item(x, t) for t in batch.indices]
    gs = [batch.item(g, t) for t in batch.indices]
    outputs = [
        [model.y(t) for t in batch.indices],
        [loss_gradient(model, xi) for xi in xs],
        loss_gradient(model, gamma),
        loss_gradient(model, beta),
    ]
    return sympy.lambdify([*xs, *gs, gamma, beta, eps], outputs, modules="numpy", cse=True)


def _symbolic(xv, gv, w, b, reuse=False):
    """Evaluate the derivation channel by channel: arrays shaped like the kernel's."""
    n = xv.shape[0]
    f = _derivation(n, reuse)
    ys, dxs, dw, db = f(*xv, *gv, w, b, EPS)
    return (
        np.array(ys, dtype=np.float64),
        np.array(dxs, dtype=np.float64),
        np.broadcast_to(np.asarray(dw, dtype=np.float64), w.shape),
        np.broadcast_to(np.asarray(db, dtype=np.float64), b.shape),
    )


def _finite_difference_errors(xv, w, b, seed):
    """Dot-product test of each gradient alone: ``{quantity: max_abs_err}``."""
    from bnproof.kernels import batch_norm_backward, batch_norm_forward
    from bnproof.testing import grad_errors

    def fun(x_, w_, b_):
        return batch_norm_forward(x_, w_, b_, eps=EPS)[0]

    def vjp(u, x_, w_, b_):
        _, mean, invstd = batch_norm_forward(x_, w_, b_, eps=EPS)
        return batch_norm_backward(u, x_, w_, mean, invstd)

    def only(k):
        # directions along one input only: the other inputs are held fixed
        def f(v):
            args = [xv, w, b]
            args[k] = v
            return fun(*args)

        def g(u, v):
            args = [xv, w, b]
            args[k] = v
            return [vjp(u, *args)[k]]

        return f, g

    out = {}
    for k, name in enumerate(("dx", "dweight", "dbias")):
        f, g = only(k)
        res = grad_errors(f, g, [(xv, w, b)[k]], seed=seed)
        out[name] = (res.max_abs_err, res.max_rel_err, res.rtol)
    return out


def _check_args(n_values, seed):
    if isinstance(n_values, str | bytes) or not isinstance(n_values, Iterable):
        raise TypeError(f"n_values must be an iterable of ints, got {n_values!r}")
    n_values = list(n_values)
    if not n_values:
        raise ValueError("n_values is empty; pass batch sizes such as range(2, 9)")
    for n in n_values:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 2:
            raise ValueError(
                f"batch size {n!r} must be an int >= 2 (training needs more than one "
                "value per channel)"
            )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return [int(n) for n in n_values], int(seed)


def cross_check(n_values=range(2, 9), *, seed=0, reuse=False) -> dict:
    """Compare the kernels with the SymPy derivation and finite differences.

    Parameters
    ----------
    n_values : iterable of int, default range(2, 9)
        Batch sizes N (each >= 2).
    seed : int, default 0
        Seed of the random inputs ``x`` (N, C), ``dy``, ``weight`` and
        ``bias``.
    reuse : bool, default False
        Reuse the code of the lambdified derivations stored by an earlier
        run with the same code digest (bnproof's cache folder), and store
        the ones derived here. ``"setup"["derivations_reused"]`` lists the
        N whose derivation was reused.

    Returns
    -------
    dict
        ``"rows"``: one ``{"n", "quantity", "max_abs_err_symbolic",
        "max_abs_err_finite_diff", "tolerance", "passed"}`` per N and
        quantity (``y``, ``dx``, ``dweight``, ``dbias``); ``y`` has no
        finite-difference test (``None``). ``"setup"`` records the inputs and
        tolerances. JSON-serialisable.

    Raises
    ------
    TypeError, ValueError
        For batch sizes that are not ints >= 2 or a non-integer seed.

    Notes
    -----
    Ioffe & Szegedy (2015), Algorithm 1 and the backward pass of section 3.
    ``tolerance`` is the absolute tolerance of the symbolic comparison,
    ``SYMBOLIC_RTOL * max(1, max |reference|)``; a row passes when the
    kernel is within it and its finite-difference test passes (relative
    error below :data:`bnproof.testing.RTOL`).
    """
    from bnproof.kernels import batch_norm_backward, batch_norm_forward

    n_values, seed = _check_args(n_values, seed)
    rng = np.random.default_rng(seed)
    rows = []
    for n in n_values:
        xv = rng.standard_normal((n, CHANNELS)) * rng.uniform(0.5, 3.0, CHANNELS) + rng.normal(
            0.0, 2.0, CHANNELS
        )
        gv = rng.standard_normal((n, CHANNELS))
        w = rng.normal(1.0, 0.5, CHANNELS)
        b = rng.normal(0.0, 0.5, CHANNELS)
        y, mean, invstd = batch_norm_forward(xv, w, b, eps=EPS)
        dx, dw, db = batch_norm_backward(gv, xv, w, mean, invstd)
        ref = dict(zip(QUANTITIES, _symbolic(xv, gv, w, b, reuse), strict=True))
        got = {"y": y, "dx": dx, "dweight": dw, "dbias": db}
        fd = _finite_difference_errors(xv, w, b, seed)
        for q in QUANTITIES:
            tol = SYMBOLIC_RTOL * max(1.0, float(np.max(np.abs(ref[q]))))
            err = float(np.max(np.abs(got[q] - ref[q])))
            fd_abs = fd[q][0] if q in fd else None
            fd_ok = fd[q][1] <= fd[q][2] if q in fd else True
            rows.append(
                {
                    "n": n,
                    "quantity": q,
                    "max_abs_err_symbolic": err,
                    "max_abs_err_finite_diff": fd_abs,
                    "tolerance": tol,
                    "passed": bool(err <= tol and fd_ok),
                }
            )
    return {
        "rows": rows,
        "setup": {
            "n_values": n_values,
            "channels": CHANNELS,
            "dtype": "float64",
            "eps": EPS,
            "seed": seed,
            "derivations_reused": [n for n in n_values if _SOURCES.get(n) == "reused"],
            "symbolic_rtol": SYMBOLIC_RTOL,
            "finite_diff": "bnproof.testing.grad_errors: <u, J v> by central differences "
            "along 3 random directions of one input at a time vs the kernel's backward",
            "reference": "bnproof.symbolic training model of ConcreteBatch(n), differentiated "
            "with loss_gradient and lambdified with sympy.lambdify(modules='numpy')",
        },
    }
