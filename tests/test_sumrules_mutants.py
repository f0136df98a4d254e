"""Literal unit tests of the two shape-changing sum rules (``_sumrules``).

Each expected value is worked out by hand from the rule's statement (a term
just below or above a range joins the sum; a rectangular double sum may be
summed in either order), and every rewrite is checked once more against
SymPy's own evaluation of the finite sums at concrete sizes.
"""

import pytest
import sympy
from sympy import IndexedBase, Sum, Symbol

from bnproof.symbolic import SumRuleError
from bnproof.symbolic._sumrules import (
    _bound,
    _length_known,
    _single_sum,
    _swap,
    interchange_sums,
    merge_ranges,
)

N = Symbol("N", integer=True, positive=True)
D = Symbol("D", integer=True, positive=True)
M = Symbol("M", integer=True)  # an integer of unknown sign
R = Symbol("R", real=True)  # not known to be an integer
k, m, n, e = sympy.symbols("k m n e", integer=True)
x, y, U, w = (IndexedBase(s, real=True) for s in "xyUw")
z = Symbol("z")


def _at(expr, size=4):
    """SymPy's own value of the finite sums at N = D = ``size``."""
    return sympy.expand(expr.subs({N: size, D: size}).doit())


# ---- the helpers -------------------------------------------------------------- #


@pytest.mark.parametrize(
    "lo, hi, known",
    [
        (1, 0, True),  # the empty range: 0 terms
        (1, 1, True),
        (1, -1, False),  # -1 terms
        (2, 0, False),
        (1, N, True),
        (2, N, True),  # N - 1 terms, N >= 1
        (3, N, False),  # N - 2 terms: N = 1 is allowed
        (1, N - 1, True),  # N - 1 >= 0
        (0, N, True),
        (1, M, False),  # M terms, M of unknown sign
        (M, M, True),
        (R, N, False),  # a limit not known to be an integer
        (1, R, False),
    ],
)
def test_length_known(lo, hi, known):
    assert _length_known(sympy.sympify(lo), sympy.sympify(hi)) is known


def test_bound_collects_the_summation_indices_of_every_sum():
    expr = Sum(x[k], (k, 1, N)) * Sum(y[m, n], (m, 1, N), (n, 1, D)) + x[e]
    assert _bound(expr) == {k, m, n}
    assert _bound(x[e]) == set()


def test_single_sum_splits_a_coefficient_from_one_sum():
    total = Sum(x[k], (k, 1, N))
    assert _single_sum(3 * y[1] * total) == (3 * y[1], total)
    assert _single_sum(total) == (1, total)
    assert _single_sum(y[1]) is None
    assert _single_sum(total * Sum(y[m], (m, 1, N))) is None  # two sums
    assert _single_sum(Sum(U[k, m], (k, 1, N), (m, 1, N))) is None  # two limits


# ---- merge_ranges --------------------------------------------------------------- #


def test_merge_below_and_above_literally():
    assert merge_ranges(x[1] + Sum(x[k], (k, 2, N))) == Sum(x[k], (k, 1, N))
    assert merge_ranges(x[N + 1] + Sum(x[k], (k, 1, N))) == Sum(x[k], (k, 1, N + 1))
    assert merge_ranges(x[0] + Sum(x[k], (k, 1, N))) == Sum(x[k], (k, 0, N))


def test_merge_repeats_until_nothing_merges():
    # x1 + x2 + sum_{3}^{N+2} = sum_{1}^{N+2}; N + 2 - 3 + 1 = N >= 0 terms
    below = x[1] + x[2] + Sum(x[k], (k, 3, N + 2))
    assert merge_ranges(below) == Sum(x[k], (k, 1, N + 2))
    above = x[N + 2] + x[N + 1] + Sum(x[k], (k, 1, N))
    assert merge_ranges(above) == Sum(x[k], (k, 1, N + 2))
    assert _at(merge_ranges(below)) == _at(below)


def test_merge_two_sums_each_with_its_own_term():
    expr = x[1] + Sum(x[k], (k, 2, N)) + y[0] + Sum(y[k], (k, 1, N))
    assert merge_ranges(expr) == Sum(x[k], (k, 1, N)) + Sum(y[k], (k, 0, N))
    expr = x[0] + Sum(x[k], (k, 1, N)) + y[N + 1] + Sum(y[k], (k, 1, N))
    assert merge_ranges(expr) == Sum(x[k], (k, 0, N)) + Sum(y[k], (k, 1, N + 1))


def test_a_refused_sum_does_not_stop_the_merging_of_the_next():
    a = IndexedBase("a", real=True)
    # SymPy orders the refused sum over a (M - 1 terms) before the sum over x
    expr = a[1] + Sum(a[k], (k, 2, M)) + x[1] + Sum(x[k], (k, 2, N))
    assert merge_ranges(expr) == a[1] + Sum(a[k], (k, 2, M)) + Sum(x[k], (k, 1, N))


def test_merge_keeps_the_other_terms():
    expr = z + x[1] + y[1] + Sum(x[k], (k, 2, N))
    assert merge_ranges(expr) == z + y[1] + Sum(x[k], (k, 1, N))


def test_merge_with_a_coefficient_on_both():
    expr = 5 * z * x[1] ** 2 + 5 * z * Sum(x[k] ** 2, (k, 2, N))
    assert merge_ranges(expr) == 5 * z * Sum(x[k] ** 2, (k, 1, N))


def test_merge_inside_a_sum_and_a_product():
    inner = x[1] + Sum(x[k], (k, 2, N))
    assert merge_ranges(Sum(y[m] * inner, (m, 1, N))) == Sum(
        y[m] * Sum(x[k], (k, 1, N)), (m, 1, N))
    assert merge_ranges(sympy.exp(inner)) == sympy.exp(Sum(x[k], (k, 1, N)))


@pytest.mark.parametrize(
    "expr",
    [
        x[2] + Sum(x[k], (k, 2, N)),  # a point inside the range, not below it
        x[N] + Sum(x[k], (k, 1, N)),  # the last point, not the one after it
        x[N + 2] + Sum(x[k], (k, 1, N)),  # two past the end
        x[-1] + Sum(x[k], (k, 1, N)),  # two below the start
        x[2] + Sum(x[k], (k, 3, N)),  # N - 2 terms: not known to be >= 0
        x[1] + Sum(x[k], (k, 2, M)),  # M - 1 terms of unknown sign
        x[0] + Sum(x[k], (k, 1, R)),  # a limit not known to be an integer
        # a free k beside the sum: refused (a free k would be captured)
        k * x[1] + k * Sum(x[k], (k, 2, N)),
        # the summand has its own sum over k: substituting k = 1 would break it
        x[1] * Sum(y[k], (k, 1, N)) + Sum(x[k] * Sum(y[k], (k, 1, N)), (k, 2, N)),
        # a sum over two indices is not merged with anything
        U[1, 1] + Sum(U[k, m], (k, 2, N), (m, 1, N)),
    ],
)
def test_merge_refusals(expr):
    assert merge_ranges(expr) == expr


def test_merge_leaves_an_expression_without_sums_untouched():
    unevaluated = sympy.Add(z, z, evaluate=False)  # not rebuilt into 2*z
    assert merge_ranges(unevaluated) is unevaluated
    assert merge_ranges(z) is z


def test_merge_rejects_what_is_not_an_expression():
    with pytest.raises(TypeError, match="expr must be a SymPy expression, got int"):
        merge_ranges(3)


# ---- interchange_sums ------------------------------------------------------------ #


def test_interchange_of_a_sum_of_two_terms_after_expanding():
    expr = Sum((w[e] + 1) * Sum(U[n, e], (n, 1, N)), (e, 1, D))
    swapped = interchange_sums(expr, e)
    assert swapped == (Sum(Sum(U[n, e] * w[e], (e, 1, D)), (n, 1, N))
                       + Sum(Sum(U[n, e], (e, 1, D)), (n, 1, N)))
    assert _at(swapped) == _at(expr)


def test_interchange_inside_a_larger_expression():
    expr = 1 + z * Sum(w[e] * Sum(U[n, e], (n, 1, N)), (e, 1, D))
    assert interchange_sums(expr, e) == 1 + z * Sum(Sum(U[n, e] * w[e], (e, 1, D)), (n, 1, N))


class _Tagged(sympy.Basic):
    """A SymPy object with a plain Python string among its arguments."""


def test_interchange_passes_arguments_that_are_not_expressions_through():
    tagged = _Tagged(Sum(w[e] * Sum(U[n, e], (n, 1, N)), (e, 1, D)), "label")
    swapped = interchange_sums(tagged, e)
    assert swapped == _Tagged(Sum(Sum(U[n, e] * w[e], (e, 1, D)), (n, 1, N)), "label")
    assert swapped.args[1] == "label"


def test_interchange_leaves_other_sums_alone():
    expr = Sum(w[e] * Sum(U[n, e], (n, 1, N)), (e, 1, D))
    assert interchange_sums(expr, Symbol("q", integer=True)) == expr
    two_limits = Sum(U[n, e], (e, 1, D), (n, 1, N))  # one Sum with two limits
    assert interchange_sums(two_limits, e) == two_limits
    assert interchange_sums(z, e) is z


@pytest.mark.parametrize(
    "expr, message",
    [
        (Sum(w[e], (e, 1, D)),
         r"cannot interchange the sum over e: the term w\[e\] is not a factor times one inner "
         "sum"),
        (Sum(w[e] * Sum(U[n, e], (n, 1, N)) * Sum(U[m, e], (m, 1, N)), (e, 1, D)),
         "not a factor times one inner sum"),
        (Sum(w[e] * Sum(U[n, e], (n, e, N)), (e, 1, D)),
         "cannot interchange the sums over e and n: the limits of one depend on the other"),
        (Sum(w[e] * Sum(U[n, e], (n, 1, e)), (e, 1, D)), "not a rectangle"),
        (Sum(w[e] * Sum(U[n, e], (n, 1, N)), (e, n, D)), "not a rectangle"),
        (Sum(w[e] * Sum(U[n, e], (n, 1, N)), (e, 1, n)), "not a rectangle"),
        (Sum(w[e] * Sum(U[n, e], (n, 1, M)), (e, 1, D)),
         "cannot interchange the sums over e and n: a length hi - lo [+] 1 is not known to "
         "be >= 0, or a limit is not known to be an integer"),
        (Sum(w[e] * Sum(U[n, e], (n, 1, N)), (e, 1, M)), "not known to be >= 0"),
        (Sum(w[e] * Sum(U[n, e], (n, 1, N)), (e, 1, R)), "not known to be an integer"),
        (Sum(n * Sum(U[n, e], (n, 1, N)), (e, 1, D)),
         r"cannot interchange: n is also free in n\*?.*, which would be captured"),
    ],
)
def test_interchange_refusals_name_the_reason(expr, message):
    with pytest.raises(SumRuleError, match=message):
        interchange_sums(expr, e)


def test_swap_refuses_an_inner_sum_over_the_same_index():
    # interchange_sums swaps the inner sum first, so only _swap itself meets this
    with pytest.raises(SumRuleError, match="cannot interchange: e is also free in w"):
        _swap(Sum(w[e] * Sum(U[e, e], (e, 1, N)), (e, 1, D)), e)


def test_interchange_rejects_bad_arguments():
    with pytest.raises(TypeError, match="expr must be a SymPy expression, got list"):
        interchange_sums([], e)
    with pytest.raises(TypeError, match="index must be a SymPy Symbol, got 'e'"):
        interchange_sums(Sum(w[e], (e, 1, D)), "e")
