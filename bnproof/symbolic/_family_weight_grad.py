"""Scale-invariant weights for symbolic sizes: ``<W, grad_W L> = 0``.

The claims ``{row}-weight-grad-orthogonal`` check the product at concrete
sizes; the builders here give it for a symbolic size ``M`` of the index set
the statistics run over (the engine's batch size ``N`` of
:func:`bnproof.symbolic.establish`) and a symbolic input width ``D``, with
``g_t = dL/dy_t`` for any loss:

* batch: one feature over ``N`` samples, ``x_n = sum_d U[n, d] w[d]``;
  ``<w, grad_w L> = 0`` at ``eps = 0``;
* instance: one sample and channel over ``P`` positions, ``a_p = sum_d
  x[p, d] w[d]``; the same algebra with positions in place of samples;
* layer and RMS: one sample's ``C`` features, ``a_c = sum_d W[c, d] x[d]``,
  per-feature ``gamma_c``, ``beta_c``; the whole matrix,
  ``sum_{c, d} W[c, d] dL/dW[c, d] = 0`` at ``eps = 0`` (a single row's
  product is not 0: the concrete claims show it). Every sample has its own
  statistics, so over a batch the product is a sum of such terms;
* weight normalization: ``y_n = g sum_d v[d] x[n, d] / ||v||`` over ``N``
  samples; ``<v, grad_v L> = 0`` for every ``v != 0``, with no eps at all.

Each builder also gives the negative control where the invariance fails:
``eps = 1/2`` under the variance, mean square or squared norm, where the
product has an exact nonzero witness. At a concrete size the sums over
``d`` are written out with ``D = SYMBOLIC_D_CONCRETE_D``.

* group: one sample and one group of ``K`` channels (the engine's size)
  over ``P`` positions (a second symbolic size), ``a[q, p] = sum_d W[q, d]
  x[d, p]``, a weight row shared by a channel's positions; the product over
  the group's rows is 0 at ``eps = 0`` (so over every group's, the whole
  matrix). The sums are double sums written here, not the engine's batch;
  at concrete sizes ``K = 2..GROUP_N_MAX`` and ``P = GROUP_CONCRETE_P``.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy
from sympy import IndexedBase, Rational, Sum, Symbol

from ._engine import Identity, Nonzero
from ._models import SymbolicBatch, loss_gradient, n, rms, training

__all__ = [
    "GROUP_CONCRETE_P",
    "GROUP_N_MAX",
    "SYMBOLIC_D_CONCRETE_D",
    "SYMBOLIC_D_N_MAX",
    "SYMBOLIC_ROWS",
    "weight_grad_symbolic",
]

#: Width of the weights at concrete sizes, and the largest concrete size, for
#: the symbolic-D claims (the exact expansion of the product grows fast with both).
SYMBOLIC_D_CONCRETE_D = 2
SYMBOLIC_D_N_MAX = 3

#: The rows with a symbolic-size claim.
SYMBOLIC_ROWS = ("batch", "instance", "layer", "rms", "group", "weight")

eps = Symbol("epsilon", nonnegative=True)
D = Symbol("D", integer=True, positive=True)
#: Summation indices over the input width (``d``, ``e``) and the features (``f``).
d, e, f = (Symbol(s, integer=True) for s in ("d", "e", "f"))
WITNESS_EPS = Rational(1, 2)


def _concrete(name: str, *index) -> Symbol:
    return Symbol(f"{name}_{{{','.join(map(str, index))}}}", real=True)


def _vector_inputs(batch, inputs: str) -> tuple[Callable, list | None]:
    """``values(t) = sum_d X[t, d] w[d]`` and the concrete weights (None: symbolic)."""
    if isinstance(batch, SymbolicBatch):
        X, w = IndexedBase(inputs, real=True), IndexedBase("w", real=True)
        return (lambda t: Sum(X[t, d] * w[d], (d, 1, D))), None
    weights = [Symbol(f"w_{c}", real=True) for c in range(1, SYMBOLIC_D_CONCRETE_D + 1)]
    return (lambda t: sympy.Add(*(_concrete(inputs, t, c) * wc
                                  for c, wc in enumerate(weights, 1)))), weights


def _per_vector(batch, inputs: str) -> list:
    """Batch (``inputs = "U"``, samples) or instance (``"x"``, positions) normalization."""
    values, weights = _vector_inputs(batch, inputs)
    w = IndexedBase("w", real=True)

    def inner(model):
        if weights is None:
            return Sum(w[e] * loss_gradient(model, w[e]), (e, 1, D))
        return sympy.Add(*(wc * loss_gradient(model, wc) for wc in weights))

    ranges = {**batch.ranges, e: (sympy.S.One, D)} if batch.symbolic else {}
    label = Symbol(r"\langle w, \nabla_w L \rangle", real=True)
    return [
        Identity(label, inner(training(batch, values, eps=sympy.S.Zero)), 0, ranges),
        Nonzero(label, inner(training(batch, values)), {eps: WITNESS_EPS}),
    ]


def _whole_matrix(batch, model: Callable, row_scale: Callable) -> list:
    """Layer or RMS normalization of one sample's features, ``a_c = sum_d W[c, d] x[d]``.

    ``row_scale(c)`` multiplies row ``c``'s part of the product (1: the
    claim; anything else is a negative control).
    """
    gamma, beta, g = (IndexedBase(s, real=True) for s in ("gamma", "beta", "g"))
    if isinstance(batch, SymbolicBatch):
        W, x = IndexedBase("W", real=True), IndexedBase("x", real=True)

        def values(t):
            return Sum(W[t, d] * x[d], (d, 1, D))

        def pairs(body):
            return Sum(Sum(row_scale(f) * W[f, e] * body(W[f, e]), (e, 1, D)), (f, 1, batch.size))

        ranges = {**batch.ranges, e: (sympy.S.One, D), f: (sympy.S.One, batch.size)}
    else:
        widths = range(1, SYMBOLIC_D_CONCRETE_D + 1)

        def values(t):
            return sympy.Add(*(_concrete("W", t, c) * _concrete("x", c) for c in widths))

        def pairs(body):
            return sympy.Add(*(row_scale(c) * _concrete("W", c, k) * body(_concrete("W", c, k))
                               for c in batch.indices for k in widths))

        ranges = {}

    def inner(normalized):
        def grad(weight):
            return batch.total(lambda t: batch.item(g, t) * sympy.diff(
                batch.item(gamma, t) * normalized.xhat(t) + batch.item(beta, t), weight), n)

        return pairs(grad)

    label = Symbol(r"\langle W, \nabla_W L \rangle", real=True)
    return [
        Identity(label, inner(model(batch, values, sympy.S.Zero)), 0, ranges),
        Nonzero(label, inner(model(batch, values, eps)), {eps: WITNESS_EPS}),
    ]


def _weight_norm(batch) -> list:
    """``y_n = g sum_d v[d] x[n, d] / ||v||``: ``<v, grad_v L> = 0`` (no eps)."""
    gain, grads = Symbol("g", real=True), IndexedBase("G", real=True)
    if isinstance(batch, SymbolicBatch):
        v, x = IndexedBase("v", real=True), IndexedBase("x", real=True)
        weights = None

        def dot(t):
            return Sum(v[d] * x[t, d], (d, 1, D))

        square = Sum(v[d] ** 2, (d, 1, D))
    else:
        weights = [Symbol(f"v_{c}", real=True) for c in range(1, SYMBOLIC_D_CONCRETE_D + 1)]

        def dot(t):
            return sympy.Add(*(vc * _concrete("x", t, c) for c, vc in enumerate(weights, 1)))

        square = sympy.Add(*(vc ** 2 for vc in weights))

    def inner(floor):
        def grad(weight):
            return batch.total(lambda t: batch.item(grads, t) * sympy.diff(
                gain * dot(t) / sympy.sqrt(square + floor), weight), n)

        if weights is None:
            return Sum(v[e] * grad(v[e]), (e, 1, D))
        return sympy.Add(*(vc * grad(vc) for vc in weights))

    ranges = {**batch.ranges, e: (sympy.S.One, D)} if batch.symbolic else {}
    label = Symbol(r"\langle v, \nabla_v L \rangle", real=True)
    return [
        Identity(label, inner(sympy.S.Zero), 0, ranges),
        # a floor under the squared norm, sqrt(||v||^2 + eps), breaks the invariance
        Nonzero(label, inner(eps), {eps: WITNESS_EPS}),
    ]


#: Positions per channel at concrete sizes for group normalization (the
#: group's channels K take the engine's sizes, 2..GROUP_N_MAX).
GROUP_CONCRETE_P = 2
GROUP_N_MAX = 2


def _group(batch, row_scale: Callable) -> list:
    """Group normalization: one sample and group, ``a[q, p] = sum_d W[q, d] x[d, p]``.

    The statistics run over the group's ``K`` channels (the engine's size)
    and ``P`` positions; the product is over the group's rows of ``W``.
    """
    q, p, r, s, h, t = (Symbol(name, integer=True) for name in "qprsht")
    if isinstance(batch, SymbolicBatch):
        K, P = batch.size, Symbol("P", integer=True, positive=True)
        W, x = IndexedBase("W", real=True), IndexedBase("x", real=True)
        gamma, beta, g = (IndexedBase(name, real=True) for name in ("gamma", "beta", "g"))

        def a(qq, pp):
            return Sum(W[qq, d] * x[d, pp], (d, 1, D))

        def over(body, i1, i2):
            return Sum(Sum(body(i1, i2), (i2, 1, P)), (i1, 1, K))

        def pairs(body):
            return Sum(Sum(row_scale(f) * W[f, e] * body(W[f, e]), (e, 1, D)), (f, 1, K))

        def item(base, *index):
            return {"gamma": gamma, "beta": beta, "g": g}[base][index]

        ranges = {e: (sympy.S.One, D), f: (sympy.S.One, K)}
    else:
        K, P = batch.size, GROUP_CONCRETE_P
        widths = range(1, SYMBOLIC_D_CONCRETE_D + 1)

        def a(qq, pp):
            return sympy.Add(*(_concrete("W", qq, k) * _concrete("x", k, pp) for k in widths))

        def over(body, i1, i2):
            return sympy.Add(*(body(u, v) for u in range(1, K + 1) for v in range(1, P + 1)))

        def pairs(body):
            return sympy.Add(*(row_scale(u) * _concrete("W", u, k) * body(_concrete("W", u, k))
                               for u in range(1, K + 1) for k in widths))

        item = _concrete
        ranges = {}

    def inner(floor):
        mu = over(a, q, p) / (K * P)
        var = over(lambda u, v: (a(u, v) - mu) ** 2, r, s) / (K * P)

        def y(u, v):
            return item("gamma", u) * (a(u, v) - mu) / sympy.sqrt(var + floor) + item("beta", u)

        return pairs(lambda w: over(lambda u, v: item("g", u, v) * sympy.diff(y(u, v), w), h, t))

    label = Symbol(r"\langle W_{\mathcal{G}}, \nabla_{W_{\mathcal{G}}} L \rangle", real=True)
    return [
        Identity(label, inner(sympy.S.Zero), 0, ranges),
        Nonzero(label, inner(eps), {eps: WITNESS_EPS}),
    ]


def weight_grad_symbolic(row: str, row_scale: Callable = lambda c: 1) -> Callable:
    """Return the builder of ``{row}-weight-grad-orthogonal-symbolic`` for :func:`establish`.

    Parameters
    ----------
    row : str
        One of :data:`SYMBOLIC_ROWS`.
    row_scale : callable, optional
        Layer, RMS and group only: ``row_scale(c)`` weighs row ``c`` of the
        product (default 1, the claim; a negative control passes another).
    """
    if row not in SYMBOLIC_ROWS:
        raise ValueError(f"no symbolic weight-gradient claim for row {row!r}; choose one of "
                         f"{', '.join(SYMBOLIC_ROWS)}")
    if row in ("batch", "instance"):
        inputs = "U" if row == "batch" else "x"
        return lambda batch, indices: _per_vector(batch, inputs)
    if row == "weight":
        return lambda batch, indices: _weight_norm(batch)
    if row == "group":
        return lambda batch, indices: _group(batch, row_scale)

    def model(batch, values, floor):
        if row == "rms":
            return rms(batch, values, eps=floor)
        return training(batch, values, eps=floor)

    return lambda batch, indices: _whole_matrix(batch, model, row_scale)
