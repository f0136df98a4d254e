"""The sum rule set rule by rule: each rule's edge cases, refusals and their messages."""

import re

import pytest
import sympy
from sympy import Function, IndexedBase, KroneckerDelta, Pow, Sum, Symbol

from bnproof.symbolic import SumRuleError, reduce_sums, vanishes
from bnproof.symbolic._sums import (
    _in_range,
    _interchange,
    _sift,
    _sum_product,
    moments_to_symbols,
)

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


# --- canonical names in deeper nests, and the reserved-name guard


def test_a_sum_of_merged_sums_under_a_product_is_named_by_its_full_depth():
    # the summand over j is a sum (over i) of a product holding a two-limit
    # sum: 3 levels below j, so j is kappa_4 (never a name below kappa_1)
    expr = Sum(x[i, j] * Sum(f(x[i, j] * y[k] * y[m]), (m, 1, N), (k, 1, N)),
               (i, 1, N), (j, 1, N))
    K4 = Symbol("kappa_4", integer=True)
    want = Sum(x[K3, K4] * Sum(f(x[K3, K4] * y[K2] * y[K1]), (K1, 1, N), (K2, 1, N)),
               (K3, 1, N), (K4, 1, N))
    assert reduce_sums(expr) == want


def test_a_free_reserved_name_alone_is_listed():
    # Sum over kappa_2 of a summand with a free kappa_1: kappa_1 is free (could
    # be captured), and kappa_2 is the canonical name of that sum (kappa_1 is
    # taken), so only kappa_1 is listed
    with pytest.raises(SumRuleError, match=r"^kappa_1 is reserved for the canonical"):
        reduce_sums(Sum(x[K2] * K1, (K2, 1, N)))


def test_a_reserved_name_bound_inside_is_skipped_by_the_canonical_name():
    # the inner sum binds kappa_2 where kappa_1 is canonical (listed); the outer
    # one's canonical name is kappa_3, since kappa_2 is bound in its summand
    expr = Sum(x[K3] * Sum(y[K2] * x[K3], (K2, 1, N)), (K3, 1, N))
    with pytest.raises(SumRuleError, match=r"^kappa_2 is reserved for the canonical"):
        reduce_sums(expr)


def test_a_single_sum_over_a_reserved_name_that_is_not_its_canonical_one_is_refused():
    with pytest.raises(SumRuleError, match=r"^kappa_2 is reserved for the canonical"):
        reduce_sums(Sum(x[K2], (K2, 1, N)))


def test_every_misused_bound_reserved_name_is_listed_beside_canonical_sums():
    # the sums are checked one by one whatever their (hash) order: 20
    # expressions with a canonical sum and a misused one each
    for t in range(20):
        a, b = IndexedBase(f"a{t}"), IndexedBase(f"b{t}")
        expr = Sum(a[K1], (K1, 1, N)) + Sum(b[K2], (K2, 1, N))
        with pytest.raises(SumRuleError, match=r"^kappa_2 is reserved"):
            reduce_sums(expr)


# --- sifting: affine offsets, the forms of the delta, and the messages


def test_an_affine_delta_is_sifted_when_the_shifted_range_fits():
    # k + 1 = j with j in [2, N + 1] puts k = j - 1 in [1, N]
    expr = Sum(KroneckerDelta(j, k + 1) * x[k], (k, 1, N))
    assert reduce_sums(expr, {j: (2, N + 1)}) == x[j - 1]
    # k = j + 1 (the index on the other side) with j in [0, N - 1]
    expr = Sum(KroneckerDelta(k, j + 1) * x[k], (k, 1, N))
    assert reduce_sums(expr, {j: (0, N - 1)}) == x[j + 1]
    # the same offsets where the shifted range does not fit are refused
    with pytest.raises(SumRuleError, match=r"the range of j \+ 1 is not known"):
        reduce_sums(expr, {j: (1, N)})


def test_only_a_unit_shift_of_a_declared_index_is_placed_in_a_range():
    # 2 * j lies in [2, 2N] for j in [1, N]; the rule reads j + c only
    jp = Symbol("jp", integer=True, positive=True)
    expr = Sum(KroneckerDelta(2 * jp, k) * x[k], (k, 1, N + jp))
    with pytest.raises(SumRuleError, match=r"the range of 2\*jp is not known"):
        reduce_sums(expr, {jp: (1, N)})


def test_in_range_says_no_for_an_index_not_known_to_be_an_integer():
    a = Symbol("a")
    assert not _in_range(a, 1, N, {a: (1, N)})
    assert _in_range(j, 1, N, {j: (1, N)})


def test_a_delta_of_the_index_with_a_multiple_of_itself_is_refused():
    # KroneckerDelta(k, 2*k) is not k compared with something free of k
    for delta in (KroneckerDelta(k, 2 * k), KroneckerDelta(-k, k)):
        left, right = delta.args
        with pytest.raises(SumRuleError, match=(
                rf"^cannot sift KroneckerDelta\({re.escape(str(left))}, {re.escape(str(right))}"
                r"\) over k: the delta must compare k \(or k plus an integer offset\) with an "
                r"expression free of k$")):
            reduce_sums(Sum(delta * x[k], (k, 1, N)))


def test_a_delta_of_a_multiple_of_the_index_is_refused():
    with pytest.raises(SumRuleError, match=(
            r"^cannot sift KroneckerDelta\(j, 2\*k\) over k: the delta must compare k \(or k "
            r"plus an integer offset\) with an expression free of k$")):
        reduce_sums(Sum(KroneckerDelta(j, 2 * k) * x[k], (k, 1, N)), {j: (1, N)})


def test_sifting_with_a_non_integer_partner_names_the_fix():
    a = Symbol("a")
    with pytest.raises(SumRuleError, match=re.escape(
            "cannot sift KroneckerDelta(a, k) over k: a is not known to be an integer "
            "(KroneckerDelta(a, k) is 0 for every integer k when a is not one); declare it "
            "with integer=True")):
        reduce_sums(Sum(KroneckerDelta(a, k) * x[k], (k, 1, N)), {a: (1, N)})


def test_a_delta_with_a_range_argument_message_shows_the_two_argument_form():
    with pytest.raises(SumRuleError, match=re.escape(
            "cannot sift KroneckerDelta(j, k, (1, N)) over k: a delta with a range argument "
            "is not supported; write KroneckerDelta(j, k) and give the range as the sum's "
            "limits")):
        reduce_sums(Sum(KroneckerDelta(j, k, (1, N)) * x[k], (k, 1, N)), {j: (1, N)})


# --- the index and its limits


def test_an_index_declared_what_its_limits_imply_is_accepted():
    # positive over 1..N, negative (and nonpositive, nonzero) over -N..-1
    kp = Symbol("kp", integer=True, positive=True)
    kn = Symbol("kn", integer=True, negative=True)
    assert reduce_sums(Sum(x[kp], (kp, 1, N))) == Sum(x[K1], (K1, 1, N))
    assert reduce_sums(Sum(x[kn], (kn, -N, -1))) == Sum(x[K1], (K1, -N, -1))


@pytest.mark.parametrize("index, fact", [
    (Symbol("kp", integer=True, positive=True), "positive"),
    (Symbol("kn", integer=True, negative=True), "negative"),
    (Symbol("kr", integer=False), "not an integer"),
])
def test_an_index_declared_what_its_limits_do_not_imply_is_refused(index, fact):
    # -2..-1 is not positive; 1..N is not negative; a non-integer takes no integer value
    lo, hi = (1, N) if fact == "negative" else (-2, -1)
    with pytest.raises(SumRuleError, match=re.escape(
            f"the index {index} of a sum over [{lo}, {hi}] is declared {fact}, which its "
            "limits do not imply (it takes every integer value lo..hi); declare it with "
            "integer=True only")):
        reduce_sums(Sum(x[index], (index, lo, hi)))


@pytest.mark.parametrize("limits", [(1, N / 2), (N / 2, N)])
def test_a_limit_not_known_to_be_an_integer_is_refused(limits):
    lo, hi = limits
    with pytest.raises(SumRuleError, match=re.escape(
            f"the sum over k in [{lo}, {hi}] has a limit not known to be an integer (the "
            "rules count and sift over the integers lo..hi); declare the sizes with "
            "integer=True")):
        reduce_sums(Sum(x[k], (k, lo, hi)))


# --- rule 6: interchange


D = Symbol("D", integer=True, positive=True)
w = IndexedBase("w", real=True)
U = IndexedBase("U", real=True)
g = IndexedBase("g", real=True)


def test_a_sum_over_the_features_moves_inside_the_sum_over_the_samples():
    # sum_k w[k] sum_n U[n, k] g[n] = sum_n g[n] sum_k U[n, k] w[k] (finite
    # sums commute); (1, D) sorts before (1, N)
    expr = Sum(w[k] * Sum(U[n, k] * g[n], (n, 1, N)), (k, 1, D))
    want = Sum(g[K2] * Sum(U[K2, K1] * w[K1], (K1, 1, D)), (K2, 1, N))
    reduced = reduce_sums(expr)
    assert reduced == want
    values = {w[t]: sympy.Rational(t, 3) for t in range(1, 4)}
    values |= {g[t]: sympy.Rational(2 - t, 5) for t in range(1, 3)}
    values |= {U[s, t]: sympy.Rational(s + 2 * t, 7) for s in range(1, 3) for t in range(1, 4)}
    sizes = {N: 2, D: 3}
    assert (expr.subs(sizes).doit().subs(values) == reduced.subs(sizes).doit().subs(values)
            != 0)


def test_a_sum_over_the_samples_stays_outside_the_sum_over_the_features():
    # the fixed order: (1, N) does not sort before (1, D), so no swap back
    expr = Sum(g[n] * Sum(U[n, k] * w[k], (k, 1, D)), (n, 1, N))
    assert reduce_sums(expr) == Sum(g[K2] * Sum(U[K2, K1] * w[K1], (K1, 1, D)), (K2, 1, N))


def test_two_nested_sums_with_nothing_else_keep_their_order():
    # no factor c(k) to carry inside: the interchange is not applied
    expr = Sum(Sum(U[n, k], (n, 1, N)), (k, 1, D))
    assert reduce_sums(expr) == Sum(U[K1, K2], (K1, 1, N), (K2, 1, D))


def test_no_interchange_when_the_inner_limits_depend_on_the_outer_index():
    # a triangular sum is not rectangular: q runs over [k, k + 2] or [1, kp]
    assert reduce_sums(Sum(w[k] * Sum(g[n], (n, k, k + 2)), (k, 1, D))) == Sum(
        w[K2] * Sum(g[K1], (K1, K2, K2 + 2)), (K2, 1, D))
    kp = Symbol("kp", integer=True, positive=True)
    assert reduce_sums(Sum(w[kp] * Sum(g[n], (n, 1, kp)), (kp, 1, D))) == Sum(
        w[K2] * Sum(g[K1], (K1, 1, K2)), (K2, 1, D))


def test_no_interchange_when_another_factor_holds_a_sum():
    inner = Sum(U[n, k] * g[n], (n, 1, N))
    reduced = reduce_sums(Sum(w[k] * inner * f(inner), (k, 1, D)))
    assert reduced.limits[0][1:] == (1, D)  # the outer sum is still the one over D


def test_interchange_guards_one_by_one():
    # called directly: the inner index free in the other factors (capture), an
    # inner sum of reversed limits (Karr), and the swap when nothing stops it
    assert _interchange([x[k] * y[m], Sum(U[m, k], (m, 1, N))], k, 1, D, {}) is None
    assert _interchange([x[k], Sum(U[m, k], (m, 3, 1))], k, 1, D, {}) is None
    assert _interchange([x[k], Sum(U[m, k], (m, 1, N))], k, 1, D, {}) == Sum(
        Sum(U[K2, K1] * x[K1], (K1, 1, D)), (K2, 1, N))


def test_a_delta_with_the_index_negated_is_sifted():
    # 2 = 3 - k at k = 1 (2 - (3 - k) = k - 1: the index with coefficient +1)
    assert KroneckerDelta(2, 3 - k).args == (2, 3 - k)
    assert reduce_sums(Sum(KroneckerDelta(2, 3 - k) * x[k], (k, 1, 3))) == x[1]
    assert reduce_sums(Sum(KroneckerDelta(2, 3 - k) * x[k], (k, 2, 3))) == 0
