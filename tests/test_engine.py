"""What the two-way checker records: its verdicts, steps, checks and reasons.

Small claims built here (not the catalogue) so that each route of
:func:`bnproof.symbolic._engine.establish` is seen on its own: the cheap
first test, the symbolic route, the full expansion, the exact rationals and
the witnesses of a :class:`Nonzero`, each saying yes and no.
"""

import random
import re

import pytest
import sympy

from bnproof.symbolic import Check, Step
from bnproof.symbolic._engine import (
    _DENOMINATORS,
    _NUMERIC_ZERO,
    FULL_INDEX_N,
    Identity,
    Nonzero,
    _concrete_indices,
    _evaluate,
    _point_text,
    _random_value,
    _representatives,
    _where,
    establish,
)
from bnproof.symbolic._models import ConcreteBatch, SymbolicBatch, eps, i, x
from bnproof.symbolic._sums import reduce_sums

z = sympy.Symbol("z")
w = sympy.Symbol("w")
k = sympy.Symbol("k", integer=True)
#: A label SymPy knows to be positive: an equation between it and 0 (or a
#: negative value) would evaluate to False unless it is kept unevaluated.
s_pos = sympy.Symbol("s", positive=True)

SCREEN_TITLE = "Counterexample (exact rationals, the cheap first test)"
ZERO_NOTE = ("lhs - rhs is the zero rational function once the moments are symbols and "
             "each square root r satisfies r**2 = R")


def _ranges(batch):
    return dict(batch.ranges) if batch.symbolic else {}


def _mean(batch):
    return batch.total(lambda t: batch.item(x, t), k) / batch.size


def _centred_total(batch):
    """The sum of x_k - mean over the batch: 0 for every N, through the sum rules."""
    mean = _mean(batch)
    return batch.total(lambda t: batch.item(x, t) - mean, k)


def _methods(n_max, symbolic=True):
    out = ["symbolic-N"] if symbolic else []
    return [*out, *(f"{m}-N={n}" for n in range(2, n_max + 1) for m in ("expand", "rationals"))]


def _point(note):
    """Parse ``N = 2, x_1 = -2, x_2 = 1/3`` into ``{"x_1": -2, ...}`` (without N)."""
    pairs = [p.split(" = ") for p in note.split(", ")]
    return {name: sympy.Rational(value) for name, value in pairs if name != "N"}


def _at(expr, values):
    return expr.xreplace({s: values[s.name] for s in expr.free_symbols})


def _recorder(items):
    """A builder returning ``items(batch, indices)`` that records every call."""
    calls = []

    def build(batch, indices):
        calls.append((batch.size if not batch.symbolic else "N", dict(indices)))
        return items(batch, indices)

    return build, calls


# ---- a proof: every step and check, in order ------------------------------- #


def _centred_claim(batch, idx):
    i = idx["i"]
    return [
        Identity(z, _centred_total(batch), 0, _ranges(batch)),
        Identity(w, batch.item(x, i) ** 2 - 1, (batch.item(x, i) - 1) * (batch.item(x, i) + 1)),
        Nonzero(sympy.Symbol("m"), batch.item(x, i) - _mean(batch) + 1),
    ]


def test_a_proof_records_every_step_and_check_in_order():
    n_max = 3
    proof = establish("centred", _centred_claim, free=("i",), n_max=n_max)
    assert proof.claim_id == "centred"
    assert proof.verdict == "proved" and proof.reason == ""
    assert proof.symbolic_n is True
    assert proof.methods == ("symbolic-N", "expand-N=2..3", "rationals-N=2..3")
    assert 0 < proof.seconds < 60
    assert list(proof.checks) == [
        Check("symbolic-N", True, "every identity reduced to 0"),
        *(Check(m, True, "") for m in _methods(n_max, symbolic=False)),
    ]
    items = _centred_claim(SymbolicBatch(), {"i": i})
    centred, square, nonzero = items
    titles = [s.title for s in proof.steps]
    assert titles == [
        "Derive",
        "Apply the sum rules (linearity, constants, sifting of KroneckerDelta over "
        "declared ranges)",
        "Exact zero test of the difference",
        "Derive",  # no sum here, so no sum-rule step
        "Exact zero test of the difference",
        "Derive",
        "Reduced form (not identically zero; a witness follows)",
        "Witness: an exact nonzero value",
    ]
    steps = proof.steps
    for step in steps:
        assert isinstance(step.expr, sympy.Eq)
    assert steps[0].expr.args == (z, centred.lhs) and steps[0].note == ""
    assert steps[1].expr.args == (z, reduce_sums(centred.lhs, centred.ranges))
    assert steps[1].expr.rhs == 0
    assert steps[2].expr.args == (z, 0) and steps[2].note == ZERO_NOTE
    assert steps[3].expr.args == (w, square.lhs)
    assert steps[4].expr.args == (w, square.rhs) and steps[4].note == ZERO_NOTE
    assert steps[5].expr.args == (nonzero.label, nonzero.expr)
    reduced = steps[6].expr
    assert reduced.lhs == nonzero.label and reduced.rhs != 0
    # the reduced form is the nonzero's value, rewritten
    assert sympy.simplify(reduce_sums(reduced.rhs - nonzero.expr, _ranges(SymbolicBatch()))) == 0
    witness = steps[7]
    assert witness.note.startswith("N = 2, x_1 = ")
    values = _point(witness.note)
    assert set(values) == {"x_1", "x_2"}
    # the value shown is the nonzero's value at the point shown (N = 2, i = 1)
    concrete = _centred_claim(ConcreteBatch(2), {"i": 1})[2].expr
    assert witness.expr.lhs == sympy.Symbol("m")
    assert witness.expr.rhs == _at(concrete, values) != 0


def test_the_builder_sees_every_index_up_to_n_max_and_no_further():
    build, calls = _recorder(lambda batch, idx: [Identity(z, batch.item(x, idx["i"]) * 0, 0)])
    establish("calls", build, free=("i",), n_max=4)
    symbolic = [c for c in calls if c[0] == "N"]
    assert len(symbolic) == 1 and str(symbolic[0][1]["i"]) == "i"
    concrete = sorted({(n, idx["i"]) for n, idx in calls if n != "N"})
    assert concrete == [(n, v) for n in range(2, 5) for v in range(1, n + 1)]


def test_symmetric_claims_check_one_index_per_orbit_beyond_full_index_n():
    def items(batch, idx):
        return [Identity(z, batch.item(x, idx["i"]) + batch.item(x, idx["j"]),
                         batch.item(x, idx["j"]) + batch.item(x, idx["i"]))]

    build, calls = _recorder(items)
    establish("sym", build, free=("i", "j"), n_max=FULL_INDEX_N + 1, symmetric=True)
    seen = {n: [(c["i"], c["j"]) for m, c in calls if m == n] for n in range(2, 5)}
    assert set(seen[FULL_INDEX_N]) == {(a, b) for a in range(1, 4) for b in range(1, 4)}
    # beyond FULL_INDEX_N: i = j and i != j, once each, by the last check
    assert seen[FULL_INDEX_N + 1][-2:] == [(1, 1), (1, 2)]
    assert (4, 3) not in seen[FULL_INDEX_N + 1]

    build, calls = _recorder(items)  # the default: every index tuple at every N
    establish("sym", build, free=("i", "j"), n_max=FULL_INDEX_N + 1)
    assert (4, 3) in [(c["i"], c["j"]) for m, c in calls if m == FULL_INDEX_N + 1]


def test_defaults_are_the_symbolic_route_and_n_max_8():
    build, calls = _recorder(lambda batch, idx: [Identity(z, batch.size - batch.size, 0)])
    proof = establish("defaults", build)
    assert proof.methods == ("symbolic-N", "expand-N=2..8", "rationals-N=2..8")
    assert [c.method for c in proof.checks] == _methods(8)
    assert max(n for n, _ in calls if n != "N") == 8


def test_a_proof_is_reproducible():
    first = establish("centred", _centred_claim, free=("i",), n_max=2)
    second = establish("centred", _centred_claim, free=("i",), n_max=2)
    assert first.steps == second.steps and first.checks == second.checks
    a = establish("late-false", _false_at_4, free=("i",), n_max=4)
    b = establish("late-false", _false_at_4, free=("i",), n_max=4)
    assert a.reason == b.reason


def test_the_preamble_comes_first():
    preamble = (Step("Definitions", sympy.Eq(w, 1)),)
    proof = establish("pre", _centred_claim, free=("i",), n_max=2, preamble=preamble)
    assert proof.steps[0] == preamble[0] and proof.steps[1].title == "Derive"
    refuted = establish("pre-no", lambda b, i: [Identity(z, b.item(x, 1), 0)], n_max=2,
                        preamble=preamble)
    assert refuted.steps[0] == preamble[0] and refuted.steps[1].title == SCREEN_TITLE


def test_without_the_symbolic_route_a_proof_does_not_cover_symbolic_n():
    build, calls = _recorder(_centred_claim)
    proof = establish("concrete-only", build, free=("i",), n_max=2, symbolic=False)
    assert proof.verdict == "proved"
    assert proof.symbolic_n is False
    assert proof.methods == ("expand-N=2..2", "rationals-N=2..2")
    assert all(n != "N" for n, _ in calls)


# ---- steps stay equations as written ---------------------------------------- #


def _positive_label_claim(batch, idx):
    v = batch.item(x, idx["i"])
    negative = -(v**2) - 1
    return [
        Identity(s_pos, negative + _centred_total(batch), negative, _ranges(batch)),
        Identity(s_pos, negative, -1 - v**2),
        Nonzero(s_pos, negative),
    ]


def test_steps_keep_their_equations_unevaluated():
    # the label is positive and the sides are 0 or negative: evaluated, each
    # equation would be False; the report must show it as written
    proof = establish("positive", _positive_label_claim, free=("i",), n_max=2)
    assert proof.verdict == "proved"
    assert len(proof.steps) == 8
    for step in proof.steps:
        assert isinstance(step.expr, sympy.Eq), step
        assert step.expr.lhs == s_pos
    witness = proof.steps[-1]
    assert witness.expr.rhs < 0


# ---- the cheap first test --------------------------------------------------- #


def test_a_false_claim_is_refuted_by_the_cheap_first_test():
    def build(batch, idx):
        v = batch.item(x, idx["i"])
        return [Nonzero(w, v**2 + 1), Identity(z, v**2 + 1, 1 - v**2 + 1)]

    proof = establish("cheap", build, free=("i",), n_max=5)
    assert proof.verdict == "refuted" and proof.symbolic_n is False
    assert proof.methods == ("rationals-N=2..3",)
    (check,) = proof.checks
    text = check.detail
    assert check == Check("rationals-N=2", False, text)
    assert proof.reason == f"counterexample: {text}"
    assert proof.steps == (Step(SCREEN_TITLE, None, text),)
    assert 0 < proof.seconds < 60
    match = re.fullmatch(r"N = 2, i = 1: z - \(2 - x_1\*\*2\) = (\S+), at (x_1 = \S+)", text)
    assert match, text
    value = _point("N = 2, " + match[2])["x_1"]
    assert float(match[1]) == pytest.approx(float(2 * value**2 - 1), rel=1e-5)


def test_the_cheap_first_test_stays_within_n_max():
    proof = establish("cheap-2", lambda b, i: [Identity(z, b.item(x, 1), 0)], n_max=2)
    assert proof.methods == ("rationals-N=2..2",)
    assert proof.reason.startswith("counterexample: N = 2, any index: z = ")
    assert ", not 0, at x_1 = " in proof.reason
    constant = establish("cheap-1", lambda b, i: [Identity(z, 1, 0)], n_max=2)
    assert constant.reason == "counterexample: N = 2, any index: z = 1, not 0"

    def false_at_3(batch, idx):
        return [Identity(z, (batch.size - 2) * batch.item(x, 1), 0)]

    build, calls = _recorder(false_at_3)
    proof = establish("cheap-3", build, n_max=2, symbolic=False)
    assert {n for n, _ in calls} == {2}
    assert proof.verdict == "proved"  # checked at N = 2 only, as asked
    proof = establish("cheap-3", false_at_3, n_max=3)
    assert proof.methods == ("rationals-N=2..3",)
    assert proof.reason.startswith("counterexample: N = 3, any index: z = ")


def _product_is_one(batch, idx):
    return [Identity(z, batch.item(x, 1) * batch.item(x, 2), 1)]


def test_the_cheap_first_test_is_reproducible():
    # its points come from the claim's id (a stream of its own): the same
    # claim gives the same counterexample in every run, so a report can be
    # checked by hand from the point it prints
    proof = establish("golden-screen", _product_is_one, n_max=3)
    assert proof.reason == "counterexample: N = 2, any index: z - (1) = 1, at x_1 = -2, x_2 = -1"
    again = establish("golden-screen", _product_is_one, n_max=3)
    assert (again.steps, again.checks) == (proof.steps, proof.checks)


def test_a_refused_identity_does_not_stop_the_cheap_first_test():
    def build(batch, idx):
        refused = sympy.Sum(batch.item(x, 1) * k, (k, 3, 1))  # reversed limits
        return [Identity(w, refused, 0), Identity(z, batch.item(x, 1), 0)]

    proof = establish("cheap-refused", build, n_max=4)
    assert proof.methods == ("rationals-N=2..3",)
    assert proof.reason.startswith("counterexample: N = 2, any index: z = ")


# ---- refutations beyond the cheap first test -------------------------------- #


def _false_at_4(batch, idx):
    """False at N = 4 (every i) only: the cheap first test (N <= 3) passes it."""
    n, v = batch.size, batch.item(x, idx["i"])
    return [Identity(z, (n - 2) * (n - 3) * v**2, 0), Identity(w, (n - 2) * (n - 3) + v, v)]


def test_a_counterexample_at_a_larger_n_refutes():
    proof = establish("late-false", _false_at_4, free=("i",), n_max=4)
    assert proof.verdict == "refuted" and proof.symbolic_n is False
    assert proof.methods == ("symbolic-N", "expand-N=2..4", "rationals-N=2..4")
    checks = {c.method: c for c in proof.checks}
    assert [c.method for c in proof.checks] == _methods(4)
    assert all(checks[m].passed for m in _methods(3)[1:])
    assert checks["symbolic-N"].passed is False
    assert checks["expand-N=4"].passed is False and checks["rationals-N=4"].passed is False
    # the first counterexample, at N = 4 and i = 1, is the reason
    match = re.fullmatch(r"counterexample: N = 4, i = 1: z = (\S+), not 0, at x_1 = (\S+)",
                         proof.reason)
    assert match, proof.reason
    assert float(match[1]) == pytest.approx(float(2 * sympy.Rational(match[2]) ** 2), rel=1e-5)
    # each check names its first two failures (four index values fail)
    assert checks["expand-N=4"].detail == "z at i = 1: expansion not 0; w at i = 1: expansion not 0"
    rationals = checks["rationals-N=4"].detail.split("; ")
    assert len(rationals) == 2
    assert rationals[0] == proof.reason.removeprefix("counterexample: ")
    assert rationals[1] == "N = 4, i = 1: w - (x_1) = 2"  # no symbols left: no point


def test_the_symbolic_route_names_every_identity_it_did_not_reduce():
    proof = establish("late-false", _false_at_4, free=("i",), n_max=4)
    check = proof.checks[0]
    assert check == Check("symbolic-N", False,
                          "z: symbolic reduction left a residual; "
                          "w: symbolic reduction left a residual")
    residuals = [s for s in proof.steps
                 if s.title == "Residual that the reduction did not bring to zero"]
    assert [s.expr.lhs for s in residuals] == [z, w - x[sympy.Symbol("i", integer=True)]]
    assert all(s.expr.rhs != 0 for s in residuals)


def test_an_identity_only_the_symbolic_route_gets_wrong_is_unproved():
    def build(batch, idx):
        return [Identity(s_pos, -1 - batch.size if batch.symbolic else 0, 0)]

    proof = establish("symbolic-only", build, n_max=2)
    assert proof.verdict == "unproved"
    assert proof.reason == ("SymPy did not reduce it for symbolic N: s: symbolic reduction "
                            "left a residual")
    assert proof.symbolic_n is False
    residual = [s for s in proof.steps if s.title.startswith("Residual")]
    # kept as written: evaluated, s = -N - 1 would be False (s > 0)
    assert isinstance(residual[0].expr, sympy.Eq)
    assert residual[0].expr.args == (s_pos, -sympy.Symbol("N", integer=True, positive=True) - 1)


def test_a_refusal_alone_fails_the_symbolic_route():
    def build(batch, idx):
        return [Identity(w, sympy.Sum(batch.item(x, 1) * k, (k, 3, 1)), 0)]  # reversed limits

    check = establish("refused", build, n_max=2).checks[0]
    assert check.method == "symbolic-N" and check.passed is False
    assert check.detail.startswith("w: the sum rules refused (")


def test_refusals_are_all_listed_and_the_route_fails():
    def build(batch, idx):
        refused = sympy.Sum(batch.item(x, 1) * k, (k, 3, 1))  # reversed limits
        return [Identity(w, refused, 0), Identity(z, batch.size - 2 if batch.symbolic else 0, 0)]

    proof = establish("refused-then-residual", build, n_max=2)
    assert proof.checks[0].passed is False
    assert proof.reason.startswith("SymPy did not reduce it for symbolic N: w: the sum rules "
                                   "refused (")
    assert proof.reason.endswith("; z: symbolic reduction left a residual")


def test_a_refused_identity_is_unproved_without_the_symbolic_route():
    def build(batch, idx):
        refused = sympy.Sum(batch.item(x, 1) * k, (k, 3, 1))  # reversed limits
        return [Identity(w, refused, 0), Identity(z, batch.item(x, 1), 0 + batch.item(x, 1))]

    proof = establish("refused-concrete", build, n_max=2, symbolic=False)
    assert proof.verdict == "unproved"
    (expand, rationals) = proof.checks
    assert expand.passed is False and rationals.passed is False
    assert expand.detail.startswith("w at any index: the sum rules refused (")


def test_a_refused_identity_does_not_hide_a_later_counterexample():
    def build(batch, idx):
        refused = sympy.Sum(batch.item(x, 1) * k, (k, 3, 1))  # reversed limits
        return [Identity(w, refused, 0), *_false_at_4(batch, idx)[:1]]

    proof = establish("refused-then-false", build, free=("i",), n_max=4, symbolic=False)
    assert proof.verdict == "refuted"
    assert proof.reason.startswith("counterexample: N = 4, i = 1: z = ")


def test_an_expansion_that_does_not_reach_zero_is_unproved():
    # sqrt(2) sqrt(3) - sqrt(6): 0, but the reduction takes the roots as independent
    r2, r3, r6 = (sympy.sqrt(v, evaluate=False) for v in (2, 3, 6))

    def build(batch, idx):
        if batch.size == 2:
            return [Identity(z, sympy.Mul(r2, r3, evaluate=False), r6)]
        return [Identity(z, batch.item(x, 1), batch.item(x, 1))]

    proof = establish("roots", build, n_max=3, symbolic=False)
    assert proof.verdict == "unproved"
    assert proof.reason == "full expansion at a concrete N did not reach 0"
    checks = {c.method: c for c in proof.checks}
    assert checks["expand-N=2"] == Check("expand-N=2", False, "z at any index: expansion not 0")
    assert checks["rationals-N=2"] == Check("rationals-N=2", True, "")
    assert checks["expand-N=3"].passed  # the last N passes: the first failure still counts


def test_an_identity_undefined_at_every_point_is_not_a_counterexample():
    def build(batch, idx):
        return [Identity(z, sympy.sqrt(-1 - batch.item(x, 1) ** 2), 0)]  # never real

    proof = establish("never-real", build, n_max=2, symbolic=False)
    assert proof.verdict == "unproved"
    checks = {c.method: c for c in proof.checks}
    assert checks["rationals-N=2"] == Check(
        "rationals-N=2", False, "z at any index: undefined at every point drawn")


# ---- nonzeros and their witnesses ------------------------------------------- #


def test_a_witness_is_shown_once_per_nonzero_at_n_2_with_the_imposed_values():
    q = sympy.Symbol("q")

    def build(batch, idx):
        total = batch.total(lambda t: batch.item(x, t) ** 2, k)
        return [Nonzero(q * eps, total + eps, {eps: sympy.Rational(1, 2)}),
                Nonzero(w, batch.size + 1)]  # a plain number at concrete N

    proof = establish("witness", build, n_max=3)
    assert proof.verdict == "proved" and proof.symbolic_n is True
    witnesses = [s for s in proof.steps if s.title == "Witness: an exact nonzero value"]
    assert len(witnesses) == 2
    first, second = witnesses
    assert first.expr.lhs == q / 2  # the label with the imposed value
    assert re.fullmatch(r"N = 2, epsilon = 1/2, x_1 = \S+, x_2 = \S+", first.note), first.note
    values = _point(first.note)
    assert values["epsilon"] == sympy.Rational(1, 2)
    expr = build(ConcreteBatch(2), {})[0].expr
    assert first.expr.rhs == _at(expr, values)
    assert second.expr.args == (w, 3) and second.note == "N = 2"
    assert [c.passed for c in proof.checks] == [True] * 5


def test_a_nonzero_never_real_has_no_witness():
    def build(batch, idx):
        return [Nonzero(z, sympy.sqrt(-1 - batch.item(x, 1) ** 2))]

    proof = establish("never-real-nonzero", build, n_max=2, symbolic=False)
    assert proof.verdict == "unproved"
    assert proof.reason == ("no exact nonzero witness was found for an expression that must "
                            "not vanish")


def test_a_witness_is_owed_at_every_n():
    def build(batch, idx):
        # nonzero at N = 2, identically 0 at N = 3
        return [Nonzero(z, (batch.size - 3) * batch.item(x, 1))]

    assert establish("owed-3", build, n_max=2, symbolic=False).verdict == "proved"
    assert establish("owed-3", build, n_max=3, symbolic=False).verdict == "unproved"


def test_an_identically_zero_nonzero_is_refuted_with_its_reason():
    def build(batch, idx):
        return [Nonzero(s_pos, _centred_total(batch))]

    proof = establish("zero-nonzero", build, n_max=2)
    assert proof.verdict == "refuted" and proof.symbolic_n is False
    assert proof.reason == ("counterexample: s is identically 0 for symbolic N (exact zero "
                            "test), so it cannot be nonzero")
    step = proof.steps[1]
    assert step.title == "Exact zero test: identically zero, not the nonzero it must be"
    assert isinstance(step.expr, sympy.Eq) and step.expr.args == (s_pos, 0)


def test_a_nonzero_the_sum_rules_refuse_leaves_a_gap_in_symbolic_n():
    def build(batch, idx):
        # the delta's index has no declared range in a Nonzero: the sum rules refuse
        delta = batch.total(lambda t: sympy.KroneckerDelta(idx["i"], t) * batch.item(x, t), k)
        return [Identity(z, _centred_total(batch), 0, _ranges(batch)),
                Nonzero(w, delta**2 + 1), Identity(z, batch.item(x, 1), batch.item(x, 1))]

    proof = establish("gap", build, free=("i",), n_max=2)
    assert proof.verdict == "proved"
    assert proof.symbolic_n is False  # proved at N = 2 only, not for symbolic N
    assert proof.checks[0] == Check("symbolic-N", True, "every identity reduced to 0")
    titles = [s.title for s in proof.steps]
    assert titles.count("Exact zero test of the difference") == 2  # past the refusal


# ---- the argument checks ---------------------------------------------------- #


def test_free_indices_are_checked():
    build = _centred_claim
    with pytest.raises(ValueError, match=r"free must be distinct index names \(str\), "
                                         r"got \('i', 'i'\)"):
        establish("bad", build, free=("i", "i"))
    with pytest.raises(ValueError, match="free must be distinct index names"):
        establish("bad", build, free=(1,))
    with pytest.raises(ValueError, match=r"at most 2 free indices \(i, j\), got 3: i, j, m; "
                                         r"pass symbolic=False to check every index value "
                                         r"at concrete N only"):
        establish("bad", build, free=("i", "j", "m"))
    # two free indices are allowed on the symbolic route, three without it
    two = establish("two", lambda b, idx: [Identity(z, b.item(x, idx["j"]), b.item(x, idx["j"]))],
                    free=("i", "j"), n_max=2)
    assert two.verdict == "proved"
    three = establish("three", lambda b, idx: [Identity(z, b.item(x, idx["m"]) * 0, 0)],
                      free=("i", "j", "m"), n_max=2, symbolic=False)
    assert three.verdict == "proved"


def test_builders_may_return_plain_numbers():
    identity = Identity(z, 1, 2)
    assert isinstance(identity.lhs, sympy.Integer) and identity.lhs == 1
    assert isinstance(identity.rhs, sympy.Integer) and identity.rhs == 2
    assert isinstance(Nonzero(z, 3).expr, sympy.Integer)


# ---- the pieces -------------------------------------------------------------- #


def test_representatives_are_one_index_tuple_per_pattern_of_equal_entries():
    assert _representatives(0, 4) == [()]
    assert _representatives(1, 5) == [(1,)]
    assert _representatives(2, 4) == [(1, 1), (1, 2)]
    assert _representatives(3, 4) == [(1, 1, 1), (1, 1, 2), (1, 2, 1), (1, 2, 2), (1, 2, 3)]
    # never more distinct values than the batch has
    assert _representatives(3, 2) == [(1, 1, 1), (1, 1, 2), (1, 2, 1), (1, 2, 2)]
    assert _representatives(2, 1) == [(1, 1)]


def test_concrete_indices_are_the_full_grid_unless_symmetric_beyond_full_index_n():
    assert _concrete_indices((), 5, True) == [{}]
    assert _concrete_indices(("i",), 2, False) == [{"i": 1}, {"i": 2}]
    grid = _concrete_indices(("i", "j"), FULL_INDEX_N, True)
    assert len(grid) == FULL_INDEX_N**2 and grid[1] == {"i": 1, "j": 2}
    assert len(_concrete_indices(("i", "j"), FULL_INDEX_N + 1, False)) == (FULL_INDEX_N + 1) ** 2
    assert _concrete_indices(("i", "j"), FULL_INDEX_N + 1, True) == [
        {"i": 1, "j": 1}, {"i": 1, "j": 2}]


def _support(symbol, draws=4000):
    rng = random.Random(0)
    return {_random_value(symbol, rng) for _ in range(draws)}


def test_random_values_respect_each_symbols_assumptions():
    fractions = {sympy.Rational(a, q) for q in _DENOMINATORS for a in range(1, 3 * q + 1)}
    assert _support(sympy.Symbol("n", integer=True)) == set(map(sympy.Integer, range(1, 6)))
    assert _support(sympy.Symbol("p", positive=True)) == fractions
    assert _support(eps) == fractions  # never 0: eps = 0 is imposed where it is meant
    signed = {sympy.Rational(a, q) for q in _DENOMINATORS for a in range(-3 * q, 3 * q + 1)}
    assert _support(sympy.Symbol("r", real=True)) == signed


def test_point_text_is_sorted_by_symbol_and_hides_placeholders():
    a, b = sympy.symbols("a b")
    point = {b: 1, sympy.Dummy("dL"): 5, a: 2}
    assert _point_text(point) == "a = 2, b = 1"
    assert _point_text({ConcreteBatch(2).item(x, 1): sympy.Rational(-1, 3)}) == "x_1 = -1/3"
    assert _where({"i": 1, "j": 2}) == "i = 1, j = 2"
    assert _where({}) == ""


def test_the_numeric_guard_counts_only_values_below_its_threshold_as_zero():
    c = sympy.Symbol("c", real=True)
    tiny = sympy.Rational(1, 10**40)
    assert sympy.N(tiny, 60) == _NUMERIC_ZERO
    is_zero, point, value = _evaluate(tiny + 0 * c, random.Random(0), {})
    assert is_zero is False and value == pytest.approx(1e-40)
    is_zero, _, value = _evaluate(c - c + 2 * w, random.Random(0), {w: 0})
    assert is_zero is True and value == 0
    is_zero, point, value = _evaluate(sympy.sqrt(-1 - c**2), random.Random(0), {})
    assert is_zero is None and value != value and set(point) == {c}


# ---- an unknown loss ---------------------------------------------------------- #

L = sympy.Function("L")
xi = sympy.Symbol("xi")


def test_unknown_derivatives_become_real_symbols_outermost_first():
    from bnproof.symbolic._engine import _unknowns_to_symbols

    v = sympy.Symbol("v", real=True)
    chain = sympy.diff(L(v**2), v)  # 2 v Subs(Derivative(L(xi), xi), xi, v**2)
    expr = chain + L(v)
    reduced, mapping = _unknowns_to_symbols(expr)
    (subs,) = chain.atoms(sympy.Subs)
    # the Subs, not the Derivative and L inside it; and L(v) on its own
    assert set(mapping) == {subs, L(v)}
    assert len(set(mapping.values())) == 2
    assert all(isinstance(d, sympy.Dummy) and d.is_real for d in mapping.values())
    assert reduced == 2 * v * mapping[subs] + mapping[L(v)]
    assert _unknowns_to_symbols(v + 1) == (v + 1, {})
    # a derivative at a symbol (no Subs) is one unknown, not L's derivative of a symbol
    slope = sympy.Derivative(L(v), v)
    reduced, mapping = _unknowns_to_symbols(3 * slope)
    assert set(mapping) == {slope} and reduced == 3 * mapping[slope]


def test_claims_about_an_unknown_loss_are_checked():
    def chain(batch, idx, factor=2):
        v = batch.item(x, 1)
        derivative = sympy.diff(L(v**2), v)
        return [Identity(z, derivative, factor * v * sympy.Subs(sympy.Derivative(L(xi), xi), xi,
                                                               v**2)),
                Nonzero(w, derivative)]

    assert establish("chain", chain, n_max=2, symbolic=False).verdict == "proved"
    wrong = establish("chain-wrong", lambda b, i: chain(b, i, factor=1), n_max=2, symbolic=False)
    assert wrong.verdict == "refuted"
    # the point names the data; the unknown derivative's value is not data
    assert re.fullmatch(r"counterexample: N = 2, any index: z - \(.*\) = \S+, at x_1 = \S+",
                        wrong.reason), wrong.reason


# ---- regressions: what the concrete checks say ------------------------------ #


def test_each_concrete_check_names_only_its_own_failures():
    # both checks once shared one list: a passed rationals check showed
    # "expansion not 0", a failed expansion the rationals' counterexample
    r2, r3, r6 = (sympy.sqrt(v, evaluate=False) for v in (2, 3, 6))

    def build(batch, idx):
        v = batch.item(x, 1)
        return [Identity(z, sympy.Mul(r2, r3, evaluate=False), r6),  # expansion fails only
                Identity(w, (batch.size - 2) * (batch.size - 3) * v + v, v)]  # false at N = 4

    proof = establish("own-failures", build, n_max=4, symbolic=False)
    checks = {c.method: c for c in proof.checks}
    assert checks["rationals-N=2"] == Check("rationals-N=2", True, "")
    assert checks["expand-N=2"] == Check("expand-N=2", False, "z at any index: expansion not 0")
    assert checks["expand-N=4"].detail == ("z at any index: expansion not 0; "
                                           "w at any index: expansion not 0")
    assert checks["rationals-N=4"].passed is False
    assert checks["rationals-N=4"].detail.startswith("N = 4, any index: w - (x_1) = ")


def test_texts_without_indices_or_symbols_read_plainly():
    # no free index: "any index", never "z at : ..."; no symbol: no "at" and
    # no trailing comma after N
    proof = establish("constant", lambda b, i: [Identity(z, 1, 0)], n_max=2)
    assert proof.reason == "counterexample: N = 2, any index: z = 1, not 0"

    def late(batch, idx):
        return [Identity(z, (batch.size - 2) * (batch.size - 3), 0)]

    proof = establish("constant-late", late, n_max=4, symbolic=False)
    assert proof.reason == "counterexample: N = 4, any index: z = 2, not 0"
    proof = establish("witness-n", lambda b, i: [Nonzero(z, b.size + 1)], n_max=2)
    (witness,) = [s for s in proof.steps if s.title.startswith("Witness")]
    assert witness.note == "N = 2"
