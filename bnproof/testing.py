"""Gradient checking by finite differences: a dot-product test ``<u, J v>``.

Shipped with the package so that code built on :mod:`bnproof.kernels` can
check its own backward passes the way this project's tests do.

A backward pass is a vector-Jacobian product (VJP): given a cotangent ``u``
of the output's shape it returns ``J^T u`` for each input. For random
directions ``v`` (one array per input) and a random cotangent ``u``,

    <u, J v>  ~=  <u, f(x + h v) - f(x - h v)> / (2 h)      (central difference)
    <u, J v>   =  sum_k <(J^T u)_k, v_k>                     (the VJP)

must agree. One scalar comparison per direction checks every entry of the
Jacobian at once (autograd's ``check_grads`` works the same way).

Each input's direction is scaled to the input's own size (``max(1,
max|x_k|)``), so that every input's term weighs in the comparison: with
unit directions, an input of size 1e7 (whose Jacobian is 1e-7 for a
normalization) contributed 1e-7 of the terms, and a VJP returning 0 for it
passed. A term can still hide behind the others when its Jacobian is small
for other reasons; to check one input alone, pass a ``fun`` of that input
only.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["EPS", "RTOL", "GradCheck", "check_grads", "grad_errors"]

#: Relative step of the central difference. The truncation error of a central
#: difference is O(h^2 |f'''|) and its rounding error O(eps_mach |f| / h); for
#: float64 the two balance near h = eps_mach**(1/3) ~ 6e-6, giving about
#: 1e-10 relative error. Each input's direction is scaled by ``max(1,
#: max|x_k|)``, so the step is relative to each input.
EPS = 6e-6

#: Relative tolerance of the comparison, scaled by ``sum_k |(J^T u)_k| . |v_k|``
#: (the size of the terms that are summed): 1e-6 is 10^4 above the expected
#: finite-difference error (~1e-10), while a wrong gradient term is off by
#: O(1) of that scale.
RTOL = 1e-6


@dataclass(frozen=True)
class GradCheck:
    """Outcome of a dot-product gradient check (plain data).

    Attributes
    ----------
    numeric : tuple of float
        ``<u, J v>`` by central differences, one per direction.
    analytic : tuple of float
        ``sum_k <(J^T u)_k, v_k>`` from the VJP, one per direction.
    scale : tuple of float
        ``sum_k |(J^T u)_k| . |v_k|`` per direction (what the tolerance is
        relative to).
    max_abs_err : float
        Largest ``|numeric - analytic|``.
    max_rel_err : float
        Largest ``|numeric - analytic| / scale``; NaN if any direction gave
        NaN.
    rtol : float
        The tolerance on ``max_rel_err``.
    passed : bool
        ``max_rel_err <= rtol`` (False when it is NaN).
    """

    numeric: tuple[float, ...]
    analytic: tuple[float, ...]
    scale: tuple[float, ...]
    max_abs_err: float
    max_rel_err: float
    rtol: float
    passed: bool


def _as_float64_inputs(args: Sequence[object]) -> list[np.ndarray]:
    if isinstance(args, np.ndarray) or not isinstance(args, Sequence) or not args:
        raise TypeError(
            "args must be a non-empty list or tuple of arrays, one per input of fun "
            f"(got {type(args).__name__}; wrap a single array as [x])"
        )
    arrays = []
    for k, value in enumerate(args):
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu":
            raise TypeError(
                f"args[{k}] has dtype {arr.dtype}; pass real numbers (float64 arrays)"
            )
        arr = np.array(arr, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(
                f"args[{k}] holds inf or NaN; finite differences need a finite point"
            )
        arrays.append(arr)
    return arrays


def _outputs(value: object, what: str) -> np.ndarray:
    """``value`` (what ``fun`` returned) as a float64 array, or a ValueError."""
    try:
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{what} returned {type(value).__name__}, not an array of real numbers ({exc})"
        ) from None
    if value is None or out.dtype == object:
        raise ValueError(f"{what} returned {type(value).__name__}; it must return an array")
    return out


def grad_errors(
    fun: Callable[..., np.ndarray],
    vjp: Callable[..., Sequence[np.ndarray]],
    args: Sequence[np.ndarray],
    *,
    directions: int = 3,
    eps: float = EPS,
    rtol: float = RTOL,
    seed: int = 0,
) -> GradCheck:
    """Compare a VJP with central finite differences along random directions.

    Parameters
    ----------
    fun : callable
        ``fun(*args) -> array``: the function, evaluated in float64.
    vjp : callable
        ``vjp(u, *args) -> sequence``: ``J^T u`` for every input, one array of
        ``args[k]``'s shape each (``u`` has the output's shape).
    args : sequence of array_like
        The point at which the Jacobian is checked; converted to float64,
        finite.
    directions : int, default 3
        Number of random ``(u, v)`` pairs.
    eps : float, default :data:`EPS`
        Relative finite-difference step.
    rtol : float, default :data:`RTOL`
        Tolerance on the relative error.
    seed : int, default 0
        Seed of the random directions.

    Returns
    -------
    GradCheck
        The numbers of every direction and whether they agree.

    Raises
    ------
    TypeError
        If ``args`` is not a sequence of real arrays, or ``directions``,
        ``eps`` or ``rtol`` is not a number (or is a bool).
    ValueError
        If ``args`` holds inf or NaN, ``directions < 1``, ``eps <= 0`` or
        ``rtol <= 0``, or if ``fun``/``vjp`` return something other than
        arrays of the expected shapes.

    Notes
    -----
    The backward pass of Ioffe & Szegedy (2015), section 3, is a VJP; this
    checks it without forming the Jacobian.
    """
    if isinstance(directions, bool) or not isinstance(directions, numbers.Integral):
        raise TypeError(f"directions must be an int >= 1, got {directions!r}")
    if directions < 1:
        raise ValueError(f"directions must be an int >= 1, got {directions!r}")
    for name, value in (("eps", eps), ("rtol", rtol)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a finite number > 0, got {value!r}")
        if not (np.isfinite(float(value)) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    eps, rtol = float(eps), float(rtol)
    xs = _as_float64_inputs(args)
    y0 = _outputs(fun(*xs), "fun")
    sizes = [max(1.0, float(np.max(np.abs(x), initial=0.0))) for x in xs]
    rng = np.random.default_rng(seed)
    numeric, analytic, scale = [], [], []
    for _ in range(directions):
        u = rng.standard_normal(y0.shape)
        vs = [rng.standard_normal(x.shape) * s for x, s in zip(xs, sizes, strict=True)]
        grads = vjp(u, *xs)
        if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence) or (
            len(grads) != len(xs)
        ):
            raise ValueError(
                f"vjp returned {type(grads).__name__}; it must return a list or tuple of "
                f"{len(xs)} arrays, one per input"
            )
        ana = 0.0
        size = 0.0
        for k, (gk, vk) in enumerate(zip(grads, vs, strict=True)):
            gk = np.asarray(gk, dtype=np.float64)
            if gk.shape != vk.shape:
                raise ValueError(
                    f"vjp's gradient {k} has shape {gk.shape} but args[{k}] has shape "
                    f"{vk.shape}; return one gradient per input, of the input's shape"
                )
            ana += float(np.sum(gk * vk))
            size += float(np.sum(np.abs(gk) * np.abs(vk)))
        h = eps  # the directions carry each input's size
        plus = _outputs(fun(*[x + h * v for x, v in zip(xs, vs, strict=True)]), "fun")
        minus = _outputs(fun(*[x - h * v for x, v in zip(xs, vs, strict=True)]), "fun")
        if plus.shape != y0.shape or minus.shape != y0.shape:
            raise ValueError("fun returned outputs of different shapes at nearby points")
        num = float(np.sum(u * (plus - minus))) / (2 * h)
        numeric.append(num)
        analytic.append(ana)
        scale.append(size)
    abs_err = np.abs(np.subtract(numeric, analytic))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_err = np.where(np.array(scale) > 0, abs_err / np.array(scale),
                           np.where(abs_err == 0, 0.0, np.inf))
    rel_err[np.isnan(abs_err) | np.isnan(scale)] = np.nan
    max_rel = float(np.max(rel_err))  # NaN if any direction is NaN
    return GradCheck(
        numeric=tuple(numeric),
        analytic=tuple(analytic),
        scale=tuple(scale),
        max_abs_err=float(np.max(abs_err)),
        max_rel_err=max_rel,
        rtol=rtol,
        passed=bool(max_rel <= rtol),
    )


def check_grads(
    fun: Callable[..., np.ndarray],
    vjp: Callable[..., Sequence[np.ndarray]],
    args: Sequence[np.ndarray],
    *,
    directions: int = 3,
    eps: float = EPS,
    rtol: float = RTOL,
    seed: int = 0,
) -> GradCheck:
    """Check a VJP against central finite differences; raise if they disagree.

    Same parameters as :func:`grad_errors`.

    Returns
    -------
    GradCheck
        The passing check, for inspection.

    Raises
    ------
    AssertionError
        If the VJP and the finite differences disagree by more than ``rtol``
        in any direction (the message gives the numbers).

    Notes
    -----
    Use it like ``autograd.test_util.check_grads``: ``check_grads(f, f_vjp,
    [x, w, b])`` in a test. For Ioffe & Szegedy (2015), section 3, the
    backward pass of batch normalization is checked this way.

    Examples
    --------
    >>> import numpy as np
    >>> check_grads(np.sin, lambda u, x: [u * np.cos(x)], [np.linspace(0, 1, 5)]).passed
    True
    """
    result = grad_errors(fun, vjp, args, directions=directions, eps=eps, rtol=rtol, seed=seed)
    if not result.passed:
        raise AssertionError(
            f"gradient check failed: max relative error {result.max_rel_err:.3g} > rtol "
            f"{rtol:.3g}; finite differences {result.numeric} vs VJP {result.analytic}"
        )
    return result
