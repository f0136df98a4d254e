"""Five ways the prover once said too much; each must now come out right."""

import pytest
import sympy
from sympy import IndexedBase, KroneckerDelta, Sum, Symbol

from bnproof.symbolic import SumRuleError, reduce_sums, vanishes
from bnproof.symbolic._engine import Identity, Nonzero, establish

N = Symbol("N", integer=True, positive=True)
k = Symbol("k", integer=True)
x = IndexedBase("x", real=True)


def test_sifting_needs_an_integer_index():
    # KroneckerDelta(q, k) is 0 for every integer k when q = 3/2, so the sum
    # is 0 there, not x[q]; a declared range alone does not make q an integer
    q = Symbol("q")
    expr = Sum(KroneckerDelta(q, k) * x[k], (k, 1, N))
    with pytest.raises(SumRuleError, match="not known to be an integer"):
        reduce_sums(expr, {q: (1, N)})
    assert expr.subs({q: sympy.Rational(3, 2), N: 3}).doit() == 0
    qi = Symbol("q", integer=True)  # the integer version still sifts
    assert reduce_sums(Sum(KroneckerDelta(qi, k) * x[k], (k, 1, N)), {qi: (1, N)}) == x[qi]


def _depends_on_the_index(batch, idx):
    i = idx["i"]
    return [Identity(Symbol("z"), (i - 1) * (i - batch.size) * batch.item(x, 1), 0, {})]


def test_concrete_checks_cover_every_index_value():
    # zero at i = 1 and i = N only: checking those two values "proved" it
    proof = establish("index-dependent", _depends_on_the_index, free=("i",), n_max=3,
                      symbolic=False)
    assert proof.verdict == "refuted"
    assert "N = 3" in proof.reason and "i = 2" in proof.reason


def test_a_false_symmetry_declaration_is_refuted_not_trusted():
    proof = establish("index-dependent", _depends_on_the_index, free=("i",), n_max=5,
                      symbolic=False, symmetric=True)
    assert proof.verdict == "refuted"


def _three_indices(batch, idx):
    a, b, c = idx["a"], idx["b"], idx["c"]
    item = lambda t: batch.item(x, t)  # noqa: E731
    return [Identity(Symbol("z"), item(a) + item(b) + item(c), item(c) + item(a) + item(b), {})]


def test_three_free_indices_are_refused_clearly_or_checked_concretely():
    with pytest.raises(ValueError, match="at most 2 free indices"):
        establish("three", _three_indices, free=("a", "b", "c"), n_max=2)
    proof = establish("three", _three_indices, free=("a", "b", "c"), n_max=3, symbolic=False)
    assert proof.verdict == "proved"


def test_reduced_sums_can_be_reduced_again():
    expr = Sum(x[k] ** 2, (k, 1, N)) - Sum(x[k], (k, 1, N)) ** 2 / N
    reduced = reduce_sums(expr)
    assert reduce_sums(reduced) == reduced
    assert vanishes(reduced - expr).is_zero
    assert not vanishes(reduced).is_zero  # N var is not identically 0


def _only_nonzero(batch, idx):
    return [Nonzero(Symbol("z"), batch.item(x, 1) - batch.item(x, 1))]


def test_a_refutation_is_not_reported_as_a_symbolic_n_proof():
    proof = establish("only-nonzero", _only_nonzero, n_max=2)
    assert proof.verdict == "refuted"
    assert proof.symbolic_n is False


def test_the_cheap_first_test_refutes_before_the_symbolic_route():
    from bnproof.symbolic import SymbolicBatch

    calls = {"symbolic": 0}

    def build(batch, idx):
        if isinstance(batch, SymbolicBatch):
            calls["symbolic"] += 1
        return [Identity(Symbol("z"), batch.item(x, idx["i"]) ** 2, batch.item(x, idx["i"]), {})]

    proof = establish("x-squared-is-x", build, free=("i",), n_max=8)
    assert proof.verdict == "refuted" and proof.reason.startswith("counterexample: N = 2")
    assert calls["symbolic"] == 0  # the expensive routes never ran
    assert proof.methods == ("rationals-N=2..3",)


def test_multi_index_items_have_readable_distinct_names():
    from bnproof.symbolic import ConcreteBatch

    batch = ConcreteBatch(3)
    assert batch.item(x, (2, 3)).name == "x_{2,3}"
    assert batch.item(x, (2, 3)) != batch.item(x, (3, 2))
    assert batch.item(x, 2).name == "x_2"


# A Nonzero must not vanish at any N or index value: one witness somewhere
# used to satisfy it everywhere (found by an adversarial review).
def _nonzero_only_at_n2(batch, idx):
    t = Symbol("t", integer=True)
    return [Nonzero(Symbol("r"), 1 - batch.total(lambda q: KroneckerDelta(q, 3), t))]


def _nonzero_except_on_the_diagonal(batch, idx):
    return [Nonzero(Symbol("d"), batch.item(x, idx["i"]) - batch.item(x, idx["j"]))]


def test_a_nonzero_needs_a_witness_at_every_n():
    # 1 at N = 2, identically 0 from N = 3 on
    proof = establish("nonzero-only-at-n2", _nonzero_only_at_n2, n_max=4)
    assert proof.verdict == "unproved" and not proof.symbolic_n
    assert "witness" in proof.reason


def test_a_nonzero_needs_a_witness_at_every_index_tuple():
    # x_i - x_j is identically 0 at i = j
    proof = establish("nonzero-off-diagonal", _nonzero_except_on_the_diagonal, free=("i", "j"),
                      n_max=3)
    assert proof.verdict == "unproved" and not proof.symbolic_n


def test_a_plain_number_from_a_builder_is_accepted():
    proof = establish("two", lambda batch, idx: [Identity(Symbol("z"), 2, 2, {})], n_max=2)
    assert proof.verdict == "proved"
