"""The invariance table for symbolic sizes: lemmas, every invariant cell, and refusals."""

import pytest
import sympy
from sympy import IndexedBase, Sum, Symbol

from bnproof.symbolic import CLAIMS, ROWS, cells, prove_cell, table
from bnproof.symbolic import _family_symbolic as fs
from bnproof.symbolic._family import COLUMNS, EXPECTED, LAYOUTS, Column, eps
from bnproof.symbolic._zero import vanishes

INVARIANT = [cid for r, c, cid in cells() if EXPECTED[r, c][0] == "proved"]
REFUTED = [(r, c) for r, c, _ in cells() if EXPECTED[r, c][0] == "refuted"]


def _eps_of(row, column):
    return sympy.S.Zero if EXPECTED[row, column][1] == "eps = 0" else eps


# ---- lemmas over k = 1..M, M symbolic -------------------------------------- #


@pytest.mark.parametrize("name", ["mean", "var", "mean-square", "norm"])
def test_lemmas_hold_for_symbolic_m(name):
    eq, holds = fs.lemma(name)
    assert holds, eq
    assert eq.lhs.has(Sum) and fs.M in eq.lhs.free_symbols


def test_a_false_lemma_is_refused():
    # ||s v|| = s ||v|| needs s > 0: for a real s it is |s| ||v||
    eq, holds = fs.lemma("norm", positive_scale=False)
    assert not holds
    # var(s a + t) = s var(a) and mean(s a + t) = mean(a) + t are false
    k = Symbol("k", integer=True)
    s, t, a = Symbol("s", positive=True), Symbol("t", real=True), IndexedBase("a", real=True)
    mean = Sum(s * a[k] + t, (k, 1, fs.M)) / fs.M
    var = Sum((s * a[k] + t - mean) ** 2, (k, 1, fs.M)) / fs.M
    plain_mean = Sum(a[k], (k, 1, fs.M)) / fs.M
    plain_var = Sum((a[k] - plain_mean) ** 2, (k, 1, fs.M)) / fs.M
    assert not vanishes(var - s * plain_var).is_zero
    assert not vanishes(mean - (plain_mean + t)).is_zero
    assert vanishes(var - s**2 * plain_var).is_zero  # the true one, same route


def test_lemmas_match_the_concrete_expansion_term_by_term():
    # the lemma's sides at M = 2, 3, sums expanded, equal the sums written out
    s, t = Symbol("s", real=True), Symbol("t", real=True)
    for size in (2, 3):
        vals = [Symbol(f"a{i}", real=True) for i in range(1, size + 1)]
        moved = [s * v + t for v in vals]

        def mean(xs, size=size):
            return sympy.Add(*xs) / size

        def var(xs, size=size):
            mu = mean(xs)
            return sympy.Add(*((v - mu) ** 2 for v in xs)) / size

        written = {"mean": (mean(moved), s * mean(vals) + t),
                   "var": (var(moved), s**2 * var(vals)),
                   "mean-square": (mean([(s * v) ** 2 for v in vals]),
                                   s**2 * mean([v**2 for v in vals]))}
        for name, (left, right) in written.items():
            eq, _ = fs.lemma(name)
            base = next(iter(eq.lhs.atoms(sympy.Indexed))).base
            at = {base[i]: vals[i - 1] for i in range(1, size + 1)}
            at.update({sym: {"s": s, "t": t}[sym.name] for sym in eq.free_symbols
                       if sym.name in ("s", "t")})
            lhs, rhs = (side.xreplace({fs.M: size}).doit().xreplace(at)
                        for side in (eq.lhs, eq.rhs))
            assert sympy.expand(lhs - left) == 0, (name, size)
            assert sympy.expand(rhs - right) == 0, (name, size)


def test_unknown_lemma_is_refused_by_name():
    with pytest.raises(KeyError, match="unknown lemma 'nope'"):
        fs.lemma("nope")


def test_instantiate_names_the_concrete_symbols():
    expr = fs.W[1, 2] * fs.delta_c[1] + Sum(fs.x[1, fs.n, 1], (fs.n, 1, fs.N))
    out = fs.instantiate(expr, {"N": 2})
    assert out == (Symbol("W_{1,2}", real=True) * Symbol("delta_{1}", positive=True)
                   + Symbol("x_{1,1,1}", real=True) + Symbol("x_{1,2,1}", real=True))


# ---- every invariant cell, for symbolic sizes -------------------------------- #


def test_every_invariant_cell_holds_for_symbolic_sizes(table_proofs):
    assert len(INVARIANT) == 30
    for cid in INVARIANT:
        proof, claim = table_proofs[cid], CLAIMS[cid]
        assert proof.verdict == "proved" and proof.symbolic_n, (cid, proof.steps[-1])
        assert proof.symbolic_n is claim.symbolic_n_expected
        assert "symbolic-sizes" in proof.methods
        methods = {c.method: c.passed for c in proof.checks}
        assert methods["symbolic-sizes"] and methods["symbolic-output"]
        assert all(v for m, v in methods.items() if m.startswith("symbolic")), cid
        assert any(m.startswith("symbolic-lemma-") for m in methods), cid
        # the cross-checks ran at every layout of the grid
        for lay in LAYOUTS[ROWS[cid.split("-", 1)[0]].setting]:
            assert methods[f"symbolic-instance-output-{lay.text()}"]
        assert any(s.title.startswith("Output unchanged") and s.expr is not None
                   for s in proof.steps)


def test_refuted_cells_stay_concrete_and_say_why(table_proofs):
    out = table(table_proofs)
    for row, column in REFUTED:
        cid = f"{row}-{column}"
        proof = table_proofs[cid]
        assert proof.verdict == "refuted" and not proof.symbolic_n
        assert CLAIMS[cid].symbolic_n_expected is False
        assert out[row][column]["symbolic"] is False
        assert any(s.title == "Refuted for every size" for s in proof.steps)
        assert "at every size" in CLAIMS[cid].statement
    assert sum(c["symbolic"] for r in out.values() for c in r.values()) == 30


# ---- the symbolic route says no ---------------------------------------------- #


@pytest.mark.parametrize(("row", "column"), REFUTED, ids=[f"{r}-{c}" for r, c in REFUTED])
def test_the_symbolic_route_refuses_every_refuted_cell(row, column):
    for eps_value in (eps, sympy.S.Zero):
        cell = fs.prove_symbolic(row, column, eps_value)
        assert not cell.proved and cell.reason
        assert any(not c.passed for c in cell.checks)


@pytest.mark.parametrize(("cid", "why"), [
    ("layer-bias-per-feature", "The shift is the same at every index"),
    ("batch-case-rescaling", "The scale is the same at every index"),
    ("rms-dataset-recentering", "The shift is the same at every index"),
    ("rms-bias-shared", "Mean square over the statistics' index set"),
    ("weight-dataset-rescaling", "Output unchanged for symbolic D"),
])
def test_named_negative_controls(cid, why):
    row, column = cid.split("-", 1)
    cell = fs.prove_symbolic(row, column, eps)
    assert not cell.proved and cell.reason.startswith(why)


@pytest.mark.parametrize("cid", ["layer-weight-matrix-rescaling",
                                 "batch-weight-vector-rescaling",
                                 "instance-case-rescaling"])
def test_scale_cells_are_refused_for_positive_eps(cid):
    # sqrt(delta**2 var + eps) is not delta sqrt(var + eps): no proof for eps > 0
    row, column = cid.split("-", 1)
    assert fs.prove_symbolic(row, column, sympy.S.Zero).proved
    cell = fs.prove_symbolic(row, column, eps)
    assert not cell.proved and cell.reason.startswith("Output unchanged")


def test_a_scale_not_known_positive_is_refused(monkeypatch):
    # W -> t W with t real: sqrt(t**2 var) = |t| sqrt(var), not t sqrt(var)
    t = Symbol("t", real=True)
    honest = fs.ACTIONS["weight-matrix-rescaling"]
    signed = fs.Action(lambda cc, d: t * fs.W[cc, d], honest.inputs, honest.bias,
                       lambda *_: t, honest.shift)
    monkeypatch.setitem(fs.ACTIONS, "weight-matrix-rescaling", signed)
    cell = fs.prove_symbolic("layer", "weight-matrix-rescaling", sympy.S.Zero)
    assert not cell.proved and cell.reason.startswith("Output unchanged")


def test_a_wrong_action_on_the_summed_inputs_is_refused(monkeypatch):
    honest = fs.ACTIONS["bias-per-feature"]
    lying = fs.Action(honest.weights, honest.inputs, honest.bias,
                      honest.scale, lambda *_: sympy.S.Zero)
    monkeypatch.setitem(fs.ACTIONS, "bias-per-feature", lying)
    cell = fs.prove_symbolic("batch", "bias-per-feature", eps)
    assert not cell.proved and cell.reason.startswith("Action on the summed inputs")


def test_a_symbolic_transformation_unlike_the_concrete_one_is_refused(monkeypatch):
    # a shared bias in place of one per feature: invariant under layer norm, but
    # not the column the table means; the concrete cross-check must catch it
    monkeypatch.setitem(fs.ACTIONS, "bias-per-feature", fs.ACTIONS["bias-shared"])
    cell = fs.prove_symbolic("layer", "bias-per-feature", eps)
    assert not cell.proved
    assert "differs from the concrete one" in cell.reason and "bias[" in cell.reason


def test_a_symbolic_row_unlike_the_concrete_one_is_refused(monkeypatch):
    # RMS statistics written as centred ones: layer norm is shift invariant,
    # so the symbolic identities hold, but it is not RMS normalization
    monkeypatch.setitem(fs.SHAPES, "rms", fs.SHAPES["layer"])
    cell = fs.prove_symbolic("rms", "bias-shared", eps)
    assert not cell.proved
    assert "the symbolic row differs from the concrete one" in cell.reason


def test_a_column_without_a_symbolic_form_stays_concrete(monkeypatch):
    per_sample = Column(
        "bias-per-sample", "a[n, c, p] -> a + b_n",
        lambda d: (d.W, d.x, {i: d.rho_n[(i[0],)] for i in d.layout.activations()}),
        lambda d, i: (1, d.rho_n[(i[0],)]),
    )
    monkeypatch.setitem(COLUMNS, "bias-per-sample", per_sample)
    proof = prove_cell("layer", "bias-per-sample")
    assert proof.verdict == "proved" and not proof.symbolic_n
    assert "symbolic-sizes" not in proof.methods
    check = next(c for c in proof.checks if c.method == "symbolic-sizes")
    assert not check.passed and "no symbolic form" in check.detail
    assert any(s.title.startswith("Symbolic sizes: not reached") for s in proof.steps)


def test_a_lemma_that_does_not_reduce_refuses_the_cell(monkeypatch):
    false_lemma = fs.lemma("norm", positive_scale=False)  # |s| ||v||, not s ||v||
    monkeypatch.setattr(fs, "lemma", lambda name, positive_scale=True: false_lemma)
    cell = fs.prove_symbolic("weight", "weight-matrix-rescaling", eps)
    assert not cell.proved and cell.reason.startswith("the lemma")
    assert not next(c for c in cell.checks if c.method == "symbolic-lemma-norm").passed
