"""Literal unit tests of the invariance table's builders (bnproof.symbolic._family).

Fast on purpose (mutation testing reruns them for every mutant): each states
what a builder must return, written out by hand from the definitions in the
module docstring (summed inputs ``a = W x``, ``y = gamma_c xhat + beta_c``,
the rows' statistics), never read from the code under test.
"""

import random

import pytest
import sympy
from sympy import Symbol, sqrt

from bnproof.symbolic import _family as fam
from bnproof.symbolic._family import (
    ANY_EPS,
    COLUMNS,
    EPS_ZERO,
    ROWS,
    WEIGHT_ALWAYS,
    Layout,
    delta,
    eps,
)
from bnproof.symbolic._proof import Proof


def _r(name):
    return Symbol(name, real=True)


def _pos(name):
    return Symbol(name, positive=True)


#: A proof's wall time is measured from its start: a few seconds here, never hours.
MAX_SECONDS = 600

FEATURES = Layout(N=2, C=3, D=2)
CHANNELS = Layout(N=2, C=4, P=2, D=2, G=2)


# ---- the data of a layout ------------------------------------------------------ #


def test_data_names_every_symbol_as_the_concrete_route_does():
    lay = Layout(N=2, C=2, P=1, D=3, G=2)
    dat = fam.data(lay)
    assert dat.layout is lay
    # W[c, d] over C x D, x[n, d, p] over N x D x P, all real
    assert dat.W == {(c, d): _r(f"W_{{{c},{d}}}") for c in (1, 2) for d in (1, 2, 3)}
    assert dat.x == {(n, d, 1): _r(f"x_{{{n},{d},1}}") for n in (1, 2) for d in (1, 2, 3)}
    assert dat.gamma == {(1,): _r("gamma_{1}"), (2,): _r("gamma_{2}")}
    assert dat.beta == {(1,): _r("beta_{1}"), (2,): _r("beta_{2}")}
    # per-channel scales and per-case scales are positive (Table 1: delta_c, rho_n > 0)
    assert dat.delta_c == {(1,): _pos("delta_{1}"), (2,): _pos("delta_{2}")}
    assert dat.rho_n == {(1,): _pos("rho_{1}"), (2,): _pos("rho_{2}")}
    assert all(v.is_positive for v in (*dat.delta_c.values(), *dat.rho_n.values()))
    assert dat.shift_d == {(d,): _r(f"s_{{{d}}}") for d in (1, 2, 3)}
    assert dat.b_c == {(1,): _r("b_{1}"), (2,): _r("b_{2}")}
    assert dat.b_g == {(1,): _r("b^G_{1}"), (2,): _r("b^G_{2}")}
    assert dat.b == _r("b") and dat.b.is_real
    assert dat.W[1, 1].is_real and dat.x[1, 1, 1].is_real and dat.b_g[(1,)].is_real
    assert dat.gamma[(1,)].is_real and dat.beta[(1,)].is_real and dat.shift_d[(1,)].is_real
    assert dat.b_c[(1,)].is_real


def test_summed_inputs_are_w_times_x():
    lay = Layout(N=1, C=2, P=2, D=2)
    dat = fam.data(lay)
    a = fam.summed(lay, dat.W, dat.x)
    W, x = dat.W, dat.x
    assert set(a) == {(1, 1, 1), (1, 1, 2), (1, 2, 1), (1, 2, 2)}
    assert a[1, 2, 2] == W[2, 1] * x[1, 1, 2] + W[2, 2] * x[1, 2, 2]
    assert a[1, 1, 1] == W[1, 1] * x[1, 1, 1] + W[1, 2] * x[1, 2, 1]


# ---- the rows: statistics over their own axes ----------------------------------- #


def test_each_row_groups_the_indices_its_statistics_run_over():
    # (n, c, p) -> the slice sharing statistics: batch per channel, layer and RMS per
    # sample, group per sample and group (2 groups of 2 channels), instance per (n, c)
    lay = CHANNELS
    assert ROWS["batch"].key(lay)((2, 3, 1)) == 3
    assert ROWS["layer"].key(lay)((2, 3, 1)) == 2
    assert ROWS["rms"].key(lay)((2, 3, 1)) == 2
    assert ROWS["group"].key(lay)((2, 3, 1)) == (2, 2)
    assert ROWS["group"].key(lay)((1, 2, 2)) == (1, 1)
    assert ROWS["instance"].key(lay)((2, 3, 1)) == (2, 3)
    assert ROWS["weight"].key is None
    assert {r: ROWS[r].center for r in ROWS} == {
        "batch": True, "weight": False, "layer": True, "rms": False, "group": True,
        "instance": True}
    assert {r: ROWS[r].setting for r in ROWS} == {
        "batch": "channels", "weight": "features", "layer": "features", "rms": "features",
        "group": "channels", "instance": "channels"}


def test_applies_only_where_the_setting_has_the_column():
    assert fam.applies("group", "bias-per-group")
    assert fam.applies("batch", "bias-per-group")
    assert not fam.applies("layer", "bias-per-group")
    assert not fam.applies("weight", "bias-per-group")
    assert fam.applies("layer", "bias-shared")


def test_cells_are_row_by_row_with_their_ids():
    out = fam.cells()
    assert len(out) == 51
    assert out[0] == ("batch", "weight-matrix-rescaling", "batch-weight-matrix-rescaling")
    assert out[8] == ("batch", "bias-per-group", "batch-bias-per-group")
    assert out[9] == ("weight", "weight-matrix-rescaling", "weight-weight-matrix-rescaling")
    assert out[-1] == ("instance", "bias-per-group", "instance-bias-per-group")
    assert ("layer", "bias-per-group", "layer-bias-per-group") not in out


def test_cell_text_reads_as_the_claim():
    text = fam._cell_text(ROWS["layer"], COLUMNS["bias-shared"])
    assert text == ("Under layer normalization (training mode; statistics over the features "
                    "of one sample) the normalized output is invariant under bias shared: "
                    "a -> a + b (one scalar for every feature).")


# ---- the outputs ------------------------------------------------------------------ #


def test_normalize_is_gamma_xhat_plus_beta_over_the_rows_slices():
    lay = Layout(N=2, C=2, D=1)
    dat = fam.data(lay)
    a = {(n, c, 1): _r(f"u{n}{c}") for n in (1, 2) for c in (1, 2)}
    g1, b1, g2, b2 = dat.gamma[(1,)], dat.beta[(1,)], dat.gamma[(2,)], dat.beta[(2,)]
    u11, u12, u21, u22 = (a[n, c, 1] for n, c in ((1, 1), (1, 2), (2, 1), (2, 2)))
    # layer: over the two features of sample 1, mean (u11 + u12)/2, var ((u11 - u12)/2)**2
    y = fam._normalize(ROWS["layer"], lay, a, eps, dat)
    mu, var = (u11 + u12) / 2, ((u11 - u12) / 2) ** 2
    assert sympy.simplify(y[1, 2, 1] - (g2 * (u12 - mu) / sqrt(var + eps) + b2)) == 0
    # RMS: no centering, the mean square of sample 2 divides
    y = fam._normalize(ROWS["rms"], lay, a, eps, dat)
    assert sympy.simplify(y[2, 1, 1] - (g1 * u21 / sqrt((u21**2 + u22**2) / 2 + eps) + b1)) == 0
    # batch norm of feature vectors (per channel over the samples) uses channel 1's gamma
    lay3 = Layout(N=2, C=2, P=1, D=1)
    y = fam._normalize(ROWS["batch"], lay3, a, 0, dat)
    assert sympy.simplify(y[1, 1, 1] - (g1 * (u11 - u21) / sqrt((u11 - u21) ** 2) + b1)) == 0


def test_weight_norm_outputs_are_g_v_dot_x_over_the_norm_plus_bias():
    lay = Layout(N=1, C=1, D=2)
    dat = fam.data(lay)
    W, x, g = dat.W, dat.x, dat.gamma[(1,)]
    expected = g * (W[1, 1] * x[1, 1, 1] + W[1, 2] * x[1, 2, 1]) / sqrt(W[1, 1] ** 2
                                                                          + W[1, 2] ** 2)
    out = fam._outputs(ROWS["weight"], dat, W, x, None, eps)
    assert sympy.simplify(out[1, 1, 1] - expected) == 0
    out = fam._outputs(ROWS["weight"], dat, W, x, {(1, 1, 1): dat.b}, eps)
    assert sympy.simplify(out[1, 1, 1] - expected - dat.b) == 0


def test_outputs_of_a_statistics_row_add_the_bias_to_the_summed_inputs():
    lay = Layout(N=1, C=2, D=1)
    dat = fam.data(lay)
    W, x = dat.W, dat.x
    a1, a2 = W[1, 1] * x[1, 1, 1], W[2, 1] * x[1, 1, 1]
    bias = {(1, 1, 1): _r("t"), (1, 2, 1): 0}
    out = fam._outputs(ROWS["rms"], dat, W, x, bias, eps)
    moved = a1 + _r("t")
    expected = dat.gamma[(1,)] * moved / sqrt((moved**2 + a2**2) / 2 + eps) + dat.beta[(1,)]
    assert sympy.simplify(out[1, 1, 1] - expected) == 0
    out = fam._outputs(ROWS["rms"], dat, W, x, None, eps)
    expected = dat.gamma[(2,)] * a2 / sqrt((a1**2 + a2**2) / 2 + eps) + dat.beta[(2,)]
    assert sympy.simplify(out[1, 2, 1] - expected) == 0


# ---- the search and the zero test ----------------------------------------------- #


def test_search_returns_the_first_nonzero_difference():
    u, v = _r("u"), _r("v")
    assert fam._search({(1,): u - u, (2,): sympy.S.Zero}, random.Random(0), {}) is None
    idx, point, value = fam._search({(1,): sympy.S.Zero, (2,): u**2 + 1, (3,): v},
                                    random.Random(0), {})
    assert idx == (2,) and value != 0 and u in point


def test_all_vanish_names_the_first_slice_that_does_not_cancel():
    u, v = _r("u"), _r("v")
    before = {(1, 1): u, (1, 2): v, (2, 1): u, (2, 2): v}
    same = dict(before)
    assert fam._all_vanish(same, before, lambda i: i[0]) is None
    # slice 2 differs only at (2, 2); slice 1 unchanged
    after = {**before, (2, 2): v + 1}
    assert fam._all_vanish(after, before, lambda i: i[0]) == 2
    # two differences that cancel in a plain sum must not: independent coefficients
    after = {**before, (1, 1): u + 1, (1, 2): v - 1}
    assert fam._all_vanish(after, before, lambda i: i[0]) == 1
    # sqrt identities reduce: sqrt(u**2) = u for u > 0 is zero, sqrt(u**2) for real u not
    p = _pos("p")
    assert fam._all_vanish({(1,): sqrt(p**2)}, {(1,): p}, lambda i: 0) is None
    assert fam._all_vanish({(1,): sqrt(u**2)}, {(1,): u}, lambda i: 0) == 0


def test_attempt_proves_and_refuses_with_its_reasons():
    dat = fam.data(FEATURES)
    ok, detail = fam._attempt(ROWS["layer"], COLUMNS["bias-shared"], dat, eps)
    assert ok and detail == ("a' = scale a + shift checked; every output difference "
                             "reduced to 0 in a")
    ok, detail = fam._attempt(ROWS["layer"], COLUMNS["bias-per-feature"], dat, eps)
    assert not ok and detail.startswith("the outputs of slice 1 did not reduce to 0")
    # scale invariance only at eps = 0
    ok, _ = fam._attempt(ROWS["layer"], COLUMNS["weight-matrix-rescaling"], dat, eps)
    assert not ok
    ok, _ = fam._attempt(ROWS["layer"], COLUMNS["weight-matrix-rescaling"], dat, sympy.S.Zero)
    assert ok
    ok, detail = fam._attempt(ROWS["weight"], COLUMNS["weight-vector-rescaling"], dat, eps)
    assert ok and detail == "every output difference reduced to 0 in W and x"
    ok, detail = fam._attempt(ROWS["weight"], COLUMNS["bias-shared"], dat, eps)
    assert not ok and detail == "the outputs of channel 1 did not reduce to 0"


def test_attempt_checks_the_declared_action_at_every_index(monkeypatch):
    # the right action everywhere but at the last activation (1 from the end)
    honest = COLUMNS["bias-per-feature"]
    last = FEATURES.activations()[-1]

    def almost(d, i):
        scale, shift = honest.affine(d, i)
        return (scale, shift + 1) if i == last else (scale, shift)

    col = fam.Column("almost", "", honest.apply, almost)
    ok, detail = fam._attempt(ROWS["batch"], col, fam.data(FEATURES), eps)
    assert not ok
    assert detail == f"the action on the summed inputs at {last} is not scale a + shift"


def test_attempt_uses_the_declared_scale_and_shift(monkeypatch):
    # a column whose apply matches a declared shift of b_c, once without the bias term
    honest = COLUMNS["dataset-recentering"]
    ok, _ = fam._attempt(ROWS["batch"], honest, fam.data(CHANNELS), eps)
    assert ok
    col = COLUMNS["weight-vector-rescaling"]
    ok, _ = fam._attempt(ROWS["instance"], col, fam.data(CHANNELS), sympy.S.Zero)
    assert ok
    ok, _ = fam._attempt(ROWS["layer"], col, fam.data(FEATURES), sympy.S.Zero)
    assert not ok


# ---- whole cells: steps, checks, conditions ------------------------------------ #


def test_a_refuted_cell_gives_counterexamples_at_both_eps():
    proof = fam.prove_cell("rms", "bias-shared")
    assert proof.claim_id == "rms-bias-shared"
    assert proof.verdict == "refuted" and not proof.symbolic_n
    assert proof.methods == ("rationals",) and proof.condition == ""
    assert proof.reason.startswith("counterexample: N=2, C=3, P=1, G=1, D=2: y(")
    assert "; with eps > 0: N=2, C=3, P=1, G=1, D=2: y(" in proof.reason
    assert "epsilon = 0" in proof.reason.split("; with eps > 0")[0]
    assert [c.method for c in proof.checks] == [
        "rationals-eps>0-N=2, C=3, P=1, G=1, D=2", "rationals-eps=0-N=2, C=3, P=1, G=1, D=2",
        "rationals-eps>0-N=3, C=2, P=1, G=1, D=2", "rationals-eps=0-N=3, C=2, P=1, G=1, D=2"]
    assert not any(c.passed for c in proof.checks)
    assert all(c.detail.startswith("nonzero at output (") for c in proof.checks)
    titles = [s.title for s in proof.steps]
    assert titles == ["Normalization: RMS normalization", "Transformation: a -> a + b (one "
                      "scalar for every feature)", "Counterexample (exact rationals): not "
                      "invariant", "Refuted for every size"]
    assert proof.steps[0].note == (
        "statistics over the features of one sample, no centering (Zhang & Sennrich 2019, "
        "eq. 4); outputs y = gamma_c xhat + beta_c; summed inputs a[n, c, p] = sum_d "
        "W[c, d] x[n, d, p]")
    assert proof.steps[2].note == proof.reason
    assert proof.steps[3].note == ("the cell claims invariance at every size; one "
                                   "counterexample at concrete sizes refutes it, so no "
                                   "symbolic-size derivation is needed")
    assert proof.symbolic_n is False
    assert 0 < proof.seconds < MAX_SECONDS


def test_a_cell_invariant_only_at_eps_zero():
    proof = fam.prove_cell("layer", "weight-matrix-rescaling")
    assert (proof.verdict, proof.condition, proof.symbolic_n) == ("proved", EPS_ZERO, True)
    assert proof.claim_id == "layer-weight-matrix-rescaling"
    assert proof.methods == ("rationals", "zero-test", "symbolic-sizes")
    assert proof.reason == "" and 0 < proof.seconds < MAX_SECONDS
    checks = {c.method: c for c in proof.checks}
    for lay in ("N=2, C=3, P=1, G=1, D=2", "N=3, C=2, P=1, G=1, D=2"):
        assert not checks[f"rationals-eps>0-{lay}"].passed
        assert checks[f"rationals-eps=0-{lay}"].passed
        assert checks[f"rationals-eps=0-{lay}"].detail == ""
        assert checks[f"zero-test-{lay}"].passed
    assert checks["symbolic-sizes"].passed
    assert checks["symbolic-sizes"].detail == "every identity reduced to 0"
    assert "symbolic-output" in checks
    titles = [s.title for s in proof.steps]
    assert titles[:5] == [
        "Normalization: layer normalization", "Transformation: W -> delta W (delta > 0)",
        "Exact zero test at every output (eps = 0)",
        "Not invariant for eps > 0 (exact rationals)",
        "Symbolic sizes: symbolic N, C features, D inputs"]
    assert proof.steps[2].note == "N=2, C=3, P=1, G=1, D=2; N=3, C=2, P=1, G=1, D=2"
    assert proof.steps[3].note.startswith("N=2, C=3, P=1, G=1, D=2: y(")
    assert "epsilon = 0" not in proof.steps[3].note
    assert proof.steps[-1].title == "Output unchanged (symbolic sizes)"


def test_a_cell_invariant_for_every_eps():
    proof = fam.prove_cell("layer", "bias-shared")
    assert (proof.verdict, proof.condition, proof.symbolic_n) == ("proved", ANY_EPS, True)
    checks = [c.method for c in proof.checks]
    # no eps = 0 search once eps > 0 passed
    assert checks[:4] == ["rationals-eps>0-N=2, C=3, P=1, G=1, D=2",
                          "rationals-eps>0-N=3, C=2, P=1, G=1, D=2",
                          "zero-test-N=2, C=3, P=1, G=1, D=2",
                          "zero-test-N=3, C=2, P=1, G=1, D=2"]
    assert all(c.passed for c in proof.checks)
    titles = [s.title for s in proof.steps]
    assert titles[2] == "Exact zero test at every output (any eps >= 0)"
    assert not any("eps > 0" in t for t in titles)


def test_a_group_cell_normalizes_per_sample_and_group():
    # b_g is constant over a group's channels and positions: cancelled for every eps;
    # a per-channel bias is not (two channels per group in the first layout)
    proof = fam.prove_cell("group", "bias-per-group")
    assert (proof.verdict, proof.condition, proof.symbolic_n) == ("proved", ANY_EPS, True)
    assert fam.prove_cell("group", "bias-per-feature").verdict == "refuted"


def test_weight_normalization_is_invariant_with_no_eps():
    proof = fam.prove_cell("weight", "weight-vector-rescaling")
    assert (proof.verdict, proof.condition, proof.symbolic_n) == ("proved", WEIGHT_ALWAYS, True)
    assert proof.steps[2].title == "Exact zero test at every output (every v_c != 0 (no eps))"


def test_unproved_when_the_zero_test_does_not_reduce(monkeypatch):
    monkeypatch.setattr(fam, "_attempt", lambda row, col, dat, eps_value: (False, "nope"))
    proof = fam.prove_cell("layer", "bias-shared")
    assert proof.verdict == "unproved" and proof.symbolic_n is False
    assert proof.claim_id == "layer-bias-shared"
    assert 0 < proof.seconds < MAX_SECONDS
    assert [s.title for s in proof.steps] == [
        "Normalization: layer normalization",
        "Transformation: a -> a + b (one scalar for every feature)"]
    assert proof.methods == ("rationals", "zero-test") and proof.condition == ""
    assert proof.reason == ("SymPy did not reduce it: N=2, C=3, P=1, G=1, D=2: nope; "
                            "N=3, C=2, P=1, G=1, D=2: nope")
    zero = [c for c in proof.checks if c.method.startswith("zero-test")]
    assert [c.passed for c in zero] == [False, False] and zero[0].detail == "nope"


def test_one_failing_layout_is_enough_to_leave_a_cell_unproved(monkeypatch):
    real = fam._attempt

    def second_fails(row, col, dat, eps_value):
        if dat.layout.N == 3:
            return False, "nope"
        return real(row, col, dat, eps_value)

    monkeypatch.setattr(fam, "_attempt", second_fails)
    proof = fam.prove_cell("layer", "bias-shared")
    assert proof.verdict == "unproved"
    assert proof.reason == "SymPy did not reduce it: N=3, C=2, P=1, G=1, D=2: nope"


def test_a_failing_first_layout_is_not_forgotten(monkeypatch):
    real = fam._attempt

    def first_fails(row, col, dat, eps_value):
        if dat.layout.N == 2:
            return False, "nope"
        return real(row, col, dat, eps_value)

    monkeypatch.setattr(fam, "_attempt", first_fails)
    proof = fam.prove_cell("layer", "bias-shared")
    assert proof.verdict == "unproved"
    assert proof.reason == "SymPy did not reduce it: N=2, C=3, P=1, G=1, D=2: nope"


def test_a_cell_proved_at_concrete_sizes_only(monkeypatch):
    from bnproof.symbolic import _family_symbolic as fs

    monkeypatch.setattr(fs, "prove_symbolic", lambda r, c, e: fs.SymbolicCell(
        False, (), (fs.Check("symbolic-x", False, "why"),), "no route"))
    proof = fam.prove_cell("layer", "bias-shared")
    assert proof.verdict == "proved" and not proof.symbolic_n
    assert proof.methods == ("rationals", "zero-test") and proof.condition == ANY_EPS
    checks = {c.method: c for c in proof.checks}
    assert not checks["symbolic-x"].passed
    assert not checks["symbolic-sizes"].passed and checks["symbolic-sizes"].detail == "no route"
    assert proof.steps[-1].title == ("Symbolic sizes: not reached (proved at the concrete "
                                     "sizes only)")
    assert proof.steps[-1].note == "no route"


def test_the_symbolic_route_gets_the_condition_of_the_concrete_one(monkeypatch):
    from bnproof.symbolic import _family_symbolic as fs

    seen = []
    real = fs.prove_symbolic

    def spy(r, c, e):
        seen.append((r, c, e))
        return real(r, c, e)

    monkeypatch.setattr(fs, "prove_symbolic", spy)
    fam.prove_cell("layer", "bias-shared")
    fam.prove_cell("layer", "weight-matrix-rescaling")
    assert seen == [("layer", "bias-shared", eps), ("layer", "weight-matrix-rescaling", 0)]


def test_given_layouts_replace_the_grid():
    proof = fam.prove_cell("layer", "bias-shared", [Layout(N=1, C=2, D=1)])
    zero = [c.method for c in proof.checks if c.method.startswith("zero-test")]
    assert zero == ["zero-test-N=1, C=2, P=1, G=1, D=1"]


def test_the_rational_point_depends_on_the_claim_only():
    one, two = fam.prove_cell("rms", "bias-shared"), fam.prove_cell("rms", "bias-shared")
    assert one.reason == two.reason


def test_unknown_and_inapplicable_cells_are_named():
    with pytest.raises(KeyError, match=r"unknown row 'nope'; rows: batch, weight, layer, rms, "
                                       r"group, instance"):
        fam.prove_cell("nope", "bias-shared")
    with pytest.raises(KeyError, match=r"unknown column 'nope'; columns: "
                                       r"weight-matrix-rescaling, weight-matrix-recentering"):
        fam.prove_cell("batch", "nope")
    with pytest.raises(ValueError, match=r"^column bias-per-group does not apply to the "
                                         r"layer row$"):
        fam.prove_cell("layer", "bias-per-group")


# ---- the table and the claims ------------------------------------------------------ #


def _proof(cid, verdict, condition="", symbolic=False):
    return Proof(cid, verdict, symbolic, (), (), (), 0.0, "", condition=condition)


def test_table_reads_each_verdict_condition_and_symbolic_flag():
    proofs = {
        "batch-bias-shared": _proof("batch-bias-shared", "proved", ANY_EPS, True),
        "rms-bias-shared": _proof("rms-bias-shared", "refuted"),
        "layer-bias-shared": _proof("layer-bias-shared", "unproved"),
        "layer-weight-matrix-rescaling": _proof("layer-weight-matrix-rescaling", "proved",
                                                EPS_ZERO, False),
    }
    out = fam.table(proofs)
    assert list(out) == ["batch", "weight", "layer", "rms", "group", "instance"]
    assert list(out["batch"])[0] == "weight-matrix-rescaling" and len(out["batch"]) == 9
    assert len(out["layer"]) == 8
    assert out["batch"]["bias-shared"] == {"verdict": "invariant", "condition": ANY_EPS,
                                           "claim": "batch-bias-shared", "symbolic": True}
    assert out["rms"]["bias-shared"] == {"verdict": "not invariant", "condition": "",
                                         "claim": "rms-bias-shared", "symbolic": False}
    assert out["layer"]["bias-shared"]["verdict"] == "unproved"
    assert out["layer"]["weight-matrix-rescaling"] == {
        "verdict": "invariant", "condition": EPS_ZERO,
        "claim": "layer-weight-matrix-rescaling", "symbolic": False}
    assert out["group"]["bias-per-group"] == {"verdict": "unproved", "condition": "",
                                              "claim": "group-bias-per-group",
                                              "symbolic": False}
    assert out["group"]["bias-per-group"]["symbolic"] is False
    assert out["batch"]["bias-shared"]["symbolic"] is True


def _registered(monkeypatch):
    claims = {}
    monkeypatch.setattr(fam, "register", lambda claim: claims.setdefault(claim.id, claim))
    fam.register_table()
    return claims


def test_register_table_makes_one_claim_per_cell(monkeypatch):
    claims = _registered(monkeypatch)
    assert list(claims) == [cid for _, _, cid in fam.cells()]
    proved = claims["layer-weight-matrix-rescaling"]
    assert proved.statement == (
        "Under layer normalization (training mode; statistics over the features of one "
        "sample) the normalized output is invariant under weight matrix rescaling: "
        "W -> delta W (delta > 0).")
    assert proved.latex == (r"\mathrm{layer}(T\,a) = \mathrm{layer}(a),\ T: "
                            r"\text{weight-matrix-rescaling}")
    assert proved.assumptions == (
        "eps = 0", "sizes: N=2, C=3, P=1, G=1, D=2; N=3, C=2, P=1, G=1, D=2; and symbolic "
        "N, C, D")
    assert proved.expected == "proved" and proved.symbolic_n_expected is True
    assert proved.condition == "eps = 0" and proved.group == "invariances"
    assert proved.section == ("Ba, Kiros & Hinton (2016), section 5.1 and Table 1; "
                              "Ba, Kiros & Hinton 2016, eq. 4")
    assert proved.note == ""
    refuted = claims["rms-bias-shared"]
    assert refuted.statement.endswith(
        "a -> a + b (one scalar for every feature). Expected: not invariant (refuted by a "
        "counterexample at concrete sizes, which refutes invariance at every size).")
    assert refuted.assumptions == ("eps >= 0", "sizes: N=2, C=3, P=1, G=1, D=2; "
                                   "N=3, C=2, P=1, G=1, D=2")
    assert refuted.expected == "refuted" and refuted.symbolic_n_expected is False
    assert refuted.condition == ""
    group = claims["group-bias-per-group"]
    assert group.assumptions == (
        "any eps >= 0", "sizes: N=2, C=4, P=2, G=2, D=2; N=2, C=2, P=3, G=1, D=2; and "
        "symbolic N, C = G K (G groups of K channels), P, D")
    assert claims["layer-weight-matrix-recentering"].note.startswith("Agrees with Table 1: W")


def test_a_registered_claim_proves_its_own_cell(monkeypatch):
    claims = _registered(monkeypatch)
    seen = []
    monkeypatch.setattr(fam, "prove_cell", lambda r, c: seen.append((r, c)) or "proof")
    assert claims["rms-bias-shared"].prove(7) == "proof"
    assert claims["group-bias-per-group"].prove(2) == "proof"
    assert seen == [("rms", "bias-shared"), ("group", "bias-per-group")]


def test_delta_and_eps_keep_their_signs():
    assert delta.is_positive and eps.is_nonnegative and eps.is_positive is None


def test_attempt_normalizes_the_plain_and_the_moved_activations(monkeypatch):
    # the zero test compares y(scale a + shift) with y(a), a independent symbols, at the
    # layout's own slices and the given eps
    calls = []
    real = fam._normalize

    def spy(row, lay, a, eps_value, dat):
        calls.append((lay, dict(a), eps_value))
        return real(row, lay, a, eps_value, dat)

    monkeypatch.setattr(fam, "_normalize", spy)
    lay = Layout(N=1, C=4, P=1, D=1, G=2)
    dat = fam.data(lay)
    ok, _ = fam._attempt(ROWS["group"], COLUMNS["dataset-recentering"], dat, sympy.S.Zero)
    assert not ok  # W s differs from channel to channel within a group
    (lay1, plain, e1), (lay2, moved, e2) = calls
    assert lay1 is lay and lay2 is lay and e1 == 0 and e2 == 0
    acts = {i: Symbol(f"a_{{{i[0]},{i[1]},{i[2]}}}", real=True) for i in lay.activations()}
    assert plain == acts
    s1 = Symbol("s_{1}", real=True)
    assert moved == {i: v + Symbol(f"W_{{{i[1]},1}}", real=True) * s1 for i, v in acts.items()}
    calls.clear()
    fam._attempt(ROWS["layer"], COLUMNS["case-rescaling"], fam.data(FEATURES), eps)
    (_, plain, e1), (_, moved, e2) = calls
    assert e1 == eps and e2 == eps
    assert moved == {i: _pos(f"rho_{{{i[0]}}}") * v for i, v in plain.items()}


def test_attempt_compares_weight_norm_outputs_per_channel(monkeypatch):
    # weight normalization: outputs before and after, grouped by channel (i[1])
    calls = []
    real = fam._all_vanish

    def spy(after, before, key):
        calls.append((after, before, key))
        return real(after, before, key)

    monkeypatch.setattr(fam, "_all_vanish", spy)
    lay = Layout(N=1, C=2, D=2)
    dat = fam.data(lay)
    ok, _ = fam._attempt(ROWS["weight"], COLUMNS["weight-matrix-rescaling"], dat, eps)
    assert ok
    [(after, before, key)] = calls
    assert key((3, 2, 1)) == 2
    W, x = dat.W, dat.x
    plain = fam._outputs(ROWS["weight"], dat, W, x, None, eps)
    assert before == plain
    scaled = {k: delta * v for k, v in W.items()}
    assert after == fam._outputs(ROWS["weight"], dat, scaled, x, None, eps)
    calls.clear()
    fam._attempt(ROWS["weight"], COLUMNS["bias-per-feature"], dat, eps)
    [(after, before, key)] = calls
    assert after[1, 2, 1] - before[1, 2, 1] == _r("b_{2}")
    calls.clear()
    fam._attempt(ROWS["group"], COLUMNS["bias-shared"], fam.data(CHANNELS), eps)
    [(after, before, key)] = calls
    assert key((2, 3, 1)) == (2, 2)


def test_the_lift_check_adds_the_columns_bias():
    # a column whose bias is declared as the shift: lifted exactly; a bias of 0 where the
    # declared shift is b: not lifted
    honest = COLUMNS["bias-shared"]
    ok, _ = fam._attempt(ROWS["layer"], honest, fam.data(FEATURES), eps)
    assert ok
    zero_bias = fam.Column("z", "", lambda d: (d.W, d.x, dict.fromkeys(
        d.layout.activations(), 0)), lambda d, i: (1, 0))
    ok, detail = fam._attempt(ROWS["rms"], zero_bias, fam.data(FEATURES), eps)
    assert ok, detail
