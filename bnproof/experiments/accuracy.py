"""Accuracy of the float32 training forward pass as ``|mean| / std`` grows.

Batch normalization subtracts the batch mean; when ``|mean| >> std`` the
float32 input keeps few significant bits of its deviation from the mean, and
the way the statistics and the output are computed decides how much of what
remains survives. This experiment measures, on the same float32 inputs:

``bnproof``
    :func:`bnproof.kernels.batch_norm_forward` (float64 two-pass statistics,
    output evaluated in float64 and rounded once).
``two-pass-float32``
    Mean, then mean squared deviation, then the output, all in float32
    (NumPy's pairwise sums).
``one-pass-float32``
    ``var = E[x^2] - E[x]^2`` in float32, negative values clamped to 0 as
    Flax's ``use_fast_variance`` does: the textbook failure.
``torch``
    ``torch.nn.functional.batch_norm`` in training mode on the CPU, on one
    thread so that its rounding does not depend on the process (only when
    PyTorch is importable).

Results are plain JSON-serialisable data; nothing is printed or written.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import numpy as np

__all__ = ["ABS_ALLOWANCE", "EPS", "GOAL_ULP", "accuracy_vs_offset"]

#: The variance floor of every method (PyTorch's default).
EPS = 1e-5

#: Absolute error allowed on top of the ulp budget: outputs near 0 have tiny
#: ulps, and an error of 1e-7 there is below float32's resolution near 1
#: (the accuracy goal: "within 2 ulp plus 1e-7 absolute").
ABS_ALLOWANCE = 1e-7

#: The goal for bnproof's float32 output, in ulp of the exact result (plus
#: :data:`ABS_ALLOWANCE`). Rounding the exact result to float32 alone costs
#: 0.5 ulp; 2 ulp leaves room for the float64 arithmetic before that rounding.
GOAL_ULP = 2.0


def _exact(x32: np.ndarray, eps: float) -> np.ndarray:
    """Return the normalized output of ``x32`` (N, C) from correctly rounded sums."""
    x = x32.astype(np.float64)
    n = x.shape[0]
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        col = x[:, c]
        mu = math.fsum(col) / n
        d = col - mu
        # the deviations of float32 inputs from a float64 mean are exact to
        # ~1e-16 relative to |mu|, far below float32's resolution
        var = math.fsum(d * d) / n
        out[:, c] = d / math.sqrt(var + eps)
    return out


def _two_pass_float32(x32: np.ndarray, eps: float) -> np.ndarray:
    mu = x32.mean(axis=0, dtype=np.float32)
    d = x32 - mu
    var = (d * d).mean(axis=0, dtype=np.float32)
    return d / np.sqrt(var + np.float32(eps))


def _one_pass_float32(x32: np.ndarray, eps: float) -> np.ndarray:
    mu = x32.mean(axis=0, dtype=np.float32)
    mean_sq = (x32 * x32).mean(axis=0, dtype=np.float32)
    var = np.maximum(mean_sq - mu * mu, np.float32(0))
    return (x32 - mu) / np.sqrt(var + np.float32(eps))


def _bnproof(x32: np.ndarray, eps: float) -> np.ndarray:
    from bnproof.kernels import batch_norm_forward

    return batch_norm_forward(x32, eps=eps)[0]


def _torch_method():
    try:
        import torch
    except ImportError:
        return None

    def run(x32: np.ndarray, eps: float) -> np.ndarray:
        # on one thread: PyTorch's float32 sums depend on its thread count
        # (which other libraries in the process may have changed), and the
        # row must be the same in every process
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            t = torch.from_numpy(x32)
            y = torch.nn.functional.batch_norm(t, None, None, training=True, eps=eps)
        finally:
            torch.set_num_threads(threads)
        return y.numpy()

    return run


def _errors(y: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    """``(max error in ulp, max absolute error)``, see :func:`accuracy_vs_offset`."""
    y = np.asarray(y, dtype=np.float64)
    if not np.all(np.isfinite(y)):
        return math.inf, math.inf
    err = np.abs(y - exact)
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return float(np.max(err / (ulp + ABS_ALLOWANCE / GOAL_ULP))), float(err.max())


def _check_args(offsets, shape, std, seed):
    if isinstance(offsets, str | bytes) or not isinstance(offsets, Iterable):
        raise TypeError(f"offsets must be a list of numbers (|mean| / std), got {offsets!r}")
    offsets = list(offsets)
    if not offsets:
        raise ValueError("offsets is empty; pass at least one |mean| / std, e.g. [0, 1e3, 1e6]")
    for value in offsets:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(value) and value >= 0
        ):
            raise ValueError(
                f"offset {value!r} must be a finite number >= 0 (|mean| / std, e.g. 1e5)"
            )
    if (
        not isinstance(shape, tuple | list)
        or len(shape) != 2
        or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape)
        or shape[0] < 2
        or shape[1] < 1
    ):
        raise ValueError(
            f"shape must be (N, C) with N >= 2 and C >= 1, got {shape!r} (e.g. (1024, 16))"
        )
    if isinstance(std, bool) or not isinstance(std, numbers.Real) or not (
        math.isfinite(std) and std > 0
    ):
        raise ValueError(f"std must be a finite number > 0, got {std!r} (e.g. 1.0)")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return [float(v) for v in offsets], (int(shape[0]), int(shape[1])), float(std), int(seed)


def accuracy_vs_offset(offsets, *, shape=(1024, 16), std=1.0, seed=0) -> dict:
    """Max float32 output error of each method against the exact result, per offset.

    Parameters
    ----------
    offsets : iterable of float
        Values of ``|mean| / std`` (e.g. ``[0, 1e3, 1e5, 1e6]``).
    shape : tuple of int, default (1024, 16)
        ``(N, C)`` of the batch.
    std : float, default 1.0
        Standard deviation of the inputs; each channel is ``offset * std +
        std * z`` with standard normal ``z``, rounded to float32.
    seed : int, default 0
        Seed of ``z`` (the same ``z`` for every offset).

    Returns
    -------
    dict
        ``"rows"``: one ``{"offset_over_std", "method", "max_err_ulp",
        "max_abs_err", "within_goal"}`` per offset and method;
        ``"methods"``: the methods measured; ``"setup"`` and ``"reference"``:
        how the inputs and the exact result were made. Non-finite outputs
        give ``None`` errors. JSON-serialisable.

    Raises
    ------
    TypeError, ValueError
        For offsets that are not finite numbers >= 0, a bad shape, ``std <=
        0`` or a non-integer seed.

    Notes
    -----
    Ioffe & Szegedy (2015), Algorithm 1, with ``gamma = 1``, ``beta = 0``,
    ``eps = 1e-5``. The error of an output is measured in ulp of the float32
    number nearest the exact result, with outputs near zero (whose ulp is
    tiny) measured against an ulp of at least ``ABS_ALLOWANCE / GOAL_ULP``:
    ``|y - y_exact| / (ulp(y_exact) + 5e-8)``. This is at most 2 exactly when
    the goal ``|y - y_exact| <= 2 ulp(y_exact) + 1e-7`` holds; rounding the
    exact result to float32 alone gives at most 0.5.
    """
    offsets, shape, std, seed = _check_args(offsets, shape, std, seed)
    methods = {
        "bnproof": _bnproof,
        "two-pass-float32": _two_pass_float32,
        "one-pass-float32": _one_pass_float32,
    }
    torch_run = _torch_method()
    if torch_run is not None:
        methods["torch"] = torch_run
    z = np.random.default_rng(seed).standard_normal(shape)
    rows = []
    for offset in offsets:
        x32 = (offset * std + std * z).astype(np.float32)
        exact = _exact(x32, EPS)
        for name, method in methods.items():
            with np.errstate(all="ignore"):
                y = method(x32, EPS)
            ulp_err, abs_err = _errors(y, exact)
            finite = math.isfinite(ulp_err)
            rows.append(
                {
                    "offset_over_std": offset,
                    "method": name,
                    "max_err_ulp": ulp_err if finite else None,
                    "max_abs_err": abs_err if finite else None,
                    "within_goal": bool(finite and ulp_err <= GOAL_ULP),
                }
            )
    return {
        "rows": rows,
        "methods": list(methods),
        "setup": {
            "shape": list(shape),
            "std": std,
            "seed": seed,
            "dtype": "float32",
            "eps": EPS,
            "gamma": 1.0,
            "beta": 0.0,
            "inputs": "x = float32(offset * std + std * z), z standard normal, one draw "
            "shared by every offset",
            "error": "max over outputs of |y - y_exact| / (ulp_float32(y_exact) + "
            "abs_allowance / goal_ulp); <= goal_ulp exactly when |y - y_exact| <= "
            "goal_ulp * ulp + abs_allowance",
            "abs_allowance": ABS_ALLOWANCE,
            "goal_ulp": GOAL_ULP,
            "one_pass_float32": "var = mean(x^2) - mean(x)^2 in float32, clamped at 0",
        },
        "reference": "exact result from the same float32 inputs: per-channel mean and "
        "squared deviations summed with math.fsum (correctly rounded) in float64, "
        "output (x - mean) / sqrt(var + eps) in float64; its own error is below 1e-3 "
        "float32 ulp",
    }
