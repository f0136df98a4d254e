"""The sum rules added for the family: each one checked, each refusal checked."""

import pytest
import sympy
from sympy import IndexedBase, KroneckerDelta, Sum, Symbol

from bnproof.symbolic import SumRuleError, reduce_sums, vanishes
from bnproof.symbolic._sumrules import interchange_sums, merge_ranges

N = Symbol("N", integer=True, positive=True)
D = Symbol("D", integer=True, positive=True)
M = Symbol("M", integer=True)  # not known to be >= 1
j, k, m, n, e = sympy.symbols("j k m n e", integer=True)
x, y, U, w, g = (IndexedBase(s, real=True) for s in "xyUwg")


def _at(expr, **sizes):
    """Evaluate with concrete sizes and doit (SymPy's own finite sums)."""
    return sympy.expand(expr.subs({N: sizes.get("N", 3), D: sizes.get("D", 2)}).doit())


# ---- affine sifting (convolutions) ---------------------------------------- #


def test_affine_sifting_with_a_shifted_range():
    expr = Sum(KroneckerDelta(j, k + 1) * x[k], (k, 1, N))
    assert reduce_sums(expr, {j: (2, N + 1)}) == x[j - 1]
    for jv in (2, 3, 4):  # the same at N = 3 by SymPy's own evaluation
        assert _at(expr.subs(j, jv)) == x[jv - 1]


def test_sifting_within_a_smaller_declared_range():
    expr = Sum(KroneckerDelta(j, k) * x[k], (k, 1, N))
    assert reduce_sums(expr, {j: (2, N - 1)}) == x[j]


@pytest.mark.parametrize(
    "delta, ranges, message",
    [
        (KroneckerDelta(j, k + 1), {j: (1, N)}, "range of j - 1 is not known"),  # j = 1 misses
        (KroneckerDelta(j, 2 * k), {j: (1, N)}, "integer offset"),
        # an offset not known to be an integer (for s = 1/2 the delta is 0)
        (KroneckerDelta(j, k + Symbol("s")), {j: (1, N)}, "not known to be an integer"),
    ],
)
def test_affine_sifting_refusals(delta, ranges, message):
    with pytest.raises(SumRuleError, match=message):
        reduce_sums(Sum(delta * x[k], (k, 1, N)), ranges)


# ---- merging sub-ranges ------------------------------------------------------ #


def test_merge_below_and_above():
    assert merge_ranges(x[1] + Sum(x[k], (k, 2, N))) == Sum(x[k], (k, 1, N))
    merged = merge_ranges(3 * x[N + 1] ** 2 + 3 * Sum(x[k] ** 2, (k, 1, N)))
    assert merged == 3 * Sum(x[k] ** 2, (k, 1, N + 1))
    assert _at(merged) == _at(3 * x[N + 1] ** 2 + 3 * Sum(x[k] ** 2, (k, 1, N)))


@pytest.mark.parametrize(
    "expr",
    [
        x[3] + Sum(x[k], (k, 2, N)),  # not the next point
        2 * x[1] + Sum(x[k], (k, 2, N)),  # another coefficient
        x[1] + Sum(x[k], (k, 2, M)),  # M - 1 terms: not known to be >= 0
    ],
)
def test_merge_refusals_leave_the_expression_alone(expr):
    assert merge_ranges(expr) == expr


# ---- interchange of nested sums -------------------------------------------- #


def test_interchange_moves_the_outer_sum_inside():
    expr = Sum(w[e] * Sum(g[n] * U[n, e], (n, 1, N)), (e, 1, D))
    swapped = interchange_sums(expr, e)
    assert swapped == Sum(Sum(g[n] * U[n, e] * w[e], (e, 1, D)), (n, 1, N))
    assert _at(swapped) == _at(expr)


@pytest.mark.parametrize(
    "expr, message",
    [
        (Sum(w[e] * Sum(U[n, e], (n, 1, e)), (e, 1, D)), "not a rectangle"),
        (Sum(w[e] * Sum(U[n, e], (n, 1, M)), (e, 1, D)), "not known to be >= 0"),
        (Sum(w[e] * n * Sum(U[n, e], (n, 1, N)), (e, 1, D)), "captured"),
        (Sum(w[e] + Sum(U[n, e], (n, 1, N)), (e, 1, D)), "not a factor times one inner sum"),
    ],
)
def test_interchange_refusals(expr, message):
    with pytest.raises(SumRuleError, match=message):
        interchange_sums(expr, e)


def test_reduce_sums_interchanges_to_match_moments():
    # sum_e w_e sum_n g_n U[n, e] = sum_n g_n x_n with x_n = sum_e U[n, e] w_e
    lhs = Sum(w[e] * Sum(g[n] * U[n, e], (n, 1, N)), (e, 1, D))
    rhs = Sum(g[m] * Sum(U[m, k] * w[k], (k, 1, D)), (m, 1, N))
    assert vanishes(lhs - rhs).is_zero
    assert not vanishes(lhs - 2 * rhs).is_zero  # and it can still say no


def test_sums_over_the_same_range_are_never_swapped_back_and_forth():
    expr = Sum(x[k] * Sum(y[m, k], (m, 1, N)), (k, 1, N))
    reduced = reduce_sums(expr)
    assert vanishes(reduced - expr).is_zero
    assert reduce_sums(reduced) == reduced
