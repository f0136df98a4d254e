"""The registry of claims around the bias paragraph of section 2, and their proofs.

Every claim is written once, for any batch (symbolic N or explicit
x_1..x_n), as identities that must hold and expressions that must not
vanish; :func:`bnproof.symbolic._engine.establish` checks them symbolically
and at concrete N. The paper is Ioffe & Szegedy (2015), arXiv:1502.03167;
each claim's ``section`` says where it discusses the claim.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import sympy
from sympy import Derivative, Eq, IndexedBase, KroneckerDelta, Rational, Symbol

from ._engine import Identity, Nonzero, establish
from ._models import (
    Batch,
    N,
    b,
    beta,
    center_only,
    eps,
    g,
    gamma,
    inference,
    loss_gradient,
    rms,
    running_var,
    training,
    u,
    x,
)
from ._proof import Claim, Proof, Step
from ._registry import CLAIMS, register

__all__ = ["CLAIMS", "prove", "prove_all"]

#: Display names: the outputs y, the normalized values and the Jacobian.
y = IndexedBase("y", real=True)
xhat = IndexedBase(r"\hat{x}", real=True)
J = IndexedBase("J", real=True)
L = Symbol("L", real=True)
#: A shift, a positive scale, a learning rate, a step count and the outside step.
c = Symbol("c", real=True)
a = Symbol("a", positive=True)
eta = Symbol("eta", positive=True)
t = Symbol("t", integer=True, nonnegative=True)
delta_b = Symbol(r"\Delta b", real=True)
#: A second summation index (the first ones are reserved by the models).
p = Symbol("p", integer=True)
#: Weights and inputs of the layer x = U w feeding the normalization.
w = IndexedBase("w", real=True)
U = IndexedBase("U", real=True)
#: Input width of x = U w at concrete N, and the largest N for the w-level
#: check: the exact expansion grows fast with both (N = 4 takes ~10 s).
WEIGHT_DIM = 2
WEIGHT_N_MAX = 3

MIN_N_MAX = 2


def _biased(batch: Batch):
    """Return the inputs ``x_t = u_t + b`` (section 2's bias)."""
    return lambda k: batch.item(u, k) + b


def _sum(batch: Batch, term, index=p):
    return batch.total(term, index)


def _item(batch: Batch, base, k):
    return batch.item(base, k)


def _ranges(batch: Batch):
    return dict(batch.ranges) if batch.symbolic else {}


def _definitions(model_name: str) -> tuple[Step, ...]:
    """Algorithm 1, written once for the report (symbolic N)."""
    from ._models import SymbolicBatch, i

    batch = SymbolicBatch()
    model = training(batch)
    mu_s, var_s = Symbol(r"\mu", real=True), Symbol(r"\sigma^2", nonnegative=True)
    steps = [
        Step("Batch mean (Algorithm 1)", Eq(mu_s, model.mu, evaluate=False)),
        Step("Biased batch variance (Algorithm 1)", Eq(var_s, model.var, evaluate=False)),
        Step(
            "Normalize, scale and shift",
            Eq(y[i], gamma * (x[i] - mu_s) / sympy.sqrt(var_s + eps) + beta, evaluate=False),
        ),
    ]
    if model_name == "center-only":
        steps[2] = Step(
            "Center only (section 2's normalization)",
            Eq(y[i], gamma * (x[i] - mu_s) + beta, evaluate=False),
        )
    if model_name == "inference":
        steps = [
            Step(
                "Inference transform with fixed running statistics (section 3.1)",
                Eq(
                    y[i],
                    gamma * (x[i] - Symbol("mu_R", real=True)) / sympy.sqrt(running_var + eps)
                    + beta,
                    evaluate=False,
                ),
            )
        ]
    if model_name == "rms":
        steps = [
            Step(
                "RMS normalization: no centering (the negative control)",
                Eq(
                    y[i],
                    gamma * x[i] / sympy.sqrt(rms(batch).scale.args[0]) + beta,
                    evaluate=False,
                ),
            )
        ]
    return tuple(steps) + (Step("Section 2's bias before the normalization", Eq(x[i], u[i] + b)),)


# --------------------------------------------------------------------------- #
# the claims, one builder each: build(batch, indices) -> items
# --------------------------------------------------------------------------- #


def _bias_cancels(model_fn):
    def build(batch: Batch, idx: Mapping) -> list:
        model = model_fn(batch, _biased(batch))
        i = idx["i"]
        return [Identity(Derivative(y[i], b), sympy.diff(model.y(i), b), 0, _ranges(batch))]

    return build


def _bias_survives_eval(batch: Batch, idx: Mapping) -> list:
    model = inference(batch, _biased(batch))
    i = idx["i"]
    slope = gamma / sympy.sqrt(running_var + eps)
    return [
        Identity(Derivative(y[i], b), sympy.diff(model.y(i), b), slope, _ranges(batch)),
        Nonzero(Derivative(y[i], b), slope),
    ]


def _loss_grad_bias_zero(batch: Batch, idx: Mapping) -> list:
    biased = training(batch, _biased(batch))
    plain = training(batch)
    dl_db = loss_gradient(biased, b)
    sum_dl_dx = _sum(batch, lambda k: loss_gradient(plain, _item(batch, x, k)))
    ranges = _ranges(batch)
    return [
        Identity(Derivative(L, b), dl_db, 0, ranges),
        Identity(sympy.Sum(Derivative(L, x[p]), (p, 1, N)), sum_dl_dx, 0, ranges),
    ]


def _backward_closed_form(batch: Batch, idx: Mapping) -> list:
    model = training(batch)
    j = idx["j"]
    n = batch.size
    gk = lambda k: _item(batch, g, k)  # noqa: E731
    mean_g = _sum(batch, gk) / n
    mean_gxhat = _sum(batch, lambda k: gk(k) * model.xhat(k)) / n
    closed = gamma / model.scale * (gk(j) - mean_g - model.xhat(j) * mean_gxhat)
    ranges = _ranges(batch)
    return [
        Identity(Derivative(L, x[j]), loss_gradient(model, _item(batch, x, j)), closed, ranges),
        Identity(
            Derivative(L, gamma),
            loss_gradient(model, gamma),
            _sum(batch, lambda k: gk(k) * model.xhat(k)),
            ranges,
        ),
        Identity(Derivative(L, beta), loss_gradient(model, beta), _sum(batch, gk), ranges),
    ]


def _jacobian_form(batch: Batch, idx: Mapping) -> list:
    model = training(batch)
    model0 = training(batch, eps=sympy.S.Zero)
    i, j = idx["i"], idx["j"]
    n = batch.size

    cache: dict = {}

    def jac(mod, r, k):
        key = (mod.name, mod.scale, r, k)
        if key not in cache:
            cache[key] = sympy.diff(mod.xhat(r), _item(batch, x, k))
        return cache[key]

    delta = KroneckerDelta(i, j)
    closed = (delta - sympy.S.One / n - model.xhat(i) * model.xhat(j) / n) / model.scale
    ranges = _ranges(batch)
    return [
        Identity(J[i, j], jac(model, i, j), closed, ranges),
        Identity(J[i, j] - J[j, i], jac(model, i, j) - jac(model, j, i), 0, ranges),
        Identity(sympy.Sum(J[i, p], (p, 1, N)), _sum(batch, lambda k: jac(model, i, k)), 0, ranges),
        Identity(
            sympy.Sum(J[i, p] * xhat[p], (p, 1, N)).subs(eps, 0),
            _sum(batch, lambda k: jac(model0, i, k) * model0.xhat(k)),
            0,
            ranges,
        ),
        Nonzero(
            sympy.Sum(J[i, p] * xhat[p], (p, 1, N)),
            _sum(batch, lambda k: jac(model, i, k) * model.xhat(k)),
        ),
    ]


def _shift_invariance(batch: Batch, idx: Mapping) -> list:
    i = idx["i"]
    shifted = training(batch, lambda k: _item(batch, x, k) + c)
    plain = training(batch)
    return [Identity(Symbol("y_i(x + c)", real=True), shifted.y(i), plain.y(i), _ranges(batch))]


def _scale_invariance(batch: Batch, idx: Mapping) -> list:
    i = idx["i"]
    scaled0 = training(batch, lambda k: a * _item(batch, x, k), eps=sympy.S.Zero)
    plain0 = training(batch, eps=sympy.S.Zero)
    scaled = training(batch, lambda k: a * _item(batch, x, k))
    plain = training(batch)
    label = Symbol(r"y_i(a x) - y_i(x)", real=True)
    return [
        Identity(label.subs(eps, 0), scaled0.y(i) - plain0.y(i), 0, _ranges(batch)),
        Nonzero(label, scaled.y(i) - plain.y(i), {a: Rational(2), eps: Rational(1, 2)}),
    ]


def _outside_drift(model_fn):
    def build(batch: Batch, idx: Mapping) -> list:
        i = idx["i"]
        model = model_fn(batch, _biased(batch))
        # The outside step: differentiate with the statistics frozen as symbols.
        center, scale = Symbol("M", real=True), Symbol("S", positive=True)
        frozen = lambda k: gamma * (_item(batch, u, k) + b - center) / scale + beta  # noqa: E731
        outside = _sum(batch, lambda k: _item(batch, g, k) * sympy.diff(frozen(k), b))
        outside = outside.xreplace({center: model.center, scale: model.scale})
        step = -eta * outside
        after = model_fn(batch, lambda k: _item(batch, u, k) + b + t * delta_b)
        ranges = _ranges(batch)
        return [
            Nonzero(delta_b, step),
            Identity(Symbol(r"y_i(b + t \Delta b)", real=True), after.y(i), model.y(i), ranges),
            Identity(
                Symbol(r"s(b + t \Delta b)", positive=True), after.scale, model.scale, ranges
            ),
            Identity(
                Symbol(r"\mu(b + t \Delta b)", real=True),
                after.center,
                model.center + t * delta_b,
                ranges,
            ),
            Identity(Derivative(L, b), loss_gradient(model, b), 0, ranges),
        ]

    return build


def _weight_grad_orthogonal(batch: Batch, idx: Mapping) -> list:
    model = training(batch, eps=sympy.S.Zero)
    inner_x = _sum(batch, lambda k: _item(batch, x, k) * loss_gradient(model, _item(batch, x, k)))
    items = [
        Identity(
            sympy.Sum(x[p] * Derivative(L, x[p]), (p, 1, N)), inner_x, 0, _ranges(batch)
        )
    ]
    if batch.symbolic or batch.size > WEIGHT_N_MAX:
        return items
    weights = [_item(batch, w, d) for d in range(1, WEIGHT_DIM + 1)]

    def inputs(k):
        return sympy.Add(*(wd * Symbol(f"U_{k}{d}", real=True) for d, wd in enumerate(weights, 1)))

    layer = training(batch, inputs, eps=sympy.S.Zero)
    grads = [loss_gradient(layer, wd) for wd in weights]
    inner = sympy.Add(*(wd * gd for wd, gd in zip(weights, grads, strict=True)))
    # With G = grad_w L: ||w - eta G||^2 - ||w||^2 - eta^2 ||G||^2 = -2 eta <w, G>.
    G = [Symbol(f"G_{d}", real=True) for d in range(1, WEIGHT_DIM + 1)]
    stepped = sympy.Add(*((wd - eta * gd) ** 2 for wd, gd in zip(weights, G, strict=True)))
    norm2 = sympy.Add(*(wd**2 for wd in weights))
    grad2 = sympy.Add(*(gd**2 for gd in G))
    return items + [
        Identity(Symbol(r"\langle w, \nabla_w L \rangle", real=True), inner, 0),
        Identity(
            Symbol(r"\|w - \eta G\|^2 - \|w\|^2 - \eta^2 \|G\|^2", real=True),
            stepped - norm2 - eta**2 * grad2,
            -2 * eta * sympy.Add(*(wd * gd for wd, gd in zip(weights, G, strict=True))),
        ),
    ]


# --------------------------------------------------------------------------- #
# the registry
# --------------------------------------------------------------------------- #


def _claim(id, statement, latex, assumptions, build, *, free=(), expected="proved",
           symbolic=True, model="training", section="", symbolic_n_expected=None):
    def prove_claim(n_max: int) -> Proof:
        return establish(
            id, build, free=free, n_max=n_max, symbolic=symbolic,
            preamble=_definitions(model), symmetric=True,
        )

    return Claim(
        id=id,
        statement=statement,
        latex=latex,
        assumptions=tuple(assumptions),
        expected=expected,
        prove=prove_claim,
        symbolic_n_expected=symbolic if symbolic_n_expected is None else symbolic_n_expected,
        section=section,
    )


_TRAINING = ("N >= 2", "eps >= 0", "values not all equal when eps = 0")

for _c in (
    _claim(
        "bias-cancels-train",
        "In training mode a bias added before batch normalization has no effect: "
        "dy_i/db = 0 for every i, for a symbolic batch size N and any eps >= 0.",
        r"\frac{\partial y_i}{\partial b} = 0",
        _TRAINING,
        _bias_cancels(training),
        free=("i",),
        section="Ioffe & Szegedy (2015), section 3: the bias 'can be ignored'",
    ),
    _claim(
        "bias-cancels-center-only",
        "With centering alone (y_i = gamma (x_i - mean(x)) + beta) the bias cancels "
        "too: dy_i/db = 0.",
        r"\frac{\partial}{\partial b}\,\gamma\,(x_i - \mu) = 0",
        ("N >= 1",),
        _bias_cancels(center_only),
        free=("i",),
        model="center-only",
        section="Section 2: xhat = x - E[x] with x = u + b",
    ),
    _claim(
        "bias-survives-eval",
        "With fixed running statistics (inference mode) the bias does not cancel: "
        "dy_i/db = gamma / sqrt(running_var + eps), which is not 0 for gamma != 0.",
        r"\frac{\partial y_i}{\partial b} = \frac{\gamma}{\sqrt{\sigma_R^2 + \epsilon}}"
        r" \neq 0",
        ("running_var + eps > 0", "gamma != 0"),
        _bias_survives_eval,
        free=("i",),
        model="inference",
        section="Section 3.1: the inference transform uses population statistics",
    ),
    _claim(
        "loss-grad-bias-zero",
        "For any loss L of the outputs, in training mode dL/db = sum_i dL/dx_i = 0.",
        r"\frac{\partial L}{\partial b} = \sum_i \frac{\partial L}{\partial x_i} = 0",
        _TRAINING + ("L any differentiable function of y_1..y_N",),
        _loss_grad_bias_zero,
        section="Section 3: the bias's role is subsumed by beta",
    ),
    _claim(
        "backward-closed-form",
        "The derived gradient equals the closed form dL/dx_j = (gamma/s)(g_j - mean(g)"
        " - xhat_j mean(g xhat)); dL/dgamma = sum g xhat; dL/dbeta = sum g.",
        r"\frac{\partial L}{\partial x_j} = \frac{\gamma}{s}\Big(g_j - \bar g - "
        r"\hat x_j\,\overline{g \hat x}\Big)",
        _TRAINING + ("g_i = dL/dy_i arbitrary", "s = sqrt(var + eps)"),
        _backward_closed_form,
        free=("j",),
        section="Section 3, the chain rule below Algorithm 1",
    ),
    _claim(
        "jacobian-form",
        "dxhat_i/dx_j = (1/s)(delta_ij - 1/N - xhat_i xhat_j / N); the Jacobian is "
        "symmetric, J 1 = 0, and J xhat = 0 holds at eps = 0 only.",
        r"\frac{\partial \hat x_i}{\partial x_j} = \frac{1}{s}\Big(\delta_{ij} - "
        r"\frac{1}{N} - \frac{\hat x_i \hat x_j}{N}\Big)",
        _TRAINING,
        _jacobian_form,
        free=("i", "j"),
        section="Section 3 (backward pass)",
        # the identities hold for symbolic N; "J xhat != 0 for eps > 0" is a
        # nonzero the sum rules cannot reduce for symbolic N, shown by
        # witnesses at every concrete N and index pair only
        symbolic_n_expected=False,
    ),
    _claim(
        "shift-invariance",
        "Batch normalization ignores a common shift: BN(x + c) = BN(x) for any eps.",
        r"\mathrm{BN}(x + c\,\mathbf{1}) = \mathrm{BN}(x)",
        _TRAINING,
        _shift_invariance,
        free=("i",),
        section="Section 2 and 3: why the bias cancels",
    ),
    _claim(
        "scale-invariance",
        "BN(a x) = BN(x) for a > 0 at eps = 0; for eps > 0 the residual is not zero.",
        r"\mathrm{BN}_{\epsilon=0}(a x) = \mathrm{BN}_{\epsilon=0}(x),\ a > 0",
        ("N >= 2", "a > 0", "values not all equal"),
        _scale_invariance,
        free=("i",),
        section="Section 3.3: BN(Wu) = BN((aW)u)",
    ),
    _claim(
        "outside-gradient-drift",
        "A step that treats E[x] (and the scale) as constants changes b by a nonzero "
        "Delta b, leaves every output unchanged, and so repeats: b_t = b_0 + t Delta b "
        "with the loss fixed; the gradient through the statistics is 0.",
        r"b_t = b_0 + t\,\Delta b,\quad y(b_t) = y(b_0)",
        _TRAINING + ("eta > 0", "g_i = dL/dy_i depends on the outputs only"),
        _outside_drift(training),
        free=("i",),
        section="Section 2: 'b will grow indefinitely while the loss remains fixed'",
    ),
    _claim(
        "outside-gradient-drift-center-only",
        "The same drift for section 2's own example, centering without scaling.",
        r"\hat x = x - E[x]:\ b_t = b_0 + t\,\Delta b,\ y(b_t) = y(b_0)",
        ("N >= 1", "eta > 0", "g_i = dL/dy_i depends on the outputs only"),
        _outside_drift(center_only),
        free=("i",),
        model="center-only",
        section="Section 2, the bias example",
    ),
    _claim(
        "weight-grad-orthogonal",
        "For x = U w feeding batch normalization at eps = 0, <w, grad_w L> = 0, hence "
        "||w - eta grad||^2 = ||w||^2 + eta^2 ||grad||^2 under gradient descent.",
        r"\langle w, \nabla_w L\rangle = 0,\quad \|w_{t+1}\|^2 = \|w_t\|^2 + "
        r"\eta^2 \|\nabla_w L\|^2",
        ("eps = 0", "values not all equal",
         "symbolic N and N = 2..n_max: <x, grad_x L> = 0, which equals <w, grad_w L> "
         f"by the chain rule; x = U w with w in R^{WEIGHT_DIM} expanded for "
         f"N <= {WEIGHT_N_MAX}"),
        _weight_grad_orthogonal,
        section="Section 3.3; Salimans & Kingma (2016); van Laarhoven (2017)",
    ),
    _claim(
        "rms-bias-cancels",
        "Negative control: under RMS normalization (no centering) the bias would "
        "cancel, dy_i/db = 0. It does not; the engine must find a counterexample.",
        r"\frac{\partial}{\partial b}\,\frac{\gamma x_i}{\sqrt{\overline{x^2} + "
        r"\epsilon}} = 0",
        ("N >= 2", "eps >= 0"),
        _bias_cancels(rms),
        free=("i",),
        expected="refuted",
        model="rms",
        section="Control: without mean subtraction nothing absorbs b",
    ),
):
    register(_c)



def _check_n_max(n_max: object) -> int:
    if isinstance(n_max, bool) or not isinstance(n_max, numbers.Integral):
        raise TypeError(f"n_max must be an int >= {MIN_N_MAX}, got {n_max!r}")
    if n_max < MIN_N_MAX:
        raise ValueError(
            f"n_max={n_max} is too small: concrete checks run for N = 2..n_max, "
            f"so n_max must be >= {MIN_N_MAX}"
        )
    return int(n_max)


def prove(claim_id: str, n_max: int = 8) -> Proof:
    """Prove one claim of the registry.

    Parameters
    ----------
    claim_id : str
        An id of :data:`CLAIMS`.
    n_max : int, default 8
        Concrete checks run for N = 2..n_max.

    Returns
    -------
    Proof

    Raises
    ------
    KeyError
        For an unknown id (the message lists the valid ones).
    TypeError, ValueError
        For an ``n_max`` that is not an int >= 2.
    """
    n_max = _check_n_max(n_max)
    if claim_id not in CLAIMS:
        raise KeyError(f"unknown claim {claim_id!r}; valid ids: {', '.join(CLAIMS)}")
    return CLAIMS[claim_id].prove(n_max)


def prove_all(
    ids: Sequence[str] | None = None,
    n_max: int = 8,
    progress=None,
    *,
    workers: int = 1,
    time_limit: float | None = None,
    modules: Sequence[str] = (),
) -> list[Proof]:
    """Prove several claims (all by default), in registry order.

    Parameters
    ----------
    ids : sequence of str or None
        Claim ids; ``None`` means every claim.
    n_max : int, default 8
        Concrete checks run for N = 2..n_max.
    progress : callable or None
        Called as ``progress(claim_id, done, total)`` after each claim.
    workers : int, default 1
        Processes to prove claims in (SymPy uses one core each).
    time_limit : float or None
        Seconds per claim; a claim still running then is stopped (its
        worker process is terminated) and reported ``unproved`` with the
        reason ``time limit``.
    modules : sequence of str
        User claim files that worker processes load first (claims that the
        calling process registered by other means are not seen by workers).

    Returns
    -------
    list of Proof
        In the order of ``ids``.
    """
    n_max = _check_n_max(n_max)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if time_limit is not None and not (isinstance(time_limit, (int, float))
                                       and not isinstance(time_limit, bool)
                                       and time_limit > 0):
        raise ValueError(f"time_limit must be a number of seconds > 0 or None, got "
                         f"{time_limit!r}")
    ids = list(CLAIMS) if ids is None else list(ids)
    unknown = [i for i in ids if i not in CLAIMS]
    if unknown:
        raise KeyError(f"unknown claim(s) {', '.join(unknown)}; valid ids: {', '.join(CLAIMS)}")
    from ._runner import run_claims

    return run_claims(ids, n_max, workers=workers, time_limit=time_limit, modules=modules,
                      progress=progress)
