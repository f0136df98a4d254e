"""Fast literal tests of the Batch Renormalization builders (``_renorm``), without proving.

Values at one exact point of a batch of two, worked out by hand from
Algorithm 1 of Ioffe (2017): u = (0, 3), b = 1, so x = (1, 4), mu_B = 5/2,
var_B = 9/4; eps = 1/2 gives sigma_B = sqrt(11)/2. With the running mu = 1
and sigma = 2: r = sigma_B / sigma = sqrt(11)/4, d = (mu_B - mu)/sigma = 3/4.
"""

import pytest
import sympy
from sympy import Derivative, IndexedBase, Rational, Sum, Symbol, sqrt

from bnproof.symbolic import _renorm as rn
from bnproof.symbolic._engine import Identity, Nonzero
from bnproof.symbolic._indexsets import StopGradient, strip_stop_gradients
from bnproof.symbolic._models import ConcreteBatch, N, SymbolicBatch, b, beta, eps, gamma, i, j
from bnproof.symbolic._proof import Claim

BATCH = ConcreteBatch(2)
SYMBOLIC = SymbolicBatch()
RANGES = {i: (1, N), j: (1, N)}
u1, u2 = Symbol("u_1", real=True), Symbol("u_2", real=True)
POINT = {u1: 0, u2: 3, b: 1, eps: Rational(1, 2), rn.mu_run: 1, rn.sigma_run: 2,
         rn.r_max: 5, rn.d_max: 7, gamma: 3, beta: 11}
SLOPE = Symbol(r"\partial_b y_i\ (\mathrm{value})", real=True)
y = IndexedBase("y", real=True)


def _at(expr):
    """The value at the point (a stop-gradient passes its value)."""
    return sympy.N(strip_stop_gradients(sympy.sympify(expr)).subs(POINT), 30)


def _close(expr, value):
    return abs(_at(expr) - _at(value)) < 1e-25


def _corrections(expr):
    """The values of the arguments of the stop-gradients in ``expr``, at the point."""
    return sorted(_at(s.args[0]) for s in expr.atoms(StopGradient))


def test_renorm_output_corrections():
    out = rn.renorm_output(BATCH, 2)
    assert _corrections(out) == sorted([_at(Rational(3, 4)), _at(sqrt(11) / 4)])
    # y_2 = gamma ((4 - 5/2) / sigma_B * r + d) + beta = gamma (3/4 + 3/4) + beta
    assert _close(out, 3 * Rational(3, 2) + 11)
    assert _corrections(rn.renorm_output(BATCH, 2, r_clipped=True)) == sorted(
        [_at(Rational(3, 4)), _at(5)])
    clipped = rn.renorm_output(BATCH, 2, d_clipped=True)
    assert _corrections(clipped) == sorted([_at(7), _at(sqrt(11) / 4)])
    # gamma ((3/2) / (sqrt(11)/2) * sqrt(11)/4 + d_max) + beta = 3 (3/4 + 7) + 11
    assert _close(clipped, 3 * (Rational(3, 4) + 7) + 11)
    both = rn.renorm_output(BATCH, 1, r_clipped=True, d_clipped=True)
    # gamma ((1 - 5/2) / (sqrt(11)/2) * r_max + d_max) + beta
    assert _close(both, 3 * (-3 / sqrt(11) * 5 + 7) + 11)


def test_renorm_output_of_a_symbolic_batch():
    out = strip_stop_gradients(rn.renorm_output(SYMBOLIC, i))
    u = IndexedBase("u", real=True)
    assert out.has(u[i]) and out.has(Sum)


def test_gradient_ignores_b():
    (item,) = rn._gradient_ignores_b(BATCH, {"i": 1})
    assert (item.label, item.rhs, item.ranges) == (Derivative(y[1], b), 0, {})
    assert _close(item.lhs, 0)
    (item,) = rn._gradient_ignores_b(SYMBOLIC, {"i": i})
    assert (item.label, item.ranges) == (Derivative(y[i], b), RANGES)
    assert item.lhs != 0  # derived through the batch statistics


def test_value_moves_with_b():
    value, slope, nonzero = rn._value_moves_with_b(BATCH, {"i": 2})
    assert value.label == y[2]
    assert value.rhs == gamma * (u2 + b - rn.mu_run) / rn.sigma_run + beta
    assert not value.lhs.has(StopGradient)
    assert _close(value.lhs, 3 * Rational(3, 2) + 11) and value.ranges == {}
    assert (slope.label, slope.rhs, slope.ranges) == (SLOPE, gamma / rn.sigma_run, {})
    assert _close(slope.lhs, Rational(3, 2))
    assert isinstance(nonzero, Nonzero) and nonzero.label == SLOPE
    assert _close(nonzero.expr, Rational(3, 2))
    sym = rn._value_moves_with_b(SYMBOLIC, {"i": i})
    assert [it.ranges for it in sym[:2]] == [RANGES, RANGES]


def test_clipping_case_by_case():
    items = rn._clipping(BATCH, {"i": 2})
    kinds = [(type(it).__name__, it.label) for it in items]
    grad = Derivative(y[2], b)
    assert kinds == [("Identity", grad), ("Identity", SLOPE), ("Nonzero", SLOPE),
                     ("Identity", grad), ("Identity", SLOPE),
                     ("Identity", grad), ("Identity", SLOPE)]
    identities = [it for it in items if isinstance(it, Identity)]
    assert [it.rhs for it in identities] == [0, gamma / rn.sigma_run, 0, 0, 0, 0]
    # r clipped, d free: the value still moves (slope gamma / sigma = 3/2); d clipped: 0
    for it, value in zip(identities, [0, Rational(3, 2), 0, 0, 0, 0], strict=True):
        assert _close(it.lhs, value)
    assert _close(items[2].expr, Rational(3, 2))
    assert all(it.ranges == {} for it in identities)
    sym = rn._clipping(SYMBOLIC, {"i": i})
    assert all(it.ranges == RANGES for it in sym if isinstance(it, Identity))


def test_the_claims_and_their_wiring(monkeypatch):
    calls = []
    monkeypatch.setattr(rn, "establish", lambda *a, **kw: calls.append((a, kw)) or "proof")
    claims = rn._claims()
    assert [c.id for c in claims] == ["batch-renorm-bias-gradient-zero",
                                      "batch-renorm-output-depends-on-bias",
                                      "batch-renorm-clipping"]
    first = claims[0]
    assert first == Claim(
        id="batch-renorm-bias-gradient-zero",
        statement="Batch Renormalization with r and d under stop-gradient: the gradient "
                  "ignores a bias before it, dy_i/db = 0, for a symbolic N and any eps >= 0.",
        latex=r"\frac{\partial y_i}{\partial b} = 0",
        assumptions=("N >= 2", "eps >= 0", "sigma > 0"), expected="proved",
        prove=first.prove, section="Ioffe (2017), section 3 and Algorithm 1", group="family")
    assert claims[1].statement == (
        "Yet its output is the inference transform gamma (x_i - mu) / sigma + beta, so it "
        "moves with b: the value's slope in b is gamma / sigma, not 0.")
    assert claims[1].latex == (
        r"y_i = \gamma\,\frac{x_i - \mu}{\sigma} + \beta,\quad \frac{\partial y_i}"
        r"{\partial b}\Big|_{\mathrm{value}} = \frac{\gamma}{\sigma}")
    assert claims[1].assumptions == ("N >= 2", "eps >= 0", "sigma > 0", "unclipped r and d",
                                     "gamma != 0")
    assert claims[2].statement == (
        "With clipping, case by case: the gradient still ignores b; the output moves with b "
        "(slope gamma / sigma) while d is within its bounds, and stops moving once d is "
        "clipped at a bound.")
    assert claims[2].latex == (r"d = \pm d_{\max} \Rightarrow \frac{\partial y_i}{\partial b}"
                               r"\Big|_{\mathrm{value}} = 0")
    assert claims[2].assumptions == ("N >= 2", "eps >= 0", "sigma > 0",
                                     "cases: r clipped, d free; r and d clipped; r free, "
                                     "d clipped")
    for claim, build in zip(claims, (rn._gradient_ignores_b, rn._value_moves_with_b,
                                     rn._clipping), strict=True):
        assert claim.prove(3) == "proof"
        assert calls[-1] == ((claim.id, build), {"free": ("i",), "n_max": 3,
                                                 "preamble": rn._PREAMBLE, "symmetric": True})


def test_register_claims(monkeypatch):
    seen = []
    monkeypatch.setattr(rn, "register", seen.append)
    rn.register_claims()
    assert [c.id for c in seen] == ["batch-renorm-bias-gradient-zero",
                                    "batch-renorm-output-depends-on-bias",
                                    "batch-renorm-clipping"]


@pytest.mark.parametrize("batch", [BATCH, SYMBOLIC])
def test_ranges(batch):
    assert rn._ranges(batch) == (RANGES if batch.symbolic else {})
