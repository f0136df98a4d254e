"""Symbolic models of batch normalization of one feature over a batch.

Each model comes in two forms that share one definition:

* a **symbolic batch size** N (:class:`SymbolicBatch`): values ``x[k]`` of an
  ``IndexedBase`` and ``Sum`` over ``k = 1..N``;
* a **concrete batch size** (:class:`ConcreteBatch`): explicit symbols
  ``x_1, ..., x_N`` and ordinary sums.

Notation follows Algorithm 1 of Ioffe & Szegedy (2015): ``mu`` the batch mean,
``var`` the biased batch variance, ``xhat`` the normalized value and
``y = gamma * xhat + beta``. Section 2 of the paper adds a bias before the
normalization, ``x_i = u_i + b``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy
from sympy import Add, IndexedBase, Sum, Symbol

__all__ = [
    "N",
    "ConcreteBatch",
    "Model",
    "SymbolicBatch",
    "b",
    "beta",
    "center_only",
    "eps",
    "g",
    "gamma",
    "i",
    "inference",
    "j",
    "loss_gradient",
    "n",
    "rms",
    "running_mean",
    "running_var",
    "training",
    "u",
    "x",
]

#: The symbolic batch size.
N = Symbol("N", integer=True, positive=True)
#: Free indices of outputs and inputs (``y_i``, ``x_j``).
i, j = sympy.symbols("i j", integer=True)
#: Summation indices: ``m`` in the mean, ``k`` in the variance, ``n`` over outputs.
m, k, n = sympy.symbols("m k n", integer=True)

#: Inputs to the normalization, the values before the bias, and dL/dy.
x = IndexedBase("x", real=True)
u = IndexedBase("u", real=True)
g = IndexedBase("g", real=True)

b = Symbol("b", real=True)
gamma = Symbol("gamma", real=True)
beta = Symbol("beta", real=True)
#: The variance floor of Algorithm 1, a symbol >= 0.
eps = Symbol("epsilon", nonnegative=True)
#: Fixed running statistics used in inference mode (section 3.1 of the paper).
running_mean = Symbol("mu_R", real=True)
running_var = Symbol("sigma_R^2", nonnegative=True)

Index = sympy.Expr | int
Values = Callable[[Index], sympy.Expr]


class SymbolicBatch:
    """A batch ``x[1], ..., x[N]`` of symbolic size N (``IndexedBase`` and ``Sum``)."""

    symbolic = True
    size = N

    def item(self, base: IndexedBase, index: Index) -> sympy.Expr:
        """Return the ``index``-th value of ``base``."""
        return base[index]

    def total(self, term: Values, index: Symbol) -> sympy.Expr:
        """Return the sum of ``term(index)`` over the batch."""
        return Sum(term(index), (index, 1, N))

    @property
    def ranges(self) -> dict[Symbol, tuple[sympy.Expr, sympy.Expr]]:
        """Declared ranges of the free indices ``i`` and ``j``."""
        return {i: (sympy.S.One, N), j: (sympy.S.One, N)}

    def __repr__(self) -> str:
        return "SymbolicBatch()"


class ConcreteBatch:
    """A batch ``x_1, ..., x_n`` of concrete size ``n`` (explicit symbols).

    Parameters
    ----------
    size : int
        The batch size, at least 1.
    """

    symbolic = False

    def __init__(self, size: int):
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"size must be an int, got {type(size).__name__}")
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size

    @property
    def indices(self) -> range:
        """The indices ``1..size``."""
        return range(1, self.size + 1)

    def item(self, base: IndexedBase, index: Index) -> sympy.Expr:
        """Return the symbol ``<base>_<index>`` (e.g. ``x_3``, or ``u_{2,3}`` for a tuple)."""
        if isinstance(index, tuple):
            return Symbol(f"{base.label}_{{{','.join(map(str, index))}}}", real=True)
        return Symbol(f"{base.label}_{index}", real=True)

    def total(self, term: Values, index: Symbol) -> sympy.Expr:
        """Return the explicit sum of ``term(t)`` for ``t = 1..size``."""
        return Add(*(term(t) for t in self.indices))

    ranges: dict = {}

    def __repr__(self) -> str:
        return f"ConcreteBatch({self.size})"


Batch = SymbolicBatch | ConcreteBatch


@dataclass(frozen=True)
class Model:
    """A normalization ``y_i = gamma * (x_i - center) / scale + beta``.

    Parameters
    ----------
    name : str
        Which normalization (``"training"``, ``"center-only"``,
        ``"inference"``, ``"rms"``).
    batch : SymbolicBatch or ConcreteBatch
        The batch the statistics run over.
    x : callable
        ``x(index)``: the input value at ``index`` (e.g. ``u[index] + b``).
    center : sympy.Expr
        What is subtracted (``mu``, a running mean, or 0).
    scale : sympy.Expr
        What divides (``sqrt(var + eps)``, 1, ...).
    mu, var : sympy.Expr or None
        The batch mean and biased batch variance, when the model uses them.
    """

    name: str
    batch: Batch
    x: Values
    center: sympy.Expr
    scale: sympy.Expr
    mu: sympy.Expr | None = None
    var: sympy.Expr | None = None

    def xhat(self, index: Index) -> sympy.Expr:
        """Return the normalized value ``(x_index - center) / scale``."""
        return (self.x(index) - self.center) / self.scale

    def y(self, index: Index) -> sympy.Expr:
        """Return the output ``gamma * xhat_index + beta``."""
        return gamma * self.xhat(index) + beta


def _inputs(batch: Batch, values: Values | None) -> Values:
    if values is not None:
        return values
    return lambda t: batch.item(x, t)


def batch_mean(batch: Batch, values: Values) -> sympy.Expr:
    """Return ``mu = (1/N) sum_m x_m`` (Algorithm 1, first line)."""
    return batch.total(values, m) / batch.size


def batch_var(batch: Batch, values: Values) -> sympy.Expr:
    """Return the biased ``var = (1/N) sum_k (x_k - mu)**2`` (Algorithm 1)."""
    mu = batch_mean(batch, values)
    return batch.total(lambda t: (values(t) - mu) ** 2, k) / batch.size


def training(
    batch: Batch, values: Values | None = None, eps: sympy.Expr = eps
) -> Model:
    """Batch normalization in training mode (batch statistics).

    Parameters
    ----------
    batch : SymbolicBatch or ConcreteBatch
        The batch.
    values : callable, optional
        ``values(index)`` -> input; default ``x[index]``. Pass
        ``lambda t: batch.item(u, t) + b`` for section 2's bias.
    eps : sympy.Expr, optional
        The variance floor (default the symbol ``epsilon >= 0``).

    Returns
    -------
    Model

    Notes
    -----
    Algorithm 1 of Ioffe & Szegedy (2015).
    """
    values = _inputs(batch, values)
    mu = batch_mean(batch, values)
    var = batch_var(batch, values)
    return Model("training", batch, values, mu, sympy.sqrt(var + eps), mu, var)


def center_only(batch: Batch, values: Values | None = None) -> Model:
    """Centering without scaling: ``y_i = gamma * (x_i - mu) + beta``.

    Notes
    -----
    The normalization ``xhat = x - E[x]`` of section 2 of the paper.
    """
    values = _inputs(batch, values)
    mu = batch_mean(batch, values)
    return Model("center-only", batch, values, mu, sympy.S.One, mu)


def inference(batch: Batch, values: Values | None = None) -> Model:
    """Inference mode: fixed running mean and variance, no batch statistics.

    Notes
    -----
    Section 3.1 of the paper: ``y = gamma (x - E[x]) / sqrt(Var[x] + eps) +
    beta`` with population statistics that do not depend on the batch.
    """
    values = _inputs(batch, values)
    return Model(
        "inference", batch, values, running_mean, sympy.sqrt(running_var + eps)
    )


def rms(batch: Batch, values: Values | None = None, eps: sympy.Expr = eps) -> Model:
    """RMS normalization (no centering): ``y_i = gamma x_i / sqrt(mean(x**2) + eps) + beta``.

    Parameters
    ----------
    batch : SymbolicBatch or ConcreteBatch
        The values the mean square runs over.
    values : callable, optional
        ``values(index)`` -> input; default ``x[index]``.
    eps : sympy.Expr, optional
        The floor under the mean square (default the symbol ``epsilon >= 0``).

    Notes
    -----
    Not batch normalization: the negative control of the catalogue, for
    which the bias does not cancel.
    """
    values = _inputs(batch, values)
    mean_square = batch.total(lambda t: values(t) ** 2, k) / batch.size
    return Model("rms", batch, values, sympy.S.Zero, sympy.sqrt(mean_square + eps))


def loss_gradient(model: Model, wrt: sympy.Expr) -> sympy.Expr:
    """Return ``dL/d(wrt) = sum_n g_n dy_n/d(wrt)`` for any loss L, ``g_n = dL/dy_n``.

    Parameters
    ----------
    model : Model
        The normalization.
    wrt : sympy.Expr
        A symbol (``b``, ``gamma``) or an input value (``x[j]``, ``x_3``).

    Returns
    -------
    sympy.Expr
        The chain rule through every output, derived with ``sympy.diff``
        (through ``mu`` and ``var``); sums are left unevaluated.
    """
    batch = model.batch
    return batch.total(lambda t: batch.item(g, t) * sympy.diff(model.y(t), wrt), n)
