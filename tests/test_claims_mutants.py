"""Fast literal tests of the catalogue's builders and entry points (``_claims``).

``tests/test_claims.py`` proves every claim end to end (seconds each); here
each builder is called once at a batch of two and its identities are
checked at one exact point, against values worked out by hand from
Algorithm 1 of Ioffe & Szegedy (2015):

    x = (1, 4): mu = 5/2, var = 9/4; with eps = 1/2, s = sqrt(11)/2,
    xhat = (-3, 3) / sqrt(11); g = (2, -1), gamma = 3, beta = 7.

The proofs themselves are replaced by a recorder where only the wiring of a
claim is under test.
"""

import pytest
import sympy
from sympy import Derivative, Eq, Rational, Sum, Symbol, sqrt

from bnproof.symbolic import _claims as cl
from bnproof.symbolic import _registry, _runner
from bnproof.symbolic._engine import Identity, Nonzero
from bnproof.symbolic._models import (
    ConcreteBatch,
    N,
    SymbolicBatch,
    b,
    beta,
    center_only,
    eps,
    gamma,
    i,
    j,
    k,
    m,
    rms,
    running_mean,
    running_var,
    training,
    u,
    x,
)
from bnproof.symbolic._proof import Claim, Step

BATCH = ConcreteBatch(2)
SYMBOLIC = SymbolicBatch()
RANGES = {i: (1, N), j: (1, N)}


def _s(name, **assumptions):
    return Symbol(name, real=True, **assumptions)


x1, x2, u1, u2, g1, g2 = (_s(n) for n in ("x_1", "x_2", "u_1", "u_2", "g_1", "g_2"))
#: u + b = x at this point, so the biased and the plain models agree.
POINT = {x1: 1, x2: 4, u1: 0, u2: 3, b: 1, g1: 2, g2: -1, gamma: 3, beta: 7,
         eps: Rational(1, 2), running_mean: 2, running_var: 3,
         cl.c: 5, cl.a: 3, cl.eta: Rational(1, 10), cl.t: 2, cl.delta_b: 6}
S11 = sqrt(11)


def _at(expr, point=POINT):
    """The value of ``expr`` at ``point``, to 30 digits."""
    return sympy.N(sympy.sympify(expr).subs(point), 30)


def _close(expr, value, point=POINT):
    return abs(_at(expr, point) - _at(value, point)) < 1e-25


def _holds(item, point=POINT):
    assert isinstance(item, Identity)
    return _close(item.lhs, item.rhs, point)


# ---- small helpers and the definitions --------------------------------------------------- #


def test_helpers():
    assert cl._biased(BATCH)(2) == u2 + b
    assert cl._biased(SYMBOLIC)(k) == u[k] + b
    assert cl._sum(BATCH, lambda q: q) == 3
    assert cl._sum(SYMBOLIC, lambda q: x[q]) == Sum(x[cl.p], (cl.p, 1, N))
    assert cl._sum(SYMBOLIC, lambda q: x[q], m) == Sum(x[m], (m, 1, N))
    assert cl._item(BATCH, x, 1) == x1
    assert cl._ranges(SYMBOLIC) == RANGES
    assert cl._ranges(BATCH) == {}


MU, VAR = Symbol(r"\mu", real=True), Symbol(r"\sigma^2", nonnegative=True)
BIAS = Step("Section 2's bias before the normalization", Eq(x[i], u[i] + b))
MEAN = Sum(x[m], (m, 1, N)) / N


def test_definitions_of_training():
    steps = cl._definitions("training")
    assert steps == (
        Step("Batch mean (Algorithm 1)", Eq(MU, MEAN, evaluate=False)),
        Step("Biased batch variance (Algorithm 1)",
             Eq(VAR, Sum((x[k] - MEAN) ** 2, (k, 1, N)) / N, evaluate=False)),
        Step("Normalize, scale and shift",
             Eq(cl.y[i], gamma * (x[i] - MU) / sqrt(VAR + eps) + beta,
                evaluate=False)),
        BIAS,
    )


def test_definitions_of_center_only():
    steps = cl._definitions("center-only")
    assert len(steps) == 4
    assert steps[0].title == "Batch mean (Algorithm 1)"
    assert steps[2] == Step("Center only (section 2's normalization)",
                            Eq(cl.y[i], gamma * (x[i] - MU) + beta, evaluate=False))
    assert steps[3] == BIAS


def test_definitions_of_inference_and_rms():
    assert cl._definitions("inference") == (
        Step("Inference transform with fixed running statistics (section 3.1)",
             Eq(cl.y[i], gamma * (x[i] - Symbol("mu_R", real=True)) / sqrt(running_var + eps)
                + beta, evaluate=False)),
        BIAS,
    )
    assert cl._definitions("rms") == (
        Step("RMS normalization: no centering (the negative control)",
             Eq(cl.y[i], gamma * x[i] / sqrt(Sum(x[k] ** 2, (k, 1, N)) / N + eps) + beta,
                evaluate=False)),
        BIAS,
    )


# ---- the builders at a batch of two ------------------------------------------------------ #


@pytest.mark.parametrize("model_fn", [training, center_only])
def test_bias_cancels(model_fn):
    (item,) = cl._bias_cancels(model_fn)(BATCH, {"i": 1})
    assert (item.label, item.rhs, item.ranges) == (Derivative(cl.y[1], b), 0, {})
    assert _holds(item)
    (item,) = cl._bias_cancels(model_fn)(SYMBOLIC, {"i": i})
    assert (item.label, item.rhs, item.ranges) == (Derivative(cl.y[i], b), 0, RANGES)
    # derived through the bias (SymPy cancels it at once only at a concrete N)
    assert item.lhs != 0 and item.lhs.has(sympy.Sum)


def test_bias_does_not_cancel_under_rms():
    (item,) = cl._bias_cancels(rms)(BATCH, {"i": 1})
    # x = (1, 4), mean square 17/2, r = sqrt(17/2 + 1/2) = 3:
    # d/db gamma x_1 / r = gamma (1/r - x_1 (x_1 + x_2) / (2 r^3)) = 3 (1/3 - 5/54) = 13/18
    assert _close(item.lhs, Rational(13, 18))
    assert item.rhs == 0


def test_bias_survives_eval():
    slope = gamma / sqrt(running_var + eps)
    first, second = cl._bias_survives_eval(BATCH, {"i": 2})
    assert (first.label, first.rhs, first.ranges) == (Derivative(cl.y[2], b), slope, {})
    assert sympy.simplify(first.lhs - slope) == 0
    assert first.lhs.has(running_var)
    assert isinstance(second, Nonzero)
    assert (second.label, second.expr) == (Derivative(cl.y[2], b), slope)
    first, _ = cl._bias_survives_eval(SYMBOLIC, {"i": i})
    assert first.ranges == RANGES


def test_loss_grad_bias_zero():
    first, second = cl._loss_grad_bias_zero(BATCH, {})
    assert (first.label, first.rhs, first.ranges) == (Derivative(cl.L, b), 0, {})
    assert (second.label, second.rhs) == (Sum(Derivative(cl.L, x[cl.p]), (cl.p, 1, N)), 0)
    assert _holds(first) and _holds(second)
    assert second.lhs.has(x1) and second.lhs.has(g2)
    sym = cl._loss_grad_bias_zero(SYMBOLIC, {})
    assert [it.ranges for it in sym] == [RANGES, RANGES]
    assert sym[0].lhs != 0 and sym[1].lhs != 0  # derived, not trivially 0
    assert sym[0].lhs.has(u) and not sym[1].lhs.has(u)  # dL/db through x = u + b


def test_backward_closed_form():
    dx, dgamma, dbeta = cl._backward_closed_form(BATCH, {"j": 2})
    assert (dx.label, dgamma.label, dbeta.label) == (
        Derivative(cl.L, x[2]), Derivative(cl.L, gamma), Derivative(cl.L, beta))
    # (gamma/s)(g_2 - mean(g) - xhat_2 mean(g xhat)) = -6 gamma / (11 sqrt(11))
    assert _close(dx.rhs, -18 / (11 * S11))
    assert _close(dx.lhs, -18 / (11 * S11))
    # sum g xhat = (2 (-3) + (-1) 3) / sqrt(11) = -9 / sqrt(11); sum g = 1
    assert _close(dgamma.rhs, -9 / S11) and _close(dgamma.lhs, -9 / S11)
    assert dbeta.rhs == g1 + g2 and _close(dbeta.lhs, 1)
    assert dx.ranges == {}
    sym = cl._backward_closed_form(SYMBOLIC, {"j": j})
    assert [it.ranges for it in sym] == [RANGES, RANGES, RANGES]


def test_jacobian_form():
    items = cl._jacobian_form(BATCH, {"i": 1, "j": 2})
    assert len(items) == 5
    closed, sym, ones, xhat_eps0, nonzero = items
    J, xh, p = cl.J, cl.xhat, cl.p
    assert closed.label == J[1, 2]
    # (delta_12 - 1/2 - xhat_1 xhat_2 / 2) / s = (-1/2 + 9/22) 2 / sqrt(11)
    assert _close(closed.rhs, -2 / (11 * S11)) and _close(closed.lhs, -2 / (11 * S11))
    assert sym.label == J[1, 2] - J[2, 1] and sym.rhs == 0 and _holds(sym)
    assert sym.lhs != 0
    assert ones.label == Sum(J[1, p], (p, 1, N)) and ones.rhs == 0 and _holds(ones)
    assert ones.lhs != 0
    assert xhat_eps0.label == Sum(J[1, p] * xh[p], (p, 1, N)) and xhat_eps0.rhs == 0
    assert not xhat_eps0.lhs.has(eps) and xhat_eps0.lhs != 0 and _holds(xhat_eps0)
    assert isinstance(nonzero, Nonzero) and nonzero.label == Sum(J[1, p] * xh[p], (p, 1, N))
    # J xhat = xhat (1 - var / (var + eps)) / s: xhat_1 (2/11) (2 / sqrt(11)) = -12/121
    assert _close(nonzero.expr, Rational(-12, 121))
    assert all(it.ranges == {} for it in items[:4])
    sym = cl._jacobian_form(SYMBOLIC, {"i": i, "j": j})
    assert [it.ranges for it in sym[:4]] == [RANGES] * 4
    # J xhat = 0 at eps = 0 at N = 3 too (at N = 2 every xhat is -1 or 1)
    three = cl._jacobian_form(ConcreteBatch(3), {"i": 1, "j": 2})[3]
    assert three.lhs != 0 and _holds(three, {**POINT, _s("x_3"): 9})
    # the diagonal: (1 - 1/2 - 9/22) 2 / sqrt(11) = 2 / (11 sqrt(11))
    diagonal = cl._jacobian_form(BATCH, {"i": 2, "j": 2})[0]
    assert _close(diagonal.rhs, 2 / (11 * S11)) and _close(diagonal.lhs, 2 / (11 * S11))


def test_shift_invariance():
    (item,) = cl._shift_invariance(BATCH, {"i": 1})
    assert item.label == _s("y_i(x + c)")
    assert _close(item.rhs, 3 * (-3 / S11) + 7) and _holds(item)
    assert item.ranges == {}
    (sym,) = cl._shift_invariance(SYMBOLIC, {"i": i})
    assert sym.ranges == RANGES
    assert sym.lhs.has(cl.c) and not sym.rhs.has(cl.c)  # x + c on the left only
    assert sym.lhs.has(Sum(x[m] + cl.c, (m, 1, N)))


def test_scale_invariance():
    zero, nonzero = cl._scale_invariance(BATCH, {"i": 1})
    label = _s("y_i(a x) - y_i(x)")
    assert (zero.label, zero.rhs, zero.ranges) == (label, 0, {})
    assert zero.lhs.has(cl.a) and not zero.lhs.has(eps) and _holds(zero)
    assert (nonzero.label, nonzero.where) == (label, {cl.a: 2, eps: Rational(1, 2)})
    # a = 2: xhat_1(a x) = -3 / sqrt(9 + 1/2), xhat_1(x) = -3 / sqrt(11 / 4 * 4)
    at = {**POINT, cl.a: 2}
    assert _close(nonzero.expr, 3 * (-3 / sqrt(Rational(19, 2)) + 3 / S11), at)
    assert cl._scale_invariance(SYMBOLIC, {"i": i})[0].ranges == RANGES


@pytest.mark.parametrize("model_fn, scale", [(training, S11 / 2), (center_only, 1)])
def test_outside_drift(model_fn, scale):
    items = cl._outside_drift(model_fn)(BATCH, {"i": 1})
    step, outputs, scales, means, grad = items
    assert isinstance(step, Nonzero) and step.label == cl.delta_b
    # -eta sum_k g_k gamma / s = -(1/10) (2 - 1) 3 / s
    assert _close(step.expr, -Rational(3, 10) / scale)
    # the model is the biased one, x = u + b (at POINT they agree, so look at the symbols)
    assert not step.expr.has(x1) and (scale == 1 or step.expr.has(u1))
    assert outputs.rhs.has(u1) and not outputs.rhs.has(x1)
    assert not scales.rhs.has(x1) and (scale == 1 or scales.rhs.has(u1))
    td = cl.t * cl.delta_b
    assert outputs.label == _s(r"y_i(b + t \Delta b)")
    assert _holds(outputs)
    assert scales.label == Symbol(r"s(b + t \Delta b)", positive=True) and _holds(scales)
    assert means.label == _s(r"\mu(b + t \Delta b)")
    assert _close(means.rhs, Rational(5, 2) + 12) and _holds(means)  # mu + t delta_b
    assert means.rhs.has(td) or means.rhs.has(cl.t)
    assert means.rhs.has(u1) and means.rhs.has(b)
    assert (grad.label, grad.rhs) == (Derivative(cl.L, b), 0)
    assert _holds(grad)
    assert all(it.ranges == {} for it in items[1:])
    sym = cl._outside_drift(model_fn)(SYMBOLIC, {"i": i})
    assert all(it.ranges == RANGES for it in sym[1:])
    assert sym[1].lhs.has(cl.delta_b) and not sym[1].rhs.has(cl.delta_b)
    assert sym[4].lhs != 0  # the gradient is derived through the statistics


def test_weight_grad_orthogonal():
    assert len(cl._weight_grad_orthogonal(SYMBOLIC, {})) == 1
    assert len(cl._weight_grad_orthogonal(ConcreteBatch(4), {})) == 1  # beyond N = 3
    assert len(cl._weight_grad_orthogonal(ConcreteBatch(3), {})) == 3
    first, inner, norms = cl._weight_grad_orthogonal(BATCH, {})
    p = cl.p
    assert first.label == Sum(x[p] * Derivative(cl.L, x[p]), (p, 1, N)) and first.rhs == 0
    assert first.lhs != 0 and not first.lhs.has(eps) and _holds(first)
    w1, w2 = _s("w_1"), _s("w_2")
    G1, G2 = _s("G_1"), _s("G_2")
    assert inner.label == _s(r"\langle w, \nabla_w L \rangle") and inner.rhs == 0
    point = {**POINT, w1: 1, w2: 2, _s("U_11"): 1, _s("U_12"): 2, _s("U_21"): 3,
             _s("U_22"): -1}  # x = U w = (5, 1)
    assert inner.lhs.has(_s("U_22")) and inner.lhs != 0 and _holds(inner, point)
    # x_k = sum_d U_kd w_d: no U is ever divided by
    assert not any(p.base == _s("U_11") and p.exp.is_negative
                   for p in inner.lhs.atoms(sympy.Pow))
    assert norms.label == _s(r"\|w - \eta G\|^2 - \|w\|^2 - \eta^2 \|G\|^2")
    assert norms.rhs == -2 * cl.eta * (w1 * G1 + w2 * G2)
    assert sympy.expand(norms.lhs - norms.rhs) == 0
    assert norms.lhs.has(G2)
    assert cl._weight_grad_orthogonal(SYMBOLIC, {})[0].ranges == RANGES


# ---- a claim's wiring, prove and prove_all ----------------------------------------------- #


def _recorder(monkeypatch):
    calls = []

    def establish(cid, build, **kwargs):
        calls.append((cid, build, kwargs))
        return "the proof"

    monkeypatch.setattr(cl, "establish", establish)
    return calls


def test_claim_passes_its_settings_to_establish(monkeypatch):
    calls = _recorder(monkeypatch)
    build = cl._shift_invariance
    claim = cl._claim("my-claim", "A statement.", "x = x", ["one", "two"], build, free=("i",),
                      expected="refuted", symbolic=False, model="rms", section="S 1")
    assert claim == Claim(id="my-claim", statement="A statement.", latex="x = x",
                          assumptions=("one", "two"), expected="refuted", prove=claim.prove,
                          symbolic_n_expected=False, section="S 1")
    assert claim.prove(5) == "the proof"
    assert calls == [("my-claim", build, {"free": ("i",), "n_max": 5, "symbolic": False,
                                          "preamble": cl._definitions("rms"),
                                          "symmetric": True})]


def test_claim_defaults(monkeypatch):
    calls = _recorder(monkeypatch)
    claim = cl._claim("c-d", "S.", "l", (), cl._shift_invariance)
    assert (claim.expected, claim.symbolic_n_expected, claim.section) == ("proved", True, "")
    claim.prove(3)
    assert calls[0][2] == {"free": (), "n_max": 3, "symbolic": True,
                           "preamble": cl._definitions("training"), "symmetric": True}
    kept = cl._claim("c-e", "S.", "l", (), cl._shift_invariance, symbolic=True,
                     symbolic_n_expected=False)
    assert kept.symbolic_n_expected is False


@pytest.mark.parametrize(
    "n_max, error, message",
    [
        (True, TypeError, "n_max must be an int >= 2, got True"),
        (2.0, TypeError, "n_max must be an int >= 2, got 2.0"),
        (1, ValueError, "n_max=1 is too small: concrete checks run for N = 2..n_max, so "
                        "n_max must be >= 2"),
    ],
)
def test_n_max_is_checked(n_max, error, message):
    with pytest.raises(error, match=message):
        cl._check_n_max(n_max)
    with pytest.raises(error, match=message):
        cl.prove("bias-cancels-train", n_max)
    with pytest.raises(error, match=message):
        cl.prove_all(["bias-cancels-train"], n_max)


def test_n_max_values():
    import numpy as np

    assert cl._check_n_max(2) == 2
    three = cl._check_n_max(np.int64(3))
    assert three == 3 and type(three) is int


@pytest.fixture
def fake_claim(monkeypatch):
    claim = Claim(id="zz-fake", statement="S.", latex="l", assumptions=(), expected="proved",
                  prove=lambda n_max: ("proved at", n_max))
    monkeypatch.setitem(_registry._REGISTRY, "zz-fake", claim)
    return claim


def test_prove_runs_the_registered_claim(fake_claim):
    assert cl.prove("zz-fake", 3) == ("proved at", 3)
    assert cl.prove("zz-fake") == ("proved at", 8)  # the default n_max
    with pytest.raises(KeyError, match=r"unknown claim 'nope'; valid ids: bias-cancels-train, "):
        cl.prove("nope")


def test_prove_all_checks_its_arguments_and_runs_the_claims(fake_claim, monkeypatch):
    calls = []

    def run_claims(ids, n_max, **kwargs):
        calls.append((ids, n_max, kwargs))
        return ["done"]

    monkeypatch.setattr(_runner, "run_claims", run_claims)
    progress = print
    assert cl.prove_all(["zz-fake"], 4, progress, workers=2, time_limit=1.5,
                        modules=("m.py",)) == ["done"]
    assert calls[-1] == (["zz-fake"], 4, {"workers": 2, "time_limit": 1.5,
                                         "modules": ("m.py",), "progress": progress})
    cl.prove_all(("zz-fake",), time_limit=0.5)
    assert calls[-1][2]["time_limit"] == 0.5
    cl.prove_all(("zz-fake",), time_limit=3)
    assert calls[-1] == (["zz-fake"], 8, {"workers": 1, "time_limit": 3, "modules": (),
                                         "progress": None})
    cl.prove_all()
    assert calls[-1][0] == list(_registry.CLAIMS)
    assert "zz-fake" in calls[-1][0] and "bias-cancels-train" in calls[-1][0]
    for bad in (0, True, 1.5, -1):
        with pytest.raises(ValueError, match=f"workers must be an int >= 1, got {bad!r}"):
            cl.prove_all(["zz-fake"], workers=bad)
    for bad in (0, -2.0, True, "5"):
        with pytest.raises(ValueError, match=r"time_limit must be a number of seconds > 0 "
                                             r"or None, got "):
            cl.prove_all(["zz-fake"], time_limit=bad)
    with pytest.raises(KeyError, match=r"unknown claim\(s\) a1, b2; valid ids: "
                                       r"bias-cancels-train, bias-cancels-center-only, "):
        cl.prove_all(["a1", "zz-fake", "b2"])
    assert len(calls) == 4  # none for the refused calls
