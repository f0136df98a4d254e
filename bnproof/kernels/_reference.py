"""Plain NumPy batch normalization with float64 accumulation.

This is the independent reference the Numba kernels are tested and benchmarked
against (the "NumPy float64-accumulating reference" of the benchmark). It works
on the three-axis view ``(A, C, B)`` of the input used throughout this package:
``A`` runs over everything before the channel axis, ``B`` over everything after
it, so ``(N, C)`` is ``(N, C, 1)``, channels-first ``(N, C, H, W)`` is
``(N, C, H*W)`` and channels-last ``(N, H, W, C)`` is ``(N*H*W, C, 1)``.

Notes
-----
Ioffe & Szegedy (2015), Algorithm 1: ``mu`` the batch mean, ``var`` the biased
batch variance, ``xhat = (x - mu) / sqrt(var + eps)``, ``y = gamma xhat + beta``.
The variance is computed with two passes (mean first, then the mean squared
deviation), never as ``E[x^2] - E[x]^2``.
"""

from __future__ import annotations

import numpy as np

_REDUCE_AXES = (0, 2)


def _as3(arr):
    """View a rows x channels ``(R, C)`` array as ``(R, C, 1)``."""
    return arr if arr.ndim == 3 else arr[:, :, None]


def moments(x3):
    """Per-channel mean and sum of squared deviations ``m2`` (float64, two-pass)."""
    x64 = _as3(x3).astype(np.float64)
    mu = x64.mean(axis=_REDUCE_AXES)
    m2 = np.square(x64 - mu[None, :, None]).sum(axis=_REDUCE_AXES)
    return mu, m2


def normalize(x3, mu, scale, beta, out3):
    """Write ``(x - mu) * scale + beta``, evaluated in float64, into ``out3``."""
    x3, out3 = _as3(x3), _as3(out3)
    y = (x3.astype(np.float64) - mu[None, :, None]) * scale[None, :, None] + beta[None, :, None]
    out3[...] = y


def forward_train(x3, gamma, beta, eps, out3):
    """Training forward: batch statistics, then the normalized output.

    Returns ``(mu, m2, invstd)``, all float64 of shape ``(C,)``.
    """
    mu, m2 = moments(x3)
    count = x3.size // x3.shape[1]
    invstd = 1.0 / np.sqrt(m2 / count + eps)
    normalize(x3, mu, gamma * invstd, beta, out3)
    return mu, m2, invstd


def backward_sums(dy3, x3, mu):
    """Per-channel ``sum(dy)`` and ``sum(dy * (x - mu))`` in float64."""
    dy64 = _as3(dy3).astype(np.float64)
    xmu = _as3(x3).astype(np.float64) - mu[None, :, None]
    return dy64.sum(axis=_REDUCE_AXES), (dy64 * xmu).sum(axis=_REDUCE_AXES)


def backward_train(dy3, x3, mu, invstd, gamma, dx3):
    """Training backward; writes ``dx`` and returns ``(sum_dy, sum_dy_xmu)``.

    ``dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat))`` with
    ``xhat = (x - mu) invstd``.
    """
    sum_dy, sum_dy_xmu = backward_sums(dy3, x3, mu)
    dy3, x3, dx3 = _as3(dy3), _as3(x3), _as3(dx3)
    count = x3.shape[0] * x3.shape[2]
    mean_dy = sum_dy / count
    # xhat * mean(dy xhat) = (x - mu) * invstd^2 * sum(dy (x - mu)) / count
    k = invstd * invstd * sum_dy_xmu / count
    scale = gamma * invstd
    dy64 = dy3.astype(np.float64)
    xmu = x3.astype(np.float64) - mu[None, :, None]
    dx = scale[None, :, None] * (dy64 - mean_dy[None, :, None] - xmu * k[None, :, None])
    dx3[...] = dx
    return sum_dy, sum_dy_xmu
