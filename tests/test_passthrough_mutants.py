"""Literal tests of the pass-through builders (``_passthrough``), without proving.

Each builder's identity ``f(x + c) - f(x) = K`` is written out by hand at a
small concrete size (and, where the builder has one, for the symbolic size
N) from the operation's definition in the module docstring.
"""

import pytest
from sympy import IndexedBase, Max, Sum, Symbol

from bnproof.symbolic import _passthrough as pt
from bnproof.symbolic._models import ConcreteBatch, N, SymbolicBatch, i, j
from bnproof.symbolic._proof import Claim, Step

SYMBOLIC = SymbolicBatch()
RANGES = {i: (1, N), j: (1, N)}
DIFF = Symbol("f(x + c) - f(x)", real=True)
c, e, a = (Symbol(n, real=True) for n in "cea")
q = Symbol("q", integer=True)
x, W, cvec = (IndexedBase(n, real=True) for n in ("x", "W", "c"))


def _r(name):
    return Symbol(name, real=True)


def test_entry():
    assert pt._entry(SYMBOLIC, x, i) == x[i]
    assert pt._entry(SYMBOLIC, W, i, q) == W[i, q]
    assert pt._entry(ConcreteBatch(2), x, 2) == _r("x_2")
    assert pt._entry(ConcreteBatch(2), W, 1, 2) == _r("W_1_2")
    mask = pt._entry(ConcreteBatch(2), IndexedBase("m", nonnegative=True), 1)
    assert mask.name == "m_1" and mask.is_nonnegative is True
    assert pt._ranges(SYMBOLIC) == RANGES and pt._ranges(ConcreteBatch(2)) == {}


def test_linear():
    (item,) = pt._linear(ConcreteBatch(2), {"i": 1})
    W11, W12, x1, x2, c1, c2 = (_r(n) for n in ("W_1_1", "W_1_2", "x_1", "x_2", "c_1", "c_2"))
    assert item.label == DIFF
    assert item.lhs == W11 * (x1 + c1) + W12 * (x2 + c2) - (W11 * x1 + W12 * x2)
    assert item.rhs == W11 * c1 + W12 * c2
    assert item.ranges == {}
    (item,) = pt._linear(SYMBOLIC, {"i": i})
    assert item.rhs == Sum(W[i, q] * cvec[q], (q, 1, N))
    assert item.lhs == (Sum(W[i, q] * (x[q] + cvec[q]), (q, 1, N))
                        - Sum(W[i, q] * x[q], (q, 1, N)))
    assert item.ranges == RANGES


def test_conv():
    (item,) = pt._conv(ConcreteBatch(2), {"i": 1})
    w11, w12, w21, w22 = (_r(f"w^{{({ch})}}_{tap}") for ch in (1, 2) for tap in (1, 2))
    a2, a3, b2, b3 = (_r(f"x^{{({ch})}}_{pos}") for ch in (1, 2) for pos in (2, 3))
    c1, c2 = _r("c_1"), _r("c_2")
    # output position 1 reads positions 1 + 1 and 1 + 2 of each channel
    assert item.lhs == (w11 * (a2 + c1) + w12 * (a3 + c1) + w21 * (b2 + c2) + w22 * (b3 + c2)
                        - (w11 * a2 + w12 * a3 + w21 * b2 + w22 * b3))
    assert item.rhs == c1 * (w11 + w12) + c2 * (w21 + w22)
    assert (item.label, item.ranges) == (DIFF, {})
    (item,) = pt._conv(SYMBOLIC, {"i": i})
    w1, w2 = IndexedBase("w^{(1)}", real=True), IndexedBase("w^{(2)}", real=True)
    assert item.rhs == c1 * Sum(w1[q], (q, 1, N)) + c2 * Sum(w2[q], (q, 1, N))
    assert item.ranges == RANGES


def test_avgpool():
    (item,) = pt._avgpool(ConcreteBatch(2), {})
    x1, x2 = _r("x_1"), _r("x_2")
    assert item.lhs == ((x1 + c) + (x2 + c)) / 2 - (x1 + x2) / 2
    assert (item.label, item.rhs, item.ranges) == (DIFF, c, {})
    (item,) = pt._avgpool(SYMBOLIC, {})
    assert item.lhs == Sum(x[q] + c, (q, 1, N)) / N - Sum(x[q], (q, 1, N)) / N
    assert item.ranges == RANGES


def test_maxpool():
    (order,) = pt._maxpool(SYMBOLIC, {"i": i, "j": j})
    assert order.label == Symbol("(x_i + c) - (x_j + c)", real=True)
    assert order.lhs == x[i] - x[j] and order.rhs == x[i] - x[j]
    assert order.ranges == RANGES
    order, case = pt._maxpool(ConcreteBatch(3), {"i": 2, "j": 3})
    x2, x3 = _r("x_2"), _r("x_3")
    assert order.lhs == x2 - x3 and order.rhs == x2 - x3 and order.ranges == {}
    d1, d3 = Symbol("d_1", nonnegative=True), Symbol("d_3", nonnegative=True)
    # the case "x_2 is a maximum": x_1 = x_2 - d_1, x_3 = x_2 - d_3
    assert case.label == Symbol("max(x + c) - max(x)", real=True)
    assert case.lhs == (Max(x2 - d1 + c, x2 + c, x2 - d3 + c) - Max(x2 - d1, x2, x2 - d3))
    assert case.rhs == c
    assert case.ranges == {}


def test_residual_upsample_scalar():
    (item,) = pt._residual(ConcreteBatch(2), {"i": 2})
    assert (item.label, item.lhs, item.rhs) == (DIFF, c + e, c + e)
    assert pt._residual(SYMBOLIC, {"i": i})[0].ranges == RANGES
    (item,) = pt._upsample(ConcreteBatch(4), {"i": 3})
    assert (item.label, item.lhs, item.rhs, item.ranges) == (DIFF, c, c, {})
    assert pt._upsample(SYMBOLIC, {"i": i})[0].ranges == RANGES
    (item,) = pt._scalar(ConcreteBatch(2), {"i": 1})
    x1 = _r("x_1")
    assert (item.label, item.lhs, item.rhs) == (DIFF, a * (x1 + c) - a * x1, a * c)
    (item,) = pt._scalar(SYMBOLIC, {"i": i})
    assert (item.lhs, item.ranges) == (a * (x[i] + c) - a * x[i], RANGES)


def test_negative_controls():
    x1 = _r("x_1")
    (item,) = pt._relu(ConcreteBatch(2), {"i": 1})
    assert (item.label, item.lhs, item.rhs) == (DIFF, Max(x1 + c, 0) - Max(x1, 0), c)
    assert pt._relu(SYMBOLIC, {"i": i})[0].ranges == RANGES
    (item,) = pt._zero_padding(ConcreteBatch(2), {"i": 1})
    assert item.label == Symbol("[f(x + c) - f(x)]_pad", real=True)
    assert (item.lhs, item.rhs, item.ranges) == (0, c, {})
    assert pt._zero_padding(SYMBOLIC, {"i": i})[0].ranges == RANGES
    (item,) = pt._dropout(ConcreteBatch(2), {"i": 1})
    m1 = Symbol("m_1", nonnegative=True)
    assert (item.label, item.lhs, item.rhs) == (DIFF, m1 * (x1 + c) - m1 * x1, c)
    assert pt._dropout(SYMBOLIC, {"i": i})[0].ranges == RANGES


def test_avgpool_counting_padding():
    (item,) = pt._avgpool_counting_padding(ConcreteBatch(3), {})
    x1, x2 = _r("x_1"), _r("x_2")
    # the border window: one pad and the data x_1, x_2, divided by 3
    assert item.label == Symbol("[f(x + c) - f(x)]_border", real=True)
    assert item.lhs == ((x1 + c) + (x2 + c)) / 3 - (x1 + x2) / 3
    assert (item.rhs, item.ranges) == (c, {})
    (item,) = pt._avgpool_counting_padding(SYMBOLIC, {})
    assert item.lhs == Sum(x[q] + c, (q, 1, N - 1)) / N - Sum(x[q], (q, 1, N - 1)) / N
    assert item.ranges == RANGES


@pytest.mark.parametrize("kwargs, free, expected, symbolic", [
    ({}, ("i",), "proved", True),
    ({"free": (), "expected": "refuted", "symbolic": False}, (), "refuted", False),
])
def test_claim_wiring(monkeypatch, kwargs, free, expected, symbolic):
    calls = []
    monkeypatch.setattr(pt, "establish", lambda *args, **kw: calls.append((args, kw)) or "p")
    claim = pt._claim("pt-x", "A rule.", "l", ["one"], pt._scalar, section="S", **kwargs)
    assert claim == Claim(id="pt-x", statement="A rule.", latex="l", assumptions=("one",),
                          expected=expected, prove=claim.prove, symbolic_n_expected=symbolic,
                          section="S", group="rules")
    assert claim.prove(4) == "p"
    assert calls == [(("pt-x", pt._scalar), {"free": free, "n_max": 4, "symbolic": symbolic,
                                             "preamble": (Step("A rule."),)})]


def test_the_rules_are_registered_in_order():
    assert list(pt.PASSTHROUGH_CLAIMS)[:2] == ["passthrough-linear",
                                               "passthrough-conv-no-padding"]
    assert len(pt.PASSTHROUGH_CLAIMS) == 11
