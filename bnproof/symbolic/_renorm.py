"""Batch Renormalization: the gradient ignores the bias, the output does not.

Batch Renormalization (Ioffe 2017, arXiv:1702.03275, Algorithm 1) corrects
the batch statistics towards running ones,

    xhat_i = (x_i - mu_B) / sigma_B * r + d,
    r = sg(sigma_B / sigma),   d = sg((mu_B - mu) / sigma),

with ``r`` and ``d`` under stop-gradient (:class:`StopGradient`) and, in
practice, clipped to ``[1/r_max, r_max]`` and ``[-d_max, d_max]``. With a
bias before it (``x_i = u_i + b``), the gradient sees batch normalization
(``dy_i/db = 0``) while the value is the inference transform ``(x_i - mu) /
sigma``, which moves with ``b``: section 2's situation of Ioffe & Szegedy
(2015) again. Each claim holds for a symbolic batch size N.
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy
from sympy import Derivative, IndexedBase, Symbol

from ._engine import Identity, Nonzero, establish
from ._indexsets import StopGradient, strip_stop_gradients
from ._models import Batch, b, batch_mean, batch_var, beta, eps, gamma, u
from ._proof import Claim, Proof, Step
from ._registry import register

__all__ = ["renorm_output"]

#: Running mean and standard deviation (sigma > 0), and the clipping bounds.
mu_run = Symbol("mu", real=True)
sigma_run = Symbol("sigma", positive=True)
r_max = Symbol("r_max", positive=True)
d_max = Symbol("d_max", positive=True)
y = IndexedBase("y", real=True)


def renorm_output(batch: Batch, i, *, r_clipped: bool = False,
                  d_clipped: bool = False) -> sympy.Expr:
    """Return ``y_i`` of Batch Renormalization with ``x_t = u_t + b``.

    Parameters
    ----------
    batch : SymbolicBatch or ConcreteBatch
    i : index
    r_clipped, d_clipped : bool
        Replace ``r`` by its bound ``r_max`` / ``d`` by ``d_max`` (the
        clipped case; the bound is a constant, still under stop-gradient).
    """
    values = lambda t: batch.item(u, t) + b  # noqa: E731
    mu_b = batch_mean(batch, values)
    sigma_b = sympy.sqrt(batch_var(batch, values) + eps)
    r = StopGradient(r_max if r_clipped else sigma_b / sigma_run)
    d = StopGradient(d_max if d_clipped else (mu_b - mu_run) / sigma_run)
    return gamma * ((values(i) - mu_b) / sigma_b * r + d) + beta


def _ranges(batch: Batch) -> dict:
    return dict(batch.ranges) if batch.symbolic else {}


def _gradient_ignores_b(batch: Batch, idx: Mapping) -> list:
    i = idx["i"]
    return [Identity(Derivative(y[i], b), sympy.diff(renorm_output(batch, i), b), 0,
                     _ranges(batch))]


def _value_moves_with_b(batch: Batch, idx: Mapping) -> list:
    i = idx["i"]
    value = strip_stop_gradients(renorm_output(batch, i))
    inference = gamma * (batch.item(u, i) + b - mu_run) / sigma_run + beta
    slope = sympy.diff(value, b)
    return [
        Identity(y[i], value, inference, _ranges(batch)),
        Identity(Symbol(r"\partial_b y_i\ (\mathrm{value})", real=True), slope,
                 gamma / sigma_run, _ranges(batch)),
        Nonzero(Symbol(r"\partial_b y_i\ (\mathrm{value})", real=True), slope),
    ]


def _clipping(batch: Batch, idx: Mapping) -> list:
    i = idx["i"]
    ranges = _ranges(batch)
    label = Symbol(r"\partial_b y_i\ (\mathrm{value})", real=True)
    items = []
    for r_c, d_c in ((True, False), (True, True), (False, True)):
        out = renorm_output(batch, i, r_clipped=r_c, d_clipped=d_c)
        items.append(Identity(Derivative(y[i], b), sympy.diff(out, b), 0, ranges))
        slope = sympy.diff(strip_stop_gradients(out), b)
        if d_c:  # d at its bound: the value no longer moves with b either
            items.append(Identity(label, slope, 0, ranges))
        else:  # d free, r at its bound: the value still moves with b
            items.append(Identity(label, slope, gamma / sigma_run, ranges))
            items.append(Nonzero(label, slope))
    return items


_PREAMBLE = (
    Step("Batch Renormalization (Ioffe 2017, Algorithm 1), x_i = u_i + b",
         sympy.Eq(y[Symbol("i", integer=True)],
                  gamma * (Symbol(r"\hat{x}_B", real=True) * Symbol("r") + Symbol("d"))
                  + beta, evaluate=False),
         "r = sg(sigma_B / sigma), d = sg((mu_B - mu) / sigma); sg is the value with "
         "derivative 0"),
)


def _claim(cid: str, statement: str, latex: str, build, assumptions) -> Claim:
    def prove_claim(n_max: int) -> Proof:
        return establish(cid, build, free=("i",), n_max=n_max, preamble=_PREAMBLE,
                         symmetric=True)

    return Claim(id=cid, statement=statement, latex=latex, assumptions=tuple(assumptions),
                 expected="proved", prove=prove_claim,
                 section="Ioffe (2017), section 3 and Algorithm 1", group="family")


def register_claims() -> None:
    """Register the Batch Renormalization claims (called once, by the package)."""
    for claim in _claims():
        register(claim)


def _claims() -> tuple[Claim, ...]:
    return (
        _claim("batch-renorm-bias-gradient-zero",
               "Batch Renormalization with r and d under stop-gradient: the gradient ignores "
               "a bias before it, dy_i/db = 0, for a symbolic N and any eps >= 0.",
               r"\frac{\partial y_i}{\partial b} = 0",
               _gradient_ignores_b, ("N >= 2", "eps >= 0", "sigma > 0")),
        _claim("batch-renorm-output-depends-on-bias",
               "Yet its output is the inference transform gamma (x_i - mu) / sigma + beta, "
               "so it moves with b: the value's slope in b is gamma / sigma, not 0.",
               r"y_i = \gamma\,\frac{x_i - \mu}{\sigma} + \beta,\quad "
               r"\frac{\partial y_i}{\partial b}\Big|_{\mathrm{value}} = \frac{\gamma}{\sigma}",
               _value_moves_with_b, ("N >= 2", "eps >= 0", "sigma > 0", "unclipped r and d",
                                     "gamma != 0")),
        _claim("batch-renorm-clipping",
               "With clipping, case by case: the gradient still ignores b; the output moves "
               "with b (slope gamma / sigma) while d is within its bounds, and stops moving "
               "once d is clipped at a bound.",
               r"d = \pm d_{\max} \Rightarrow \frac{\partial y_i}{\partial b}\Big|"
               r"_{\mathrm{value}} = 0",
               _clipping, ("N >= 2", "eps >= 0", "sigma > 0",
                           "cases: r clipped, d free; r and d clipped; r free, d clipped")),
    )
