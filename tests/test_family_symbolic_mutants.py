"""Literal tests of the symbolic-size forms of the invariance table (_family_symbolic).

The expressions expected here are written out from the module docstring
(summed inputs ``a[n, c, p] = sum_d W[c, d] x[n, d, p]``, channel
``c = (g - 1) K + q``, statistics over each row's index set), with the
module's own named symbols; fast, for mutation testing.
"""

import pytest
import sympy
from sympy import IndexedBase, Sum, Symbol, sqrt

from bnproof.symbolic import _family_symbolic as fs
from bnproof.symbolic._family import Layout, delta, eps
from bnproof.symbolic._sums import SumRuleError

n, c, g, q, p = fs.n, fs.c, fs.g, fs.q, fs.p
N, C, P, D, G, K = fs.N, fs.C, fs.P, fs.D, fs.G, fs.K
W, x, a, gamma, beta = fs.W, fs.x, fs.a, fs.gamma, fs.beta
e = Symbol("e", integer=True)
m, k, l_, r = (Symbol(s, integer=True) for s in ("m", "k", "l", "r"))
k2, l2, r2 = (Symbol(s + "'", integer=True) for s in ("k", "l", "r"))
CHAN = fs.Chan((g - 1) * K + q, g)


def test_sizes_and_symbols():
    assert fs.SIZES == {"N": N, "C": C, "P": P, "D": D, "G": G, "K": K}
    assert all(s.is_integer and s.is_positive for s in fs.SIZES.values())
    assert fs._scalars() == (delta, eps)
    assert fs._sizes(Layout(N=2, C=4, P=3, D=5, G=2)) == {"N": 2, "C": 4, "P": 3, "D": 5,
                                                         "G": 2, "K": 2}


def test_each_row_runs_over_its_own_index_set():
    assert {row: shape.size for row, shape in fs.SHAPES.items()} == {
        "batch": N * P, "layer": C, "rms": C, "group": K * P, "instance": P}
    assert fs.Shape("channels", (), True).size == 1


def test_output_indices_of_the_two_settings():
    assert fs._index("features", n, c, p) == (n, fs.Chan(c, None), 1)
    assert fs._index("channels", n, q, p, g) == (n, CHAN, p)
    assert fs._output_index("features") == (n, fs.Chan(c, None), 1)
    assert fs._output_index("channels") == (n, CHAN, p)


def test_sums_over_the_statistics_bind_fixed_names():
    body = lambda nn, ch, pp: a[nn, ch.c, pp]  # noqa: E731
    assert fs._over(fs.SHAPES["batch"], body) == Sum(Sum(a[m, CHAN.c, r], (m, 1, N)),
                                                     (r, 1, P))
    assert fs._over(fs.SHAPES["group"], body, outer=True) == Sum(
        Sum(a[n, (g - 1) * K + l2, r2], (l2, 1, K)), (r2, 1, P))
    assert fs._over(fs.SHAPES["layer"], body) == Sum(a[n, k, 1], (k, 1, C))
    assert fs._over(fs.SHAPES["instance"], body, outer=True) == Sum(a[n, CHAN.c, r2],
                                                                    (r2, 1, P))


def test_mean_variance_and_output_of_layer_and_rms():
    layer, rms = fs.SHAPES["layer"], fs.SHAPES["rms"]
    mu = Sum(a[n, k, 1], (k, 1, C)) / C
    assert fs.mean(layer, fs._plain) == mu
    assert fs.mean(rms, fs._plain) == 0
    var = Sum((a[n, k2, 1] - mu) ** 2, (k2, 1, C)) / C
    assert fs.variance(layer, fs._plain) == var
    assert fs.variance(rms, fs._plain) == Sum(a[n, k2, 1] ** 2, (k2, 1, C)) / C
    y = gamma[c] * (a[n, c, 1] - mu) / sqrt(var + eps) + beta[c]
    assert fs.output(layer, fs._plain, eps) == y
    ms = Sum(a[n, k2, 1] ** 2, (k2, 1, C)) / C
    assert fs.output(rms, fs._plain, 0) == gamma[c] * a[n, c, 1] / sqrt(ms) + beta[c]


def test_summed_and_weight_outputs():
    summed = fs.summed("channels", lambda cc, d: W[cc, d], lambda nn, d, pp: x[nn, d, pp])
    assert summed(n, CHAN, p) == Sum(W[CHAN.c, e] * x[n, e, p], (e, 1, D))
    norm = sqrt(Sum(W[c, e] ** 2, (e, 1, D)))
    plain = gamma[c] * Sum(W[c, e] * x[n, e, 1], (e, 1, D)) / norm
    assert fs.weight_output(None) == plain
    moved = fs.weight_output(fs.ACTIONS["bias-shared"])
    assert moved == plain + fs.b
    rescaled = fs.weight_output(fs.ACTIONS["weight-matrix-rescaling"])
    assert rescaled == gamma[c] * Sum(delta * W[c, e] * x[n, e, 1], (e, 1, D)) / sqrt(
        Sum((delta * W[c, e]) ** 2, (e, 1, D)))


def test_each_action_transforms_and_acts_as_declared():
    acts = fs._actions()
    assert list(acts) == ["weight-matrix-rescaling", "weight-matrix-recentering",
                          "weight-vector-rescaling", "dataset-rescaling",
                          "dataset-recentering", "case-rescaling", "bias-shared",
                          "bias-per-feature", "bias-per-group"]
    d = Symbol("d", integer=True)
    ch = CHAN
    s, dc, rho, bc, bg = fs.s, fs.delta_c, fs.rho, fs.b_c, fs.b_g

    def table(act):
        return (act.weights(c, d), act.inputs(n, d, p), act.bias(n, ch, p),
                act.scale(n, ch, p), act.shift(n, ch, p))

    assert table(acts["weight-matrix-rescaling"]) == (delta * W[c, d], x[n, d, p], 0, delta, 0)
    assert table(acts["weight-matrix-recentering"]) == (
        W[c, d] + s[d], x[n, d, p], 0, 1, Sum(s[e] * x[n, e, p], (e, 1, D)))
    assert table(acts["weight-vector-rescaling"]) == (dc[c] * W[c, d], x[n, d, p], 0,
                                                      dc[ch.c], 0)
    assert table(acts["dataset-rescaling"]) == (W[c, d], delta * x[n, d, p], 0, delta, 0)
    assert table(acts["dataset-recentering"]) == (
        W[c, d], x[n, d, p] + s[d], 0, 1, Sum(W[ch.c, e] * s[e], (e, 1, D)))
    assert table(acts["case-rescaling"]) == (W[c, d], rho[n] * x[n, d, p], 0, rho[n], 0)
    assert table(acts["bias-shared"]) == (W[c, d], x[n, d, p], fs.b, 1, fs.b)
    assert table(acts["bias-per-feature"]) == (W[c, d], x[n, d, p], bc[ch.c], 1, bc[ch.c])
    assert table(acts["bias-per-group"]) == (W[c, d], x[n, d, p], bg[g], 1, bg[g])
    assert fs.ACTIONS.keys() == acts.keys()


def test_concrete_names_and_signs():
    assert fs._concrete(W[1, 2]) == Symbol("W_{1,2}", real=True)
    assert fs._concrete(fs.delta_c[3]) == Symbol("delta_{3}", positive=True)
    assert fs._concrete(fs.rho[2]) == Symbol("rho_{2}", positive=True)
    assert fs._concrete(fs.b_g[1]) == Symbol("b^G_{1}", real=True)


def test_instantiate_writes_out_sums_and_keeps_indexed_values_on_request():
    expr = Sum(W[c, e] * x[n, e, p], (e, 1, D))
    sizes = {"D": 2, "c": 1, "n": 2, "p": 3}
    assert fs.instantiate(expr, sizes, keep_indexed=True) == (W[1, 1] * x[2, 1, 3]
                                                               + W[1, 2] * x[2, 2, 3])
    assert fs.instantiate(expr, sizes) == (Symbol("W_{1,1}", real=True)
                                           * Symbol("x_{2,1,3}", real=True)
                                           + Symbol("W_{1,2}", real=True)
                                           * Symbol("x_{2,2,3}", real=True))
    # a nested sum inside another expression, both limits written out
    nested = 1 + Sum(Sum(a[m, 1, r], (m, 1, N)), (r, 1, P))
    out = fs.instantiate(nested, {"N": 2, "P": 1}, keep_indexed=True)
    assert out == 1 + a[1, 1, 1] + a[2, 1, 1]
    # the group and channel indices too
    assert fs.instantiate(a[n, (g - 1) * K + q, p], {"g": 2, "K": 3, "q": 1, "n": 1, "p": 1},
                          keep_indexed=True) == a[1, 4, 1]
    assert fs.instantiate(a[n, c, 1] + fs.b, {}, keep_indexed=True) == a[n, c, 1] + fs.b
    with pytest.raises(ValueError, match=r"^cannot write out the sum over e in \[1, D\]: "
                                         r"give every size as an integer$"):
        fs.instantiate(expr, {"c": 1})


def test_zero_is_false_when_a_sum_rule_refuses(monkeypatch):
    assert fs._zero(sympy.S.Zero) is True
    assert fs._zero(Symbol("u", real=True)) is False

    def refuse(expr):
        raise SumRuleError("no")

    monkeypatch.setattr(fs, "vanishes", refuse)
    assert fs._zero(sympy.S.Zero) is False


def test_a_proved_cell_lists_each_identity():
    cell = fs.prove_symbolic("group", "bias-per-group", eps)
    assert cell.proved and cell.reason == ""
    assert [s.title for s in cell.steps] == [
        "Symbolic sizes: symbolic N, G groups of K channels (C = G K), P positions, D inputs",
        "Lemma over k = 1..M (symbolic M)", "Lemma over k = 1..M (symbolic M)",
        "Action on the summed inputs a = W x (symbolic D)",
        "The scale is the same at every index the statistics run over",
        "The shift is the same at every index the statistics run over",
        "Mean over the statistics' index set (symbolic M)",
        "Variance over the statistics' index set (symbolic M)",
        "Output unchanged (symbolic sizes)"]
    notes = [s.note for s in cell.steps]
    assert notes[0] == "sums over symbolic ranges reduced by the finite-sum rules"
    assert notes[1] == notes[2] == "s, t real"
    assert notes[4] == notes[5] == "renamed q -> q', p -> p': unchanged"
    assert notes[-1] == "for every eps >= 0"
    assert all(isinstance(s.expr, sympy.Eq) for s in cell.steps[1:])
    assert cell.steps[0].expr is None
    assert [(ch.method, ch.passed, ch.detail) for ch in cell.checks] == [
        ("symbolic-lemma-mean", True, "reduced to 0"),
        ("symbolic-lemma-var", True, "reduced to 0"),
        ("symbolic-action", True, "reduced to 0"),
        ("symbolic-constant-scale", True, "reduced to 0"),
        ("symbolic-constant-shift", True, "reduced to 0"),
        ("symbolic-mean", True, "reduced to 0"),
        ("symbolic-variance", True, "reduced to 0"),
        ("symbolic-output", True, "reduced to 0"),
        ("symbolic-instance-transformation-N=2, C=4, P=2, G=2, D=2", True,
         "equal entry by entry"),
        ("symbolic-instance-output-N=2, C=4, P=2, G=2, D=2", True,
         "every output equal to the concrete one"),
        ("symbolic-instance-transformation-N=2, C=2, P=3, G=1, D=2", True,
         "equal entry by entry"),
        ("symbolic-instance-output-N=2, C=2, P=3, G=1, D=2", True,
         "every output equal to the concrete one")]


def test_rms_and_weight_cells_use_their_own_lemmas():
    cell = fs.prove_symbolic("rms", "dataset-rescaling", sympy.S.Zero,
                             layout=Layout(N=1, C=2, D=2))
    assert cell.proved
    assert [ch.method for ch in cell.checks][:2] == ["symbolic-lemma-mean-square",
                                                      "symbolic-action"]
    assert cell.steps[1].note == "s real"
    assert cell.steps[-1].note == ("at eps = 0: sqrt(scale**2 var) = scale sqrt(var), "
                                   "scale > 0")
    assert "Mean over" not in " ".join(s.title for s in cell.steps)
    assert cell.steps[-2].title == "Mean square over the statistics' index set (symbolic M)"
    assert [ch.method for ch in cell.checks][-2:] == [
        "symbolic-instance-transformation-N=1, C=2, P=1, G=1, D=2",
        "symbolic-instance-output-N=1, C=2, P=1, G=1, D=2"]
    cell = fs.prove_symbolic("weight", "weight-vector-rescaling", eps)
    assert cell.proved
    assert [s.title for s in cell.steps] == ["Symbolic sizes: symbolic N, C features, D inputs",
                                             "Lemma over k = 1..M (symbolic M)",
                                             "Output unchanged for symbolic D"]
    assert cell.steps[1].note == "s > 0"
    assert cell.steps[2].note == "||delta v_c|| = delta ||v_c|| for delta > 0"
    assert [ch.method for ch in cell.checks][:2] == ["symbolic-lemma-norm", "symbolic-output"]


def test_refusals_name_the_step_and_cut_long_identities():
    cell = fs.prove_symbolic("layer", "bias-per-feature", eps)
    assert not cell.proved
    assert cell.reason == ("The shift is the same at every index the statistics run over: "
                           "b[c'] = b[c] did not reduce to 0")
    failed = [ch for ch in cell.checks if not ch.passed]
    assert [(ch.method, ch.detail) for ch in failed] == [("symbolic-constant-shift",
                                                          "did not reduce to 0")]
    # an output identity is long: cut at 240 characters
    cell = fs.prove_symbolic("layer", "weight-matrix-rescaling", eps)
    assert not cell.proved and cell.reason.startswith("Output unchanged (symbolic sizes): ")
    assert cell.reason.endswith(" ... did not reduce to 0")
    shown = cell.reason[len("Output unchanged (symbolic sizes): "):-len(" did not reduce to 0")]
    assert len(shown) == 240 + len(" ...")
    assert not cell.steps or cell.steps[-1].title != "Output unchanged (symbolic sizes)"


def test_short_refusal_is_shown_whole():
    cell = fs.prove_symbolic("rms", "bias-shared", eps)
    assert not cell.proved and " ..." not in cell.reason


def test_columns_and_rows_without_a_symbolic_form():
    cell = fs.prove_symbolic("layer", "bias-per-sample", eps)
    assert cell == fs.SymbolicCell(False, (), (), "the column bias-per-sample has no "
                                                  "symbolic form")
    cell = fs.prove_symbolic("center", "bias-shared", eps)
    assert cell == fs.SymbolicCell(False, (), (), "the row center has no symbolic form")


def test_cross_check_records_both_checks_and_refuses_by_name(monkeypatch):
    checks = []
    fs._cross_check("layer", "bias-shared", Layout(N=1, C=2, D=1), checks)
    assert [(ch.method, ch.passed) for ch in checks] == [
        ("symbolic-instance-transformation-N=1, C=2, P=1, G=1, D=1", True),
        ("symbolic-instance-output-N=1, C=2, P=1, G=1, D=1", True)]
    monkeypatch.setitem(fs.ACTIONS, "bias-shared", fs.ACTIONS["weight-matrix-rescaling"])
    checks = []
    with pytest.raises(fs._Refused, match=r"^the symbolic transformation differs from the "
                                          r"concrete one at N=1, C=2, P=1, G=1, D=1: W'\[1, 1\]"):
        fs._cross_check("layer", "bias-shared", Layout(N=1, C=2, D=1), checks)
    assert checks[0].detail.startswith("differs at W'[1, 1], ") and not checks[0].passed
    monkeypatch.setitem(fs.ACTIONS, "bias-shared", fs._actions()["bias-shared"])
    monkeypatch.setitem(fs.SHAPES, "rms", fs.SHAPES["layer"])
    checks = []
    with pytest.raises(fs._Refused, match=r"^the symbolic row differs from the concrete one at "
                                          r"N=1, C=2, P=1, G=1, D=1 \(the outputs of slice 1\)$"):
        fs._cross_check("rms", "bias-shared", Layout(N=1, C=2, D=1), checks)
    assert checks[-1].detail == "the outputs of slice 1 differ" and not checks[-1].passed


def test_the_statistics_row_checks_each_step_in_order():
    # case rescaling: the scale rho_n; over the batch's (n, p) the renamed scale is
    # rho_{n'} (not constant), over one sample's features (RMS) it stays rho_n
    honest = fs.ACTIONS["case-rescaling"]
    seen, scales = [], []

    def identity(method, title, left, right, note=""):
        seen.append(method)
        if method == "symbolic-constant-scale":
            scales.append((left, right, note))

    fs._statistics_row(fs.SHAPES["batch"], honest, eps, identity, [])
    assert seen == ["symbolic-action", "symbolic-constant-scale", "symbolic-constant-shift",
                    "symbolic-mean", "symbolic-variance", "symbolic-output"]
    assert scales == [(fs.rho[Symbol("n'", integer=True)], fs.rho[n],
                       "renamed n -> n', p -> p': unchanged")]
    seen.clear()
    fs._statistics_row(fs.SHAPES["rms"], honest, eps, identity, [])
    assert "symbolic-mean" not in seen and len(seen) == 5
    assert scales[-1] == (fs.rho[n], fs.rho[n], "renamed c -> c': unchanged")


def test_the_statistics_row_compares_the_right_sides():
    act = fs.ACTIONS["bias-shared"]
    got = {}

    def identity(method, title, left, right, note=""):
        got[method] = (title, left, right, note)

    fs._statistics_row(fs.SHAPES["layer"], act, sympy.S.Zero, identity, [])
    plain = Sum(W[c, e] * x[n, e, 1], (e, 1, D))
    assert got["symbolic-action"][1:3] == (plain + fs.b, plain + fs.b)
    assert got["symbolic-constant-scale"][1:] == (1, 1, "renamed c -> c': unchanged")
    assert got["symbolic-constant-shift"][1:3] == (fs.b, fs.b)
    assert got["symbolic-constant-shift"][0] == ("The shift is the same at every index the "
                                                 "statistics run over")
    moved = lambda nn, ch, pp: a[nn, ch.c, pp] + fs.b  # noqa: E731
    layer = fs.SHAPES["layer"]
    assert got["symbolic-mean"][1:3] == (fs.mean(layer, moved), fs.mean(layer, fs._plain)
                                         + fs.b)
    assert got["symbolic-variance"][1:3] == (fs.variance(layer, moved),
                                             fs.variance(layer, fs._plain))
    assert got["symbolic-variance"][0] == "Variance over the statistics' index set (symbolic M)"
    assert got["symbolic-output"][1:] == (fs.output(layer, moved, 0),
                                          fs.output(layer, fs._plain, 0),
                                          "at eps = 0: sqrt(scale**2 var) = scale sqrt(var), "
                                          "scale > 0")


def test_weight_compares_the_moved_and_plain_outputs():
    got = []
    fs._weight(fs.ACTIONS["bias-shared"], lambda *args: got.append(args), [])
    assert got == [("symbolic-output", "Output unchanged for symbolic D",
                    fs.weight_output(fs.ACTIONS["bias-shared"]), fs.weight_output(None),
                    "||delta v_c|| = delta ||v_c|| for delta > 0")]


def test_a_reason_exactly_as_long_as_the_limit_is_not_cut(monkeypatch):
    # "b[c'] = b[c]" has 12 characters: shown whole at a limit of 12, cut at 11
    monkeypatch.setattr(fs, "_REASON_CHARS", 12)
    cell = fs.prove_symbolic("layer", "bias-per-feature", eps)
    assert cell.reason.endswith(": b[c'] = b[c] did not reduce to 0")
    monkeypatch.setattr(fs, "_REASON_CHARS", 11)
    cell = fs.prove_symbolic("layer", "bias-per-feature", eps)
    assert cell.reason.endswith(": b[c'] = b[c ... did not reduce to 0")


# ---- actions that depend on the sample and position, and refusals in full ---- #

sigma = IndexedBase("sigma", positive=True)
u = IndexedBase("u", real=True)
p2 = Symbol("p'", integer=True)


def _by_position():
    """``x' = sigma_p x`` plus a bias ``u[n, p]``: scale ``sigma[p]``, shift ``u[n, p]``.

    No column of the table; an action the builders must read at the sample and
    position they are given.
    """
    return fs.Action(lambda cc, d: W[cc, d], lambda nn, d, pp: sigma[pp] * x[nn, d, pp],
                     lambda nn, ch, pp: u[nn, pp], lambda nn, ch, pp: sigma[pp],
                     lambda nn, ch, pp: u[nn, pp])


def test_the_statistics_row_reads_the_action_at_the_sample_and_position():
    got = {}

    def identity(method, title, left, right, note=""):
        got[method] = (left, right)

    fs._statistics_row(fs.SHAPES["instance"], _by_position(), eps, identity, [])
    plain = Sum(W[CHAN.c, e] * x[n, e, p], (e, 1, D))
    moved = Sum(W[CHAN.c, e] * sigma[p] * x[n, e, p], (e, 1, D))
    assert got["symbolic-action"] == (moved + u[n, p], sigma[p] * plain + u[n, p])
    # instance statistics run over p: the renamed scale and shift are sigma[p'], u[n, p']
    assert got["symbolic-constant-scale"] == (sigma[p2], sigma[p])
    assert got["symbolic-constant-shift"] == (u[n, p2], u[n, p])
    # the mean of a' over positions r: sum_r (sigma[r] a[n, c, r] + u[n, r]) / P
    assert got["symbolic-mean"][0] == Sum(sigma[r] * a[n, CHAN.c, r] + u[n, r], (r, 1, P)) / P


def test_weight_output_reads_the_bias_at_the_sample_and_position_one():
    act = fs.Action(lambda cc, d: W[cc, d], lambda nn, d, pp: x[nn, d, pp],
                    lambda nn, ch, pp: u[nn, pp, ch.c], lambda *_: 1, lambda *_: 0)
    plain = gamma[c] * Sum(W[c, e] * x[n, e, 1], (e, 1, D)) / sqrt(Sum(W[c, e] ** 2, (e, 1, D)))
    # features setting: one position, p = 1
    assert fs.weight_output(act) == plain + u[n, 1, c]


def test_a_failed_lemma_is_recorded_and_named(monkeypatch):
    wrong = sympy.Eq(Symbol("u"), 2 * Symbol("u"), evaluate=False)
    monkeypatch.setattr(fs, "lemma", lambda name: (wrong, False))
    cell = fs.prove_symbolic("layer", "bias-shared", eps)
    assert cell == fs.SymbolicCell(False, (), (
        fs.Check("symbolic-lemma-mean", False, "did not reduce to 0"),),
        "the lemma u = 2*u did not reduce to 0")
    assert cell.proved is False


def test_a_refused_cell_keeps_the_steps_it_proved():
    # layer statistics run over c: the per-feature bias b[c] is not constant there
    cell = fs.prove_symbolic("layer", "bias-per-feature", eps)
    assert cell.proved is False
    assert [st.title for st in cell.steps] == [
        "Lemma over k = 1..M (symbolic M)", "Lemma over k = 1..M (symbolic M)",
        "Action on the summed inputs a = W x (symbolic D)",
        "The scale is the same at every index the statistics run over"]
    assert [st.note for st in cell.steps] == ["s, t real", "s, t real", "",
                                              "renamed c -> c': unchanged"]


def test_identities_without_a_note_get_an_empty_note():
    cell = fs.prove_symbolic("group", "bias-per-group", eps)
    assert [st.note for st in cell.steps] == [
        "sums over symbolic ranges reduced by the finite-sum rules", "s, t real", "s, t real",
        "", "renamed q -> q', p -> p': unchanged", "renamed q -> q', p -> p': unchanged", "", "",
        "for every eps >= 0"]


def test_a_refused_identity_is_shown_unevaluated(monkeypatch):
    # a bias of 1 claimed as no shift: a' = a + 1 against a. Evaluated, SymPy's Eq of
    # two sides differing by the number 1 would print as "False"; the reason shows both.
    broken = fs.Action(lambda cc, d: W[cc, d], lambda nn, d, pp: x[nn, d, pp],
                       lambda *_: sympy.S.One, lambda *_: sympy.S.One, lambda *_: sympy.S.Zero)
    monkeypatch.setitem(fs.ACTIONS, "bias-shared", broken)
    cell = fs.prove_symbolic("layer", "bias-shared", eps)
    assert cell.reason == ("Action on the summed inputs a = W x (symbolic D): "
                           "Sum(W[c, e]*x[n, e, 1], (e, 1, D)) + 1 = "
                           "Sum(W[c, e]*x[n, e, 1], (e, 1, D)) did not reduce to 0")


def test_a_transformation_that_differs_names_every_entry(monkeypatch):
    # delta W in place of W and no bias in place of b, at N = 1, C = 2, D = 1:
    # both weights W[1, 1], W[2, 1] and both biases (n = 1, c = 1, 2, p = 1) differ
    monkeypatch.setitem(fs.ACTIONS, "bias-shared", fs.ACTIONS["weight-matrix-rescaling"])
    with pytest.raises(fs._Refused) as info:
        fs._cross_check("layer", "bias-shared", Layout(N=1, C=2, D=1), [])
    assert str(info.value) == ("the symbolic transformation differs from the concrete one at "
                               "N=1, C=2, P=1, G=1, D=1: W'[1, 1], W'[2, 1], bias[1, 1, 1], "
                               "bias[1, 2, 1]")
