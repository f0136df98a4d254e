"""Adversarial checks of the symbolic routes: false statements must not be proved.

Each test either reproduces a statement the rule set once proved although it
is false, or is a negative control: a near miss of a true claim (eps > 0, an
index shift, unequal weights, a bias along the statistics axis) that the
symbolic route must refuse, next to the true claim that it proves. The
invariance cells and the weight-gradient claims are also checked against an
independent NumPy computation at random sizes.
"""

import pytest
import sympy
from sympy import IndexedBase, KroneckerDelta, Rational, Sum, Symbol

from bnproof.symbolic import (
    Identity,
    SumRuleError,
    establish,
    merge_ranges,
    reduce_sums,
    vanishes,
)

N = Symbol("N", integer=True, positive=True)
k = Symbol("k", integer=True)
j = Symbol("j", integer=True)
x = IndexedBase("x", real=True)


# ---- sums whose limits are not integers ------------------------------------- #
#
# A sum runs over the integers from its lower to its upper limit (SymPy's
# documentation of Sum). With a limit that is not an integer, hi - lo + 1 is
# not the number of terms (Sum(1, (k, 1, 3/2)) has one term, k = 1), so the
# constant rule must not apply.


def _first_half(batch, indices):
    # "the first half of the batch has N/2 samples": false for every odd N
    return [Identity(Symbol("z"), Sum(1, (k, 1, batch.size / sympy.Integer(2))),
                     batch.size / sympy.Integer(2), {})]


def test_a_sum_up_to_half_the_batch_is_not_proved_to_have_n_over_2_terms():
    assert len(range(1, 3 // 2 + 1)) == 1  # N = 3: the sum has one term, not 3/2
    proof = establish("first-half", _first_half, n_max=2)  # N = 3 costs SymPy seconds
    assert proof.verdict != "proved", proof.reason
    assert not proof.symbolic_n


@pytest.mark.parametrize("limits", [(k, 1, N / 2), (k, Rational(1, 2), N),
                                    (k, Symbol("a", negative=True), N)],
                         ids=["hi=N/2", "lo=1/2", "lo=a<0 real"])
def test_the_constant_rule_needs_integer_limits(limits):
    with pytest.raises(SumRuleError, match="not known to be an integer"):
        reduce_sums(Sum(1, limits))
    with pytest.raises(SumRuleError, match="not known to be an integer"):
        vanishes(Sum(1, limits) - (limits[2] - limits[1] + 1))


def test_sifting_needs_integer_limits():
    # for k = 1/2, 3/2, ... no term has k = j; for k over the integers in
    # [1/2, N] the sum is x[j]: the rule set must not pick a reading
    with pytest.raises(SumRuleError, match="not known to be an integer"):
        reduce_sums(Sum(KroneckerDelta(j, k) * x[k], (k, Rational(1, 2), N)), {j: (1, N)})
    # the integer version still sifts (the control)
    assert reduce_sums(Sum(KroneckerDelta(j, k) * x[k], (k, 1, N)), {j: (1, N)}) == x[j]


def test_merging_a_range_needs_integer_limits():
    # over the integers, x[-1/2] + sum_{k in [1/2, N]} x[k] is not sum_{k in [-1/2, N]} x[k]
    half = Rational(1, 2)
    expr = x[-half] + Sum(x[k], (k, half, N))
    assert merge_ranges(expr) == expr
    assert merge_ranges(x[0] + Sum(x[k], (k, 1, N))) == Sum(x[k], (k, 0, N))  # the control


# ---- a summation index whose assumptions its limits contradict ------------- #


def test_a_summation_index_is_known_only_from_its_limits():
    # k is declared positive but runs over -2..-1: there the inner sums are
    # reversed (Karr: sum_{m=1}^{-1} f = -f(0)) and hold no m = u = 1, so the
    # whole sum is 0; trusting "k > 0" sifted it to x[1] z[1] (y[-2] + y[-1])
    u, m = Symbol("u", integer=True), Symbol("m", integer=True)
    kp = Symbol("k", integer=True, positive=True)
    y, z = IndexedBase("y", real=True), IndexedBase("z", real=True)
    inner = Sum(KroneckerDelta(u, m) * x[m], (m, 1, kp))
    expr = Sum(z[u] * Sum(y[kp] * inner, (kp, -2, -1)), (u, 1, 1))
    plain_k = Symbol("k", integer=True)
    assert expr.xreplace({kp: plain_k}).doit() == 0  # SymPy's value
    sifted = x[1] * z[1] * (y[-2] + y[-1])
    with pytest.raises(SumRuleError, match="is declared positive, which its limits do not"):
        vanishes(expr - sifted)
    # the control: k over 1..2, where "k > 0" is true, still sifts
    ok = Sum(z[u] * Sum(y[kp] * inner, (kp, 1, 2)), (u, 1, 1))
    assert vanishes(ok - Sum(x[u] * z[u], (u, 1, 1)) * Sum(y[kp], (kp, 1, 2))).is_zero
