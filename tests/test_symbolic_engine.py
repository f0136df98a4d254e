"""The sum rule set and the zero test: sound, and able to say no."""

import pytest
import sympy
from sympy import IndexedBase, KroneckerDelta, Sum, Symbol

from bnproof.symbolic import SumRuleError, reduce_sums, vanishes

N = Symbol("N", integer=True, positive=True)
i, j, k, m = sympy.symbols("i j k m", integer=True)
x = IndexedBase("x", real=True)
c = Symbol("c", real=True)


def test_linearity_and_constants():
    expr = Sum(2 * x[k] + c, (k, 1, N))
    reduced = reduce_sums(expr)
    kappa = next(iter(reduced.atoms(Sum))).variables[0]
    assert sympy.expand(reduced - (2 * Sum(x[kappa], (kappa, 1, N)) + c * N)) == 0


def test_sums_differing_only_in_index_name_cancel():
    # sympy PR 15239: simplify leaves Sum(x[k]) - Sum(x[m]) alone; renaming cancels it.
    assert reduce_sums(Sum(x[k], (k, 1, N)) - Sum(x[m], (m, 1, N))) == 0


def test_sifting_needs_a_declared_range():
    expr = Sum(KroneckerDelta(j, k) * x[k] ** 2, (k, 1, N))
    assert reduce_sums(expr, {j: (1, N)}) == x[j] ** 2
    with pytest.raises(SumRuleError, match="range of j is not known"):
        reduce_sums(expr)


def test_sifting_refuses_a_range_that_differs():
    expr = Sum(KroneckerDelta(j, k) * x[k], (k, 1, N))
    with pytest.raises(SumRuleError):
        reduce_sums(expr, {j: (1, N + 1)})


def test_delta_powers_are_idempotent():
    expr = Sum(KroneckerDelta(j, k) ** 2 * x[k], (k, 1, N))
    assert reduce_sums(expr, {j: (1, N)}) == x[j]


def test_concrete_limits_sift_by_value():
    assert reduce_sums(Sum(KroneckerDelta(2, k) * x[k], (k, 1, 3))) == x[2]
    assert reduce_sums(Sum(KroneckerDelta(5, k) * x[k], (k, 1, 3))) == 0


def test_reduce_sums_rejects_non_sympy():
    with pytest.raises(TypeError, match="SymPy expression"):
        reduce_sums("x")


@pytest.mark.parametrize(
    "expr",
    [
        (sympy.sqrt(2) - 1) * (sympy.sqrt(2) + 1) - 1,
        (c + 1) ** 2 - c**2 - 2 * c - 1,
        sympy.sqrt(4 * (c**2 + 1)) - 2 * sympy.sqrt(c**2 + 1),
        1 / sympy.sqrt(c**2 + 1) - sympy.sqrt(c**2 + 1) / (c**2 + 1),
        Sum(x[k] - Sum(x[m], (m, 1, N)) / N, (k, 1, N)),
    ],
)
def test_true_identities_vanish(expr):
    assert vanishes(expr).is_zero


@pytest.mark.parametrize(
    "expr",
    [
        sympy.sqrt(c**2) - c,  # |c| - c is not identically 0
        sympy.sqrt(c**2 + 1) - c - 1,
        Sum(x[k] ** 2, (k, 1, N)) - Sum(x[k], (k, 1, N)) ** 2 / N,  # N var, not 0
        sympy.sqrt(2) - sympy.Rational(141421356, 100000000),
    ],
)
def test_false_identities_do_not_vanish(expr):
    result = vanishes(expr)
    assert not result.is_zero
    assert result.residual != 0


def test_constant_sum_with_unknown_length_is_refused():
    # refused by the limits check, before the constant rule's own guard
    # (tests/test_sums_rules.py drives that one directly)
    lo = Symbol("lo", integer=True)
    with pytest.raises(SumRuleError, match="may have reversed limits"):
        reduce_sums(Sum(c, (k, lo, N)))


def test_dependent_roots_are_never_a_counterexample():
    import random

    from bnproof.symbolic._engine import _evaluate

    # Field arithmetic treats sqrt(6) and sqrt(2)*sqrt(3) as independent; the
    # numeric guard must keep this true identity from being "refuted".
    r2, r3, r6 = (sympy.sqrt(v, evaluate=False) for v in (2, 3, 6))
    expr = sympy.Mul(r2, r3, evaluate=False) - r6 + 0 * c
    is_zero, _, value = _evaluate(expr, random.Random(0), {})
    assert is_zero and abs(value) < 1e-30


def test_reserved_index_names_are_refused():
    # an outer index named like the canonical one was captured by the inner
    # sum when sifting (xreplace ignores binding): N Sum(exp(x_m^2)) "proved"
    kappa = Symbol("kappa_1", integer=True)
    inner = Sum(sympy.exp(x[m] * x[k]), (m, 1, N))
    expr = Sum(Sum(KroneckerDelta(kappa, k) * inner, (k, 1, N)), (kappa, 1, N))
    with pytest.raises(SumRuleError, match="kappa_1 is reserved"):
        vanishes(expr - N * Sum(sympy.exp(x[m] ** 2), (m, 1, N)))
    a = Symbol("a", integer=True)  # the same sum with another name: not that identity
    renamed = expr.xreplace({kappa: a})
    assert not vanishes(renamed - N * Sum(sympy.exp(x[m] ** 2), (m, 1, N))).is_zero


@pytest.mark.parametrize(
    "expr",
    [
        Sum(KroneckerDelta(2, k) * x[k], (k, 3, 1)),  # SymPy (Karr): -x[2], not 0
        Sum(Sum(KroneckerDelta(k, m) * x[m], (m, 3, 1)), (k, 3, 1)),
        Sum(KroneckerDelta(j, k) * x[k], (k, N, 1)),  # reversed unless N = 1
    ],
)
def test_reversed_limits_are_refused(expr):
    assert expr.subs(N, 3).doit() != 0  # what sifting to 0 would have missed
    with pytest.raises(SumRuleError, match="reversed limits"):
        reduce_sums(expr, {j: (1, N)})


def test_an_empty_sum_is_allowed():
    assert reduce_sums(Sum(KroneckerDelta(2, k) * x[k], (k, 2, 1))) == 0
