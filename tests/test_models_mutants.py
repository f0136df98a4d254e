"""Literal unit tests of the batch-normalization models (``_models``).

The expected formulas are Algorithm 1 of Ioffe & Szegedy (2015) written out
by hand for a batch of two (``mu = (x_1 + x_2)/2``, biased variance
``(x_1 - x_2)**2 / 4``) and for the symbolic batch of size N.
"""

import pytest
import sympy
from sympy import Sum, Symbol, sqrt

from bnproof.symbolic._models import (
    ConcreteBatch,
    N,
    SymbolicBatch,
    b,
    batch_mean,
    batch_var,
    beta,
    center_only,
    eps,
    g,
    gamma,
    i,
    inference,
    j,
    k,
    loss_gradient,
    m,
    n,
    rms,
    running_mean,
    running_var,
    training,
    u,
    x,
)

x1, x2 = Symbol("x_1", real=True), Symbol("x_2", real=True)
u1, u2 = Symbol("u_1", real=True), Symbol("u_2", real=True)
g1, g2 = Symbol("g_1", real=True), Symbol("g_2", real=True)


def _same(a, b):
    return sympy.expand(a - b) == 0


# ---- the batches ------------------------------------------------------------------------ #


def test_symbolic_batch():
    batch = SymbolicBatch()
    assert batch.symbolic is True
    assert batch.size == N
    assert batch.item(x, k) == x[k]
    assert batch.total(lambda t: x[t] ** 2, m) == Sum(x[m] ** 2, (m, 1, N))
    assert batch.ranges == {i: (1, N), j: (1, N)}
    assert repr(batch) == "SymbolicBatch()"


def test_concrete_batch():
    batch = ConcreteBatch(3)
    assert batch.symbolic is False
    assert batch.size == 3
    assert list(batch.indices) == [1, 2, 3]
    assert batch.item(x, 3) == Symbol("x_3", real=True)
    assert batch.item(u, (2, 3)) == Symbol("u_{2,3}", real=True)
    assert batch.total(lambda t: t * batch.item(x, t), m) == (
        Symbol("x_1", real=True) + 2 * Symbol("x_2", real=True) + 3 * Symbol("x_3", real=True))
    assert batch.ranges == {}
    assert repr(batch) == "ConcreteBatch(3)"
    assert list(ConcreteBatch(1).indices) == [1]


@pytest.mark.parametrize(
    "size, error, message",
    [
        (True, TypeError, "size must be an int, got bool"),
        (2.0, TypeError, "size must be an int, got float"),
        (0, ValueError, "size must be >= 1, got 0"),
        (-3, ValueError, "size must be >= 1, got -3"),
    ],
)
def test_concrete_batch_rejects_a_bad_size(size, error, message):
    with pytest.raises(error, match=message):
        ConcreteBatch(size)


# ---- the statistics ------------------------------------------------------------------- #


def test_batch_statistics_of_a_symbolic_batch():
    batch = SymbolicBatch()
    mean = Sum(x[m], (m, 1, N)) / N
    assert batch_mean(batch, lambda t: x[t]) == mean
    assert batch_var(batch, lambda t: x[t]) == Sum((x[k] - mean) ** 2, (k, 1, N)) / N


def test_batch_statistics_of_two_values():
    batch = ConcreteBatch(2)
    values = lambda t: batch.item(x, t)  # noqa: E731
    assert _same(batch_mean(batch, values), (x1 + x2) / 2)
    assert _same(batch_var(batch, values), (x1 - x2) ** 2 / 4)
    three = ConcreteBatch(3)  # mean 2 and variance 2/3 of 1, 2, 3
    assert batch_mean(three, lambda t: t) == 2
    assert batch_var(three, lambda t: t) == sympy.Rational(2, 3)


# ---- the models -------------------------------------------------------------------------- #


def test_training_model_of_two_values():
    batch = ConcreteBatch(2)
    model = training(batch)
    assert model.name == "training"
    assert model.batch is batch
    assert model.x(1) == x1
    assert _same(model.mu, (x1 + x2) / 2)
    assert _same(model.center, (x1 + x2) / 2)
    assert _same(model.var, (x1 - x2) ** 2 / 4)
    assert _same(model.scale**2, (x1 - x2) ** 2 / 4 + eps)
    assert _same(model.xhat(1) * model.scale, (x1 - x2) / 2)
    assert _same((model.y(2) - beta) * model.scale / gamma, (x2 - x1) / 2)


def test_training_with_a_bias_and_a_given_eps():
    batch = ConcreteBatch(2)
    model = training(batch, lambda t: batch.item(u, t) + b, eps=0)
    assert model.x(2) == u2 + b
    assert _same(model.mu, (u1 + u2) / 2 + b)
    assert _same(model.scale**2, (u1 - u2) ** 2 / 4)


def test_center_only_model():
    batch = ConcreteBatch(2)
    model = center_only(batch)
    assert model.name == "center-only"
    assert _same(model.center, (x1 + x2) / 2)
    assert _same(model.mu, (x1 + x2) / 2)
    assert model.scale == 1
    assert model.var is None
    assert _same(model.y(1), gamma * (x1 - x2) / 2 + beta)
    shifted = center_only(batch, lambda t: batch.item(u, t) + b)
    assert _same(shifted.y(1), gamma * (u1 - u2) / 2 + beta)


def test_inference_model():
    batch = ConcreteBatch(2)
    model = inference(batch)
    assert model.name == "inference"
    assert model.center == running_mean
    assert model.scale == sqrt(running_var + eps)
    assert model.mu is None and model.var is None
    assert model.y(1) == gamma * (x1 - running_mean) / sqrt(running_var + eps) + beta
    assert inference(batch, lambda t: batch.item(u, t)).x(2) == u2


def test_rms_model():
    batch = ConcreteBatch(2)
    model = rms(batch)
    assert model.name == "rms"
    assert model.center == 0
    assert _same(model.scale**2, (x1**2 + x2**2) / 2 + eps)
    assert model.mu is None and model.var is None
    assert model.x(2) == x2
    given = rms(batch, lambda t: batch.item(u, t), eps=0)
    assert _same(given.scale**2, (u1**2 + u2**2) / 2)


def test_rms_of_a_symbolic_batch():
    model = rms(SymbolicBatch())
    assert model.scale == sqrt(Sum(x[k] ** 2, (k, 1, N)) / N + eps)


def test_loss_gradients_of_two_values():
    batch = ConcreteBatch(2)
    shifted = center_only(batch, lambda t: batch.item(u, t) + b)
    assert _same(loss_gradient(shifted, b), 0)  # the bias cancels
    # dL/dgamma = g_1 (x_1 - mu) + g_2 (x_2 - mu)
    assert _same(loss_gradient(center_only(batch), gamma), (g1 - g2) * (x1 - x2) / 2)
    # dy_1/dx_1 = gamma/2, dy_2/dx_1 = -gamma/2
    assert _same(loss_gradient(center_only(batch), x1), gamma * (g1 - g2) / 2)
    assert _same(loss_gradient(inference(batch), beta), g1 + g2)


def test_loss_gradient_of_a_symbolic_batch():
    model = inference(SymbolicBatch())
    assert loss_gradient(model, gamma) == Sum(
        g[n] * (x[n] - running_mean) / sqrt(running_var + eps), (n, 1, N))
