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

#: Relative step of the finite-difference test of ``dx``, in units of each
#: channel's standard deviation. At N = 2 the Jacobian of the output is only
#: O(eps / var) of the output's size (the two normalized values are +-1 up to
#: the variance floor), so rounding, O(eps_mach / step) relative to it, calls
#: for a larger step than :data:`bnproof.testing.EPS` (6e-6, balanced for a
#: Jacobian of the output's size). Measured over seeds 0..149 and N = 2..8 on
#: correct kernels: relative error at most 6e-7 at N = 2 and 2e-8 for N >= 3
#: (6e-6 gave up to 8e-6 at N = 2, failing correct kernels; 5e-5 gave 1e-6);
#: a backward off by a factor 1 + 1e-4 still fails every one of them (at
#: least 2e-6 against the tolerance 1e-6).
DX_STEP = 1e-4

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
    """Dot-product test of each gradient alone: ``{quantity: (max_abs_err, max_rel_err, rtol)}``.

    The test of ``dx`` steps along each channel in that channel's own units:
    ``x = xv + s * v`` with ``s = sqrt(var + eps)`` of the channel, checked at
    ``v = 0`` (exactly ``xv``) with the chain rule's ``s * dx`` as the
    gradient, and a step of :data:`DX_STEP`. The output of a channel varies
    on the scale of its spread, not of its offset: a step relative to ``max
    |x|`` over all channels (what :func:`bnproof.testing.grad_errors` takes
    for an input) is too large for a channel whose spread is small next to
    another's offset, and the central difference's truncation error then
    fails a correct kernel.
    """
    from bnproof.kernels import batch_norm_backward, batch_norm_forward
    from bnproof.testing import EPS as FD_EPS
    from bnproof.testing import grad_errors

    # sqrt(var + eps): what the normalization divides by, so also the scale of
    # a constant channel (var = 0), where the output varies on the scale sqrt(eps)
    spread = np.sqrt(xv.var(axis=0) + EPS)

    def fun(x_, w_, b_):
        return batch_norm_forward(x_, w_, b_, eps=EPS)[0]

    def vjp(u, x_, w_, b_):
        _, mean, invstd = batch_norm_forward(x_, w_, b_, eps=EPS)
        return batch_norm_backward(u, x_, w_, mean, invstd)

    def only(k):
        # directions along one input only: the other inputs are held fixed
        def point(v):
            args = [xv, w, b]
            args[k] = xv + spread * v if k == 0 else v
            return args

        def f(v):
            return fun(*point(v))

        def g(u, v):
            grad = vjp(u, *point(v))[k]
            return [spread * grad if k == 0 else grad]

        return f, g

    out = {}
    for k, name in enumerate(("dx", "dweight", "dbias")):
        f, g = only(k)
        at = np.zeros_like(xv) if k == 0 else (w, b)[k - 1]
        step = DX_STEP if k == 0 else FD_EPS
        res = grad_errors(f, g, [at], seed=seed, eps=step)
        out[name] = (res.max_abs_err, res.max_rel_err, res.rtol)
    return out


def _directions_seed(seed: int, n: int) -> int:
    """Seed of the finite-difference directions, from a stream apart from the inputs'.

    With the inputs' own seed, the first cotangent ``u`` drawn by
    :func:`bnproof.testing.grad_errors` was the very standard normal draw
    that made ``x``: per channel an affine function of ``x``, which the
    backward of batch normalization maps to 0, so that direction checked
    nothing and its relative error was rounding over a near-zero scale.
    """
    return int(np.random.default_rng([seed, n]).integers(2**32))


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
        fd = _finite_difference_errors(xv, w, b, _directions_seed(seed, n))
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
            "inputs": "one numpy.random.default_rng(seed), for each N in turn: x = z * s + m "
            "with z (N, C) standard normal, s ~ U(0.5, 3) and m ~ N(0, 2^2) per channel; dy "
            "(N, C) standard normal; weight ~ N(1, 0.5^2); bias ~ N(0, 0.5^2)",
            "derivations_reused": [n for n in n_values if _SOURCES.get(n) == "reused"],
            "symbolic_rtol": SYMBOLIC_RTOL,
            "finite_diff": "bnproof.testing.grad_errors: <u, J v> by central differences "
            "along 3 random directions of one input at a time vs the kernel's backward; "
            "directions of x scaled per channel by sqrt(var + eps), drawn from a "
            "stream apart from the inputs'",
            "reference": "bnproof.symbolic training model of ConcreteBatch(n), differentiated "
            "with loss_gradient and lambdified with sympy.lambdify(modules='numpy')",
        },
    }
