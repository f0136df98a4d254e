"""The sum rule set rule by rule: each rule's edge cases, refusals and their messages."""

import pytest
import sympy
from sympy import Function, IndexedBase, KroneckerDelta, Pow, Sum, Symbol

from bnproof.symbolic import SumRuleError, reduce_sums, vanishes
from bnproof.symbolic._sums import _sift, _sum_product, moments_to_symbols

N = Symbol("N", integer=True, positive=True)
i, j, k, m, n = sympy.symbols("i j k m n", integer=True)
x = IndexedBase("x", real=True)
y = IndexedBase("y", real=True)
c = Symbol("c", real=True)
f = Function("f")
K1, K2, K3 = (Symbol(f"kappa_{d}", integer=True) for d in (1, 2, 3))


def _indices(expr):
    """The summation indices of ``expr``, outermost first (SymPy merges nested sums)."""
    out = []
    while isinstance(expr, Sum):
        out.extend(reversed(expr.variables))
        expr = expr.function
    return out


def test_canonical_indices_are_integer_kappa_by_depth():
    flat = reduce_sums(Sum(x[k] ** 2, (k, 1, N)))
    assert flat == Sum(x[K1] ** 2, (K1, 1, N))
    assert flat.variables[0].is_integer is True
    nested = reduce_sums(Sum(Sum(f(x[k] * x[m]), (m, 1, N)), (k, 1, N)))
    assert _indices(nested) == [K2, K1]
    # SymPy merges nested sums into one Sum with several limits: the depth
    # counts limits, or the outer index would be named like the middle one
    # and capture it (f(x[kappa_2]**2 * x[kappa_1]) summed over kappa_2 twice)
    triple = reduce_sums(Sum(Sum(Sum(f(x[i] * x[k] * x[m]), (m, 1, N)), (k, 1, N)), (i, 1, N)))
    assert _indices(triple) == [K3, K2, K1]
    assert triple.function == f(x[K1] * x[K2] * x[K3])
    # a product keeps SymPy from merging: the depth looks inside it
    product = reduce_sums(Sum(x[i] * Sum(x[k] * Sum(f(x[i] * x[k] * x[m]), (m, 1, N)),
                                         (k, 1, N)), (i, 1, N)))
    assert list(product.variables) == [K3]
    inner = product.function.atoms(Sum)
    assert {tuple(s.variables) for s in inner} == {(K2,), (K1,)}


def test_a_reduction_is_an_identity_at_concrete_n():
    # nested sums keep their own indices apart (no capture), so the reduced
    # expression has the value of the original at N = 3
    expr = Sum(Sum(x[k] * x[m] ** 2 * KroneckerDelta(j, m) + y[k] * x[m], (m, 1, N))
               + Sum(Sum(f(x[i] * y[k] * x[m]), (i, 1, N)), (m, 1, N)), (k, 1, N))
    reduced = reduce_sums(expr, {j: (1, N)})
    values = {x[t]: sympy.Rational(t + 2, 3) for t in range(1, 4)}
    values |= {y[t]: sympy.Rational(5 - 2 * t, 7) for t in range(1, 4)}
    for jj in (1, 3):
        want = expr.subs({N: 3, j: jj}).doit().subs(values)
        got = reduced.subs({N: 3, j: jj}).doit().subs(values)
        assert want == got != 0


def test_nested_sums_with_renamed_indices_cancel():
    a = Sum(Sum(f(x[k] * y[m]), (m, 1, N)), (k, 1, N))
    b = Sum(Sum(f(x[i] * y[n]), (n, 1, N)), (i, 1, N))
    swapped = Sum(Sum(f(x[k] * y[m]), (k, 1, N)), (m, 1, N))  # the same sum, other order
    assert reduce_sums(a - b) == 0
    assert vanishes(a - b).is_zero
    assert not vanishes(a - Sum(Sum(f(y[k] * x[m]), (m, 1, N)), (k, 1, N))).is_zero
    assert reduce_sums(swapped) != 0


@pytest.mark.parametrize("value", [1, 2, 3])
def test_concrete_sifting_includes_both_ends(value):
    assert reduce_sums(Sum(KroneckerDelta(value, k) * x[k], (k, 1, 3))) == x[value]


@pytest.mark.parametrize("value", [0, 4])
def test_concrete_sifting_outside_the_range_is_zero(value):
    assert reduce_sums(Sum(KroneckerDelta(value, k) * x[k], (k, 1, 3))) == 0


def test_declared_range_with_concrete_limits():
    expr = Sum(KroneckerDelta(j, k) * x[k], (k, 1, 3))
    assert reduce_sums(expr, {j: (1, 3)}) == x[j]
    with pytest.raises(SumRuleError, match="range of j is not known"):
        reduce_sums(expr, {j: (1, 4)})


def test_a_concrete_index_needs_concrete_limits():
    # 2 may lie outside [1, N] (N = 1): no guess either way
    with pytest.raises(SumRuleError, match=r"range of 2 is not known.*ranges=\{2: \(1, N\)\}"):
        reduce_sums(Sum(KroneckerDelta(2, k) * x[k], (k, 1, N)))


@pytest.mark.parametrize("other", [j, m])  # KroneckerDelta(m, k) is stored as (k, m)
def test_sifting_keeps_every_other_factor(other):
    expr = Sum(c * KroneckerDelta(other, k) * x[k] ** 2 * y[k] * f(x[k]) * N, (k, 1, N))
    assert reduce_sums(expr, {other: (1, N)}) == c * N * x[other] ** 2 * y[other] * f(x[other])


def test_a_delta_not_comparing_the_index_itself_is_refused():
    # affine offsets are sifted (k = j - 1) only where j - 1 is known to lie in [1, N]
    message = (r"cannot sift KroneckerDelta\(j, k \+ 1\) over k in \[1, N\]: "
               r"the range of j - 1 is not known")
    with pytest.raises(SumRuleError, match=message):
        reduce_sums(Sum(KroneckerDelta(j, k + 1) * x[k], (k, 1, N)), {j: (1, N)})


def test_a_negative_power_of_a_delta_is_not_sifted():
    # 1/KroneckerDelta is not a delta: rule 4 covers positive powers only
    reduced = reduce_sums(Sum(x[k] / KroneckerDelta(j, k), (k, 1, N)), {j: (1, N)})
    assert reduced.has(Sum) and reduced != x[j]


@pytest.mark.parametrize("power", [1, 3])
def test_rule_4_on_an_unevaluated_power(power):
    # SymPy evaluates KroneckerDelta**n itself; rule 4 covers the forms it leaves
    term = sympy.Mul(Pow(KroneckerDelta(j, k), power, evaluate=False), x[k], evaluate=False)
    assert _sift(term, k, 1, N, {j: (1, N)}) == x[j]


def test_sifting_refuses_to_capture_a_bound_index():
    # unreachable through reduce_sums (kappa names are refused up front); the
    # guard is the second line of defence
    term = KroneckerDelta(m, k) * Sum(x[m] * x[k], (m, 1, N))
    with pytest.raises(SumRuleError, match=r"m is also the index of a sum in"):
        _sift(term, k, 1, N, {m: (1, N)})


def test_the_constant_rule_refuses_an_unknown_length():
    # reduce_sums refuses such limits earlier ("reversed limits"); the rule's
    # own guard is reached only when called directly
    lo = Symbol("lo", integer=True)
    with pytest.raises(SumRuleError, match=r"cannot sum a constant over k in \[lo, N\]: the "
                                           r"number of terms N - lo \+ 1 is not known to be >= 0"):
        _sum_product(c, k, lo, N, {})
    assert _sum_product(c, k, 1, N, {}) == c * N


def test_the_reserved_name_guard_of_a_single_sum():
    # a free kappa_1 in a summand could be captured when k is renamed kappa_1
    with pytest.raises(SumRuleError, match=r"^kappa_1 is reserved for the canonical"):
        reduce_sums(Sum(f(x[k] * K1), (k, 1, N)))


def test_limits_that_depend_on_the_sums_own_indices_are_refused():
    with pytest.raises(SumRuleError, match=r"the limits of .* depend on its own indices"):
        reduce_sums(Sum(x[k] * x[m], (k, 1, m), (m, 1, N)))
    with pytest.raises(SumRuleError, match=r"depend on its own indices"):
        reduce_sums(Sum(x[k] * x[m], (k, m, N), (m, 1, N)))


def test_reversed_limits_message_names_the_convention():
    with pytest.raises(SumRuleError, match=r"the sum over k in \[N, 1\] may have reversed limits "
                                           r"\(hi - lo \+ 1 is not known to be >= 0\), where "
                                           r"SymPy's convention is Karr's and the rules do not "
                                           r"apply"):
        reduce_sums(Sum(x[k], (k, N, 1)))


@pytest.mark.parametrize("ranges", [{"j": (1, N)}, {j: (1, N, 2)}, {j: (1,)}])
def test_ranges_must_map_symbols_to_pairs(ranges):
    with pytest.raises(TypeError, match=r"ranges must map index symbols to \(lower, upper\); got"):
        reduce_sums(Sum(x[k], (k, 1, N)), ranges)


def test_non_sympy_input_names_its_type():
    with pytest.raises(TypeError, match="expr must be a SymPy expression, got str"):
        reduce_sums("x")


def test_every_misused_reserved_name_is_listed():
    # kappa_1 bound by its own sum is the canonical form (reduce_sums' output is
    # accepted again); the free kappa_2 and kappa_3 could be captured
    expr = Sum(x[K1] * x[K2] * x[Symbol("kappa_3", integer=True)], (K1, 1, N))
    with pytest.raises(SumRuleError, match=r"^kappa_2, kappa_3 is reserved for the canonical "
                                           r"summation index; rename that symbol$"):
        reduce_sums(expr)


def test_moments_to_symbols_replaces_outermost_sums_only():
    inner = Sum(x[K1], (K1, 1, N))
    outer = Sum(x[K2] * Sum(x[K1] * x[K2], (K1, 1, N)), (K2, 1, N))
    expr = 2 * inner + c * outer + inner**2
    plain, moments = moments_to_symbols(expr)
    assert not plain.has(Sum)
    assert sorted(moments.values(), key=sympy.default_sort_key) == sorted(
        [inner, outer], key=sympy.default_sort_key)
    assert plain.xreplace(moments) == expr
    assert len(plain.free_symbols - {c}) == 2
    assert sorted(s.name for s in moments) == ["S0", "S1"]  # readable when printed



def test_a_delta_with_a_range_argument_is_refused_by_name():
    # SymPy's KroneckerDelta takes an optional range; the sifting rule
    # compares two sides only, and failed on unpacking the three arguments
    delta = KroneckerDelta(j, k, (1, N))
    with pytest.raises(SumRuleError, match="range argument is not supported"):
        reduce_sums(Sum(delta * x[k], (k, 1, N)), {j: (1, N)})
    # the same sum written as the rule asks is sifted
    assert reduce_sums(Sum(KroneckerDelta(j, k) * x[k], (k, 1, N)), {j: (1, N)}) == x[j]
