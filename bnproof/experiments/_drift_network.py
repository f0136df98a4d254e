"""The drift experiment's network: data, parameters, forward and backward passes.

``x = u W + b`` -> normalization (:mod:`bnproof.kernels`) -> ``gamma``,
``beta`` -> ``tanh`` -> ``h V + c`` -> softmax cross-entropy, with the three
gradient modes of :mod:`bnproof.experiments.drift` (``exact``, ``outside``,
``running``). Used by the scenarios there; nothing here prints or writes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

#: Hidden units of the normalized layer.
HIDDEN = 32
#: ``eps`` of the ``center-scale`` normalization (PyTorch's default).
EPS = 1e-5
#: Momentum of the running statistics (PyTorch's convention and default).
MOMENTUM = 0.1
#: Synthetic task: examples, input features, classes.
SYNTHETIC_SHAPE = (1024, 16, 4)


# --------------------------------------------------------------------------- #
# data and parameters
# --------------------------------------------------------------------------- #


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "the drift experiment needs scikit-learn for its bundled handwritten digits "
            "(install it with: pip install 'bnproof[report]')",
            name=exc.name,
        ) from None
    data = load_digits()
    # Pixels are 0..16; scaled to [0, 1] and left uncentered, as usually fed.
    u = np.asarray(data.data, dtype=np.float64) / 16.0
    return u, np.asarray(data.target, dtype=np.int64)


def _dataset(name: str, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Return float64 inputs ``u`` (N, D), integer labels (N,) and the class count."""
    if name == "digits":
        u, labels = _digits()
        return u, labels, 10
    n, d, k = SYNTHETIC_SHAPE
    rng = np.random.default_rng([seed, 1, 0])
    # Standard normal inputs labelled by a random linear teacher: zero-mean
    # inputs, unlike the digits' nonnegative pixels.
    u = rng.standard_normal((n, d))
    teacher = rng.standard_normal((d, k))
    labels = np.argmax(u @ teacher, axis=1)
    return u, labels, k


@dataclass
class _Params:
    """Parameters of the network (all in one dtype)."""

    W: np.ndarray  # noqa: N815 (the paper's name for the weight matrix)
    b: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    V: np.ndarray  # noqa: N815 (output weights, named like W)
    c: np.ndarray

    NAMES = ("W", "b", "gamma", "beta", "V", "c")

    def arrays(self) -> list[np.ndarray]:
        return [getattr(self, n) for n in self.NAMES]

    def finite(self) -> bool:
        return all(bool(np.isfinite(a).all()) for a in self.arrays())


def _init_params(d: int, k: int, seed: int, dtype: str, random_b: bool) -> _Params:
    """Draw the initial parameters: W ~ N(0, 1/d), V ~ N(0, 1/HIDDEN), gamma 1, others 0.

    The draws are made in float64 and rounded, so float32 and float64 runs
    start from the same point. With ``random_b``, ``b ~ N(0, 1)``.
    """
    rng = np.random.default_rng([seed, 2, d, k])
    W = rng.standard_normal((d, HIDDEN)) / math.sqrt(d)  # noqa: N806
    V = rng.standard_normal((HIDDEN, k)) / math.sqrt(HIDDEN)  # noqa: N806
    b = rng.standard_normal(HIDDEN) if random_b else np.zeros(HIDDEN)
    return _Params(
        W=W.astype(dtype),
        b=b.astype(dtype),
        gamma=np.ones(HIDDEN, dtype=dtype),
        beta=np.zeros(HIDDEN, dtype=dtype),
        V=V.astype(dtype),
        c=np.zeros(k, dtype=dtype),
    )


# --------------------------------------------------------------------------- #
# the network: forward and backward
# --------------------------------------------------------------------------- #


def _normalize(x, p: _Params, norm: str, stats):
    """Normalize ``x`` (N, HIDDEN) and apply gamma, beta.

    ``stats`` is ``None`` for the batch statistics, else ``(mean, var)``
    treated as given (the running buffers). Returns ``(y, mean, invstd)``
    as the kernels do (float64 statistics).
    """
    from bnproof import kernels

    if norm == "center-scale":
        if stats is None:
            return kernels.batch_norm_forward(
                x, p.gamma, p.beta, training=True, eps=EPS, channel_axis=1
            )
        mean, var = stats
        return kernels.batch_norm_forward(
            x, p.gamma, p.beta, mean, var, training=False, eps=EPS, channel_axis=1
        )
    # center: inference mode with the mean, unit variance and eps = 0.
    if stats is None:
        mean = kernels.batch_norm_moments(x, channel_axis=1).mean.astype(x.dtype)
    else:
        mean = stats[0]
    unit = np.ones(x.shape[1], dtype=x.dtype)
    return kernels.batch_norm_forward(
        x, p.gamma, p.beta, mean, unit, training=False, eps=0.0, channel_axis=1
    )


def _head(y, p: _Params, labels):
    """tanh, output layer and mean cross-entropy: ``(loss, accuracy, h, logits)``."""
    h = np.tanh(y)
    logits = h @ p.V + p.c
    z = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    rows = np.arange(len(labels))
    loss = float(np.mean(lse - z[rows, labels], dtype=np.float64))
    accuracy = float(np.mean(np.argmax(logits, axis=1) == labels))
    return loss, accuracy, h, z, lse


def _evaluate(p: _Params, u, labels, norm: str, stats=None):
    """Loss (nats) and accuracy on ``u`` without any update.

    ``stats=None`` normalizes with the statistics of ``u`` itself (how
    ``exact`` and ``outside`` normalize); else with the given ``(mean, var)``.
    """
    x = u @ p.W + p.b
    y, _, _ = _normalize(x, p, norm, stats)
    loss, accuracy, *_ = _head(y, p, labels)
    return loss, accuracy


class _Running:
    """Running buffers (PyTorch's initial values: mean 0, variance 1)."""

    def __init__(self, dtype: str):
        self.mean = np.zeros(HIDDEN, dtype=dtype)
        self.var = np.ones(HIDDEN, dtype=dtype)

    def update(self, x) -> None:
        from bnproof import kernels

        kernels.batch_norm_forward(
            x, None, None, self.mean, self.var,
            training=True, momentum=MOMENTUM, eps=EPS, channel_axis=1,
        )


def _loss_and_grads(p: _Params, x, u, labels, mode: str, norm: str, running: _Running | None):
    """One forward and backward pass on the batch ``u`` with ``x = u W + b``.

    Returns ``(loss, accuracy, grads, dx)`` with ``grads`` a dict named like
    the parameters (``W`` omitted when ``u`` is ``None``: only ``b`` needed).
    """
    from bnproof import kernels

    if mode == "running":
        running.update(x)
        stats = (running.mean, running.var)
    else:
        stats = None
    y, mean, invstd = _normalize(x, p, norm, stats)
    loss, accuracy, h, z, lse = _head(y, p, labels)

    n = len(labels)
    dlogits = np.exp(z - lse[:, None])
    dlogits[np.arange(n), labels] -= 1
    dlogits /= n
    dh = dlogits @ p.V.T
    dy = dh * (1 - h * h)
    if norm == "center":
        invstd = np.ones(HIDDEN)
    exact_scale = mode == "exact" and norm == "center-scale"
    dx, dgamma, dbeta = kernels.batch_norm_backward(
        dy, x, p.gamma, mean, invstd, training=exact_scale, channel_axis=1
    )
    if mode == "exact" and norm == "center":
        dx = dx - dx.mean(axis=0, dtype=np.float64).astype(dx.dtype)
    grads = {
        "b": dx.sum(axis=0, dtype=np.float64).astype(dx.dtype),
        "gamma": dgamma,
        "beta": dbeta,
        "V": h.T @ dlogits,
        "c": dlogits.sum(axis=0),
    }
    if u is not None:
        grads["W"] = u.T @ dx
    return loss, accuracy, grads, dx
