"""Fast tests of the family claims' builders (bias parts, weight gradients).

Each builder's items are checked the cheap way: an identity must hold at
random exact rational points (a 30-digit evaluation), a nonzero must not
vanish at its point; labels, projections and claim texts are stated
literally, from the definitions in the modules' docstrings.
"""

import random

import pytest
import sympy
from sympy import Rational, Symbol, sqrt

from bnproof.symbolic import Identity, Nonzero
from bnproof.symbolic import _family_claims as fc
from bnproof.symbolic import _family_weight_grad as wg
from bnproof.symbolic._indexsets import Layout
from bnproof.symbolic._models import ConcreteBatch, SymbolicBatch

#: Two expressions are equal at a point when they agree to this many digits:
#: the values are exact rationals under square roots, evaluated with 40 digits.
DIGITS = 40
TOLERANCE = sympy.Float("1e-25")
eps = Symbol("epsilon", nonnegative=True)


def _value(expr, rng, fixed=None):
    """``expr`` at a random rational point (positive values for positive symbols)."""
    point = dict(fixed or {})
    for s in sorted(expr.free_symbols - set(point), key=str):
        num = rng.randint(1, 9) * (1 if s.is_positive or s.is_nonnegative
                                   else rng.choice((-1, 1)))
        point[s] = Rational(num, rng.randint(1, 5))
    return sympy.N(expr.xreplace(point), DIGITS)


def _holds(item, seed=0):
    rng = random.Random(seed)
    expr = item.lhs - item.rhs
    return all(abs(_value(expr, rng)) < TOLERANCE for _ in range(2))


def _witness(item, seed=0):
    return abs(_value(item.expr, random.Random(seed), item.where)) > TOLERANCE


def _label(item):
    return str(item.label)


# ---- the cancelling projection ------------------------------------------------- #


def test_cancelling_projection_of_each_row():
    lay = Layout(N=1, C=4, P=1, D=1, G=2)
    assert fc.cancelling_projection("batch", lay) == sympy.eye(4)
    assert fc.cancelling_projection("instance", lay) == sympy.eye(4)
    assert fc.cancelling_projection("rms", lay) == sympy.zeros(4, 4)
    assert fc.cancelling_projection("layer", lay) == sympy.ones(4, 4) / 4
    half = Rational(1, 2)
    assert fc.cancelling_projection("group", lay) == sympy.Matrix([
        [half, half, 0, 0], [half, half, 0, 0], [0, 0, half, half], [0, 0, half, half]])
    one_group = Layout(N=1, C=3, P=1, D=1, G=1)
    assert fc.cancelling_projection("group", one_group) == sympy.ones(3, 3) / 3
    with pytest.raises(ValueError, match=r"^no per-feature bias projection for row 'weight'$"):
        fc.cancelling_projection("weight", lay)


# ---- the bias parts ------------------------------------------------------------ #


@pytest.mark.parametrize(("row", "ranks", "witnesses"), [
    ("batch", (4, 2), 0), ("instance", (4, 2), 0), ("layer", (1, 1), 2),
    ("group", (2, 1), 2), ("rms", (0, 0), 2)])
def test_bias_part_items(row, ranks, witnesses):
    items = fc._bias_part(row)(None, {})
    setting = "features" if row in ("layer", "rms") else "channels"
    texts = {"features": ("N=2, C=3, P=1, G=1, D=2", "N=3, C=2, P=1, G=1, D=2"),
             "channels": ("N=2, C=4, P=2, G=2, D=2", "N=2, C=2, P=3, G=1, D=2")}[setting]
    if setting == "features":  # ranks are of the features layouts (C = 3, then C = 2)
        ranks = {"layer": (1, 1), "rms": (0, 0)}[row]
    labels = []
    for text in texts:
        labels += [f"y(a + b) - y(a + b - Pb) [{text}]", f"y(b) at a = 0 [{text}]",
                   f"rank P [{text}]"]
        if witnesses:
            labels.append(f"y(b - Pb) - beta at a = 0 [{text}]")
    assert [_label(it) for it in items] == labels
    identities = [it for it in items if isinstance(it, Identity)]
    ranked = [it for it in identities if _label(it).startswith("rank")]
    assert [(int(it.lhs), int(it.rhs)) for it in ranked] == [(r, r) for r in ranks]
    for it in identities:
        assert it.rhs == 0 or _label(it).startswith("rank")
        assert _holds(it), _label(it)
    nonzeros = [it for it in items if isinstance(it, Nonzero)]
    assert len(nonzeros) == witnesses
    for it in nonzeros:
        assert it.where == {eps: Rational(1, 2)}
        assert _witness(it), _label(it)


def test_the_layer_witness_is_the_kept_bias_normalized():
    # layer norm, C = 3, a = 0: the output at (1, 1, 1) is gamma_1 k_1 / sqrt(ms(k) + eps)
    # with k = b - mean(b), minus beta_1
    [*_, witness] = [it for it in fc._bias_part("layer")(None, {}) if isinstance(it, Nonzero)]
    # the last witness is of the second layout, C = 2: k = (b1 - b2) / 2 * (1, -1)
    b1, b2 = Symbol("b_{1}", real=True), Symbol("b_{2}", real=True)
    g1 = Symbol("gamma_{1}", real=True)
    k1 = (b1 - b2) / 2
    expected = g1 * k1 / sqrt(k1**2 + eps)
    assert sympy.simplify(witness.expr - expected) == 0


def test_bias_part_normalizes_a_plus_b_and_a_plus_the_kept_part(monkeypatch):
    # y(a + b), y(a + b - P b), y(b), y(b - P b) at a = 0, with P the mean over the
    # features (layer norm): the kept part is b_c - (b_1 + b_2 + b_3) / 3 at C = 3
    calls = []
    real = fc._normalize

    def spy(row, lay, a, eps_value, dat):
        calls.append((lay, dict(a), eps_value))
        return real(row, lay, a, eps_value, dat)

    monkeypatch.setattr(fc, "_normalize", spy)
    fc._bias_part("layer")(None, {})
    assert len(calls) == 8  # four per layout
    lay = Layout(N=2, C=3, D=2)
    b = [Symbol(f"b_{{{c}}}", real=True) for c in (1, 2, 3)]
    kept = [v - sum(b) / 3 for v in b]
    acts = {(n, c, 1): Symbol(f"a_{{{n},{c},1}}", real=True) for n in (1, 2) for c in (1, 2, 3)}
    wanted = [{i: v + b[i[1] - 1] for i, v in acts.items()},
              {i: v + kept[i[1] - 1] for i, v in acts.items()},
              {i: b[i[1] - 1] for i in acts},
              {i: kept[i[1] - 1] for i in acts}]
    for (got_lay, got, got_eps), want in zip(calls[:4], wanted, strict=True):
        assert got_lay == lay and got_eps == eps
        assert got.keys() == want.keys()
        assert all(sympy.expand(got[i] - want[i]) == 0 for i in want)


def test_a_bias_part_identity_that_is_false_does_not_hold():
    # the checker of this file can say no: layer norm does not cancel b_c as a whole
    items = fc._bias_part("rms")(None, {})
    first = items[0]
    shifted = Identity(first.label, first.lhs + Symbol("b_{1}", real=True), 0)
    assert not _holds(shifted)


# ---- the weight gradients at concrete sizes ------------------------------------ #


@pytest.mark.parametrize(("row", "per_vector", "channels"), [
    ("batch", True, 2), ("instance", True, 2), ("weight", True, 2), ("layer", False, 3),
    ("rms", False, 3), ("group", False, 4)])
def test_weight_grad_items(row, per_vector, channels):
    items = fc._weight_grad(row)(None, {})
    labels = [r"\langle W, \nabla_W L \rangle"]
    if per_vector:
        labels += [rf"\langle W_{c}, \nabla_{{W_{c}}} L \rangle"
                   for c in range(1, channels + 1)]
    else:
        labels.append(r"\langle W_1, \nabla_{W_1} L \rangle")
    assert [_label(it) for it in items] == labels
    assert isinstance(items[0], Identity) and items[0].rhs == 0
    assert items[0].lhs != 0
    assert _holds(items[0])
    for it in items[1:]:
        if per_vector:
            assert isinstance(it, Identity) and it.lhs != 0 and _holds(it)
        else:
            assert isinstance(it, Nonzero) and it.where == {} and _witness(it)


def test_weight_grad_layouts_have_three_values_per_statistic():
    # every statistic runs over at least three values (a docstring promise)
    assert fc.WEIGHT_GRAD_LAYOUTS == {
        "batch": Layout(N=3, C=2, P=1), "weight": Layout(N=2, C=2),
        "layer": Layout(N=1, C=3), "rms": Layout(N=1, C=3),
        "group": Layout(N=1, C=4, P=2, G=2), "instance": Layout(N=1, C=2, P=3)}


def test_the_layer_product_is_the_activation_weighted_gradient():
    # <W_1, grad_{W_1} L> = sum_n a[n, 1] dL/da[n, 1] with dL/da the chain rule through y
    items = fc._weight_grad("layer")(None, {})
    a = [Symbol(f"a_{{1,{c},1}}", real=True) for c in (1, 2, 3)]
    g = [Symbol(f"g_{{1,{c},1}}", real=True) for c in (1, 2, 3)]
    gam = [Symbol(f"gamma_{{{c}}}", real=True) for c in (1, 2, 3)]
    mu = sum(a) / 3
    sd = sqrt(sum((v - mu) ** 2 for v in a) / 3)
    y = [gam[c] * (a[c] - mu) / sd for c in range(3)]
    da1 = sum(g[c] * sympy.diff(y[c], a[0]) for c in range(3))
    rng = random.Random(3)
    assert abs(_value(items[1].expr - a[0] * da1, rng)) < TOLERANCE


# ---- the claims ---------------------------------------------------------------- #


def _registered(monkeypatch):
    claims = {}
    monkeypatch.setattr(fc, "register", lambda claim: claims.setdefault(claim.id, claim))
    fc.register_claims()
    return claims


def test_register_claims_ids_and_texts(monkeypatch):
    claims = _registered(monkeypatch)
    rows = ("batch", "instance", "layer", "rms", "group", "weight")
    assert list(claims) == (
        [f"{r}-weight-grad-orthogonal-symbolic" for r in rows]
        + [f"{r}-bias-cancelling-part" for r in ("batch", "layer", "rms", "group", "instance")]
        + [f"{r}-weight-grad-orthogonal"
           for r in ("batch", "weight", "layer", "rms", "group", "instance")])
    assert all(c.group == "family" and c.expected == "proved" for c in claims.values())
    part = claims["group-bias-cancelling-part"]
    assert part.statement == (
        "Under group normalization a per-feature bias b splits into a part P b that cancels "
        "(dimension G) and a rest b - P b that changes the output whenever it is not 0 "
        "(eps > 0).")
    assert part.assumptions == ("eps >= 0 (the witness: eps = 1/2)", "gamma_c != 0",
                                "sizes: N=2, C=4, P=2, G=2, D=2; N=2, C=2, P=3, G=1, D=2")
    assert part.section == ("Ba, Kiros & Hinton (2016), section 5.1; Wu & He 2018, eq. 1-3")
    assert part.latex == r"\text{group-bias-cancelling-part}"
    assert part.symbolic_n_expected is False
    assert claims["layer-bias-cancelling-part"].assumptions[2] == (
        "sizes: N=2, C=3, P=1, G=1, D=2; N=3, C=2, P=1, G=1, D=2")
    batch = claims["batch-weight-grad-orthogonal"]
    assert batch.statement == (
        "Under batch normalization (training), weights W feeding it satisfy <W, grad_W L> = 0 "
        "for any loss (eps = 0), and so does every weight vector W_c on its own.")
    assert batch.assumptions == ("eps = 0", "sizes: N=3, C=2, P=1, G=1, D=2")
    assert batch.section == ("Salimans & Kingma (2016); van Laarhoven (2017); "
                             "Ioffe & Szegedy 2015, Algorithm 1")
    weight = claims["weight-weight-grad-orthogonal"]
    assert weight.statement == (
        "Under weight normalization, weights W feeding it satisfy <W, grad_W L> = 0 for any "
        "loss, and so does every weight vector W_c on its own.")
    assert weight.assumptions == ("every v_c != 0", "sizes: N=2, C=2, P=1, G=1, D=2")
    assert claims["instance-weight-grad-orthogonal"].statement.endswith(
        "for any loss (eps = 0), and so does every weight vector W_c on its own.")
    assert claims["rms-weight-grad-orthogonal"].assumptions[0] == "eps = 0"
    assert claims["layer-weight-grad-orthogonal"].statement.endswith(
        "for any loss (eps = 0); a single weight vector's product is not 0 (witness).")


def test_symbolic_claims_texts(monkeypatch):
    claims = _registered(monkeypatch)
    group = claims["group-weight-grad-orthogonal-symbolic"]
    assert group.assumptions == (
        "eps = 0 (witness for eps = 1/2)",
        "symbolic K channels of a group, P positions and D inputs; concrete K = 2, P = 2, "
        "D = 2")
    assert group.expected == "proved" and group.symbolic_n_expected is True
    assert group.section == "Wu & He (2018); van Laarhoven (2017)"
    assert group.latex.startswith(r"\sum_{q=1}^{K}")
    layer = claims["layer-weight-grad-orthogonal-symbolic"]
    assert layer.assumptions == ("eps = 0 (witness for eps = 1/2)",
                                 "symbolic C features and D inputs; concrete C = 2..3, D = 2")
    weight = claims["weight-weight-grad-orthogonal-symbolic"]
    assert weight.assumptions == (
        "every v != 0 (witness: sqrt(||v||^2 + eps), eps = 1/2)",
        "symbolic N samples and D inputs; concrete N = 2..3, D = 2")
    assert weight.statement.startswith("For weight normalization y_n = g sum_d v[d]")


def test_claims_prove_through_establish(monkeypatch):
    claims = _registered(monkeypatch)
    calls = []

    def fake(cid, build, **kw):
        calls.append((cid, kw))
        return cid

    monkeypatch.setattr(fc, "establish", fake)
    assert claims["layer-bias-cancelling-part"].prove(9) == "layer-bias-cancelling-part"
    assert claims["rms-weight-grad-orthogonal"].prove(9) == "rms-weight-grad-orthogonal"
    assert claims["layer-weight-grad-orthogonal-symbolic"].prove(9) is not None
    assert claims["group-weight-grad-orthogonal-symbolic"].prove(9) is not None
    assert claims["batch-weight-grad-orthogonal-symbolic"].prove(2) is not None
    assert calls == [
        ("layer-bias-cancelling-part", {"n_max": 2, "symbolic": False}),
        ("rms-weight-grad-orthogonal", {"n_max": 2, "symbolic": False}),
        ("layer-weight-grad-orthogonal-symbolic", {"n_max": 3}),
        ("group-weight-grad-orthogonal-symbolic", {"n_max": 2}),
        ("batch-weight-grad-orthogonal-symbolic", {"n_max": 2}),
    ]


def test_each_claim_builds_its_own_row(monkeypatch):
    claims = _registered(monkeypatch)
    builds = {}
    monkeypatch.setattr(fc, "establish", lambda cid, build, **kw: builds.setdefault(cid, build))
    for cid in ("rms-bias-cancelling-part", "instance-weight-grad-orthogonal",
                "weight-weight-grad-orthogonal-symbolic"):
        claims[cid].prove(3)
    rms = builds["rms-bias-cancelling-part"](None, {})
    assert _label(rms[2]) == "rank P [N=2, C=3, P=1, G=1, D=2]" and rms[2].rhs == 0
    inst = builds["instance-weight-grad-orthogonal"](None, {})
    assert len(inst) == 3  # the whole matrix and each of the two channels
    weight = builds["weight-weight-grad-orthogonal-symbolic"](ConcreteBatch(2), {})
    assert _label(weight[0]) == r"\langle v, \nabla_v L \rangle"


# ---- the symbolic-size builders at concrete sizes --------------------------------- #


@pytest.mark.parametrize("row", ["batch", "instance", "layer", "rms", "weight", "group"])
def test_weight_grad_symbolic_holds_at_a_concrete_size(row):
    identity, witness = wg.weight_grad_symbolic(row)(ConcreteBatch(2), {})
    assert isinstance(identity, Identity) and identity.rhs == 0 and identity.ranges == {}
    assert identity.lhs != 0 and _holds(identity), row
    assert isinstance(witness, Nonzero) and witness.where == {eps: Rational(1, 2)}
    assert _witness(witness), row
    assert witness.label == identity.label


def test_weight_grad_symbolic_labels_and_ranges():
    d, e, f = (Symbol(s, integer=True) for s in "def")
    D = Symbol("D", integer=True, positive=True)
    batch = SymbolicBatch()
    items = {row: wg.weight_grad_symbolic(row)(batch, {}) for row in wg.SYMBOLIC_ROWS}
    assert str(items["batch"][0].label) == r"\langle w, \nabla_w L \rangle"
    assert str(items["weight"][0].label) == r"\langle v, \nabla_v L \rangle"
    assert str(items["layer"][0].label) == r"\langle W, \nabla_W L \rangle"
    assert str(items["group"][0].label) == (r"\langle W_{\mathcal{G}}, "
                                            r"\nabla_{W_{\mathcal{G}}} L \rangle")
    assert items["batch"][0].ranges == {**batch.ranges, e: (1, D)}
    assert items["weight"][0].ranges == {**batch.ranges, e: (1, D)}
    assert items["layer"][0].ranges == {**batch.ranges, e: (1, D), f: (1, batch.size)}
    assert items["group"][0].ranges == {e: (1, D), f: (1, batch.size)}
    for row, (identity, witness) in items.items():
        assert identity.label.is_real and identity.rhs == 0, row
        assert witness.where == {eps: Rational(1, 2)}, row
        assert identity.lhs.has(sympy.Sum) and D in identity.lhs.free_symbols, row
        assert eps not in identity.lhs.free_symbols and eps in witness.expr.free_symbols, row
    assert d not in items["batch"][0].lhs.free_symbols


def test_the_group_builder_normalizes_over_channels_and_positions():
    # K = 2 channels, P = 2 positions, D = 2: y = gamma_q (a - mu) / sd + beta_q with
    # mu, sd over the four values a[q, p] = sum_d W[q, d] x[d, p]
    def s(name, *idx):
        return Symbol(f"{name}_{{{','.join(map(str, idx))}}}", real=True)

    a = {(q, p): s("W", q, 1) * s("x", 1, p) + s("W", q, 2) * s("x", 2, p)
         for q in (1, 2) for p in (1, 2)}
    mu = sum(a.values()) / 4
    sd = sqrt(sum((v - mu) ** 2 for v in a.values()) / 4)
    loss = sum(s("g", q, p) * (s("gamma", q) * (a[q, p] - mu) / sd + s("beta", q))
               for q, p in a)
    weights = [s("W", q, k) for q in (1, 2) for k in (1, 2)]
    scale = {1: 1, 2: 3}  # row 2 weighed three times: a product that is not 0
    expected = sum(scale[int(str(w)[3])] * w * sympy.diff(loss, w) for w in weights)
    identity, _ = wg.weight_grad_symbolic("group", row_scale=lambda c: scale[c])(
        ConcreteBatch(2), {})
    rng = random.Random(5)
    point = {sym: Rational(rng.randint(1, 9), rng.randint(1, 4)) * rng.choice((-1, 1))
             for sym in sorted(expected.free_symbols, key=str)}
    assert abs(sympy.N((identity.lhs - expected).xreplace(point), DIGITS)) < TOLERANCE
    assert abs(sympy.N(expected.xreplace(point), DIGITS)) > TOLERANCE


def test_the_weight_norm_builder_is_g_v_dot_x_over_the_norm():
    v1, v2, g = (Symbol(n, real=True) for n in ("v_1", "v_2", "g"))
    xs = {(t, c): Symbol(f"x_{{{t},{c}}}", real=True) for t in (1, 2) for c in (1, 2)}
    G = [Symbol(f"G_{t}", real=True) for t in (1, 2)]
    identity, witness = wg.weight_grad_symbolic("weight")(ConcreteBatch(2), {})

    def product(floor):
        loss = sum(G[t - 1] * g * (v1 * xs[t, 1] + v2 * xs[t, 2]) / sqrt(v1**2 + v2**2 + floor)
                   for t in (1, 2))
        return v1 * sympy.diff(loss, v1) + v2 * sympy.diff(loss, v2)

    rng = random.Random(7)
    for got, want in ((identity.lhs, product(0)), (witness.expr, product(eps))):
        syms = got.free_symbols | want.free_symbols
        point = {sym: Rational(rng.randint(1, 9), rng.randint(1, 4))
                 for sym in sorted(syms, key=str)}
        assert abs(sympy.N((got - want).xreplace(point), DIGITS)) < TOLERANCE


def test_the_per_vector_builder_sums_u_times_w():
    items = wg.weight_grad_symbolic("batch")(ConcreteBatch(2), {})
    names = {str(s) for s in items[0].lhs.free_symbols}
    assert {"U_{1,1}", "U_{1,2}", "U_{2,1}", "U_{2,2}", "w_1", "w_2"} <= names
    items = wg.weight_grad_symbolic("instance")(ConcreteBatch(3), {})
    names = {str(s) for s in items[0].lhs.free_symbols}
    assert {"x_{3,1}", "x_{3,2}", "w_1", "w_2"} <= names and "x_{4,1}" not in names
    assert "U_{1,1}" not in names


def test_unknown_symbolic_row_is_named():
    with pytest.raises(ValueError, match=r"^no symbolic weight-gradient claim for row 'x'; "
                                         r"choose one of batch, instance, layer, rms, group, "
                                         r"weight$"):
        wg.weight_grad_symbolic("x")


def test_rms_and_layer_builders_differ():
    # the RMS builder must not centre: at a point where the values have a nonzero mean
    # the two products differ at eps = 1/2 (the witnesses)
    rms = wg.weight_grad_symbolic("rms")(ConcreteBatch(2), {})[1]
    layer = wg.weight_grad_symbolic("layer")(ConcreteBatch(2), {})[1]
    rng = random.Random(11)
    syms = rms.expr.free_symbols | layer.expr.free_symbols
    point = {sym: Rational(rng.randint(1, 9), rng.randint(1, 4)) for sym in sorted(syms, key=str)}
    point[eps] = Rational(1, 2)
    assert abs(sympy.N((rms.expr - layer.expr).xreplace(point), DIGITS)) > TOLERANCE


def _concrete_names(expr, braces):
    """``W[1, 2]`` -> ``W_{1,2}``; one index: ``x_1`` (``x_{1}`` for the bases in braces)."""
    def name(e):
        idx = [str(int(i)) for i in e.indices]
        if len(idx) == 1 and str(e.base) not in braces:
            return Symbol(f"{e.base}_{idx[0]}", real=True)
        return Symbol(f"{e.base}_{{{','.join(idx)}}}", real=True)

    return expr.xreplace({e: name(e) for e in expr.atoms(sympy.Indexed)})


#: Bases written with braces at concrete sizes (``_concrete``), per row; the others are
#: the engine's batch items, ``gamma_1``.
_BRACES = {"batch": (), "instance": (), "weight": (), "layer": ("x",), "rms": ("x",),
           "group": ("W", "x", "gamma", "beta", "g")}


@pytest.mark.parametrize("row", ["batch", "instance", "layer", "rms", "weight", "group"])
def test_the_symbolic_builder_written_out_is_the_concrete_one(row):
    # the symbolic-size items with N = K = 2, D = 2 (and P = 2 for group), sums written
    # out, equal the concrete items at N = 2 at a random point: the witness too
    from bnproof.symbolic import _family_symbolic as fs

    build = wg.weight_grad_symbolic(row)
    symbolic, concrete = build(SymbolicBatch(), {}), build(ConcreteBatch(2), {})
    rng = random.Random(13)
    for sym_item, conc_item in zip(symbolic, concrete, strict=True):
        assert type(sym_item) is type(conc_item)
        get = (lambda it: it.lhs) if isinstance(sym_item, Identity) else (lambda it: it.expr)
        written = fs.instantiate(get(sym_item), {"N": 2, "D": 2, "P": 2}, keep_indexed=True)
        written = _concrete_names(written, _BRACES[row])
        want = get(conc_item)
        assert written.free_symbols == want.free_symbols
        point = {s: Rational(rng.randint(1, 9), rng.randint(1, 4))
                 * (1 if s.is_nonnegative else rng.choice((-1, 1)))
                 for s in sorted(want.free_symbols, key=str)}
        assert abs(sympy.N((written - want).xreplace(point), DIGITS)) < TOLERANCE


@pytest.mark.parametrize(("row", "bases"), [
    ("batch", {"U", "w", "g"}), ("instance", {"x", "w", "g"}),
    ("layer", {"W", "x", "g", "gamma"}), ("rms", {"W", "x", "g", "gamma"}),
    ("weight", {"v", "x", "G"}), ("group", {"W", "x", "g", "gamma"})])
def test_the_symbolic_products_are_of_real_data(row, bases):
    # weights, inputs, gains and the loss gradient are real numbers (beta drops out of
    # the derivative); a value not known real would change what the zero test may do
    identity, witness = wg.weight_grad_symbolic(row)(SymbolicBatch(), {})
    for expr in (identity.lhs, witness.expr):
        indexed = expr.atoms(sympy.Indexed)
        assert {str(e.base) for e in indexed} == bases
        assert all(e.is_real for e in indexed), row


def test_the_weight_norm_product_per_channel_is_written_by_hand():
    # weight normalization at N = 2, C = 2, D = 2: y[n, c] = gamma_c W_c . x_n / ||W_c||,
    # <W_c, grad_{W_c} L> with dL/dy = g; channel 2's product, at a random point
    def r(name, *idx):
        return Symbol(f"{name}_{{{','.join(map(str, idx))}}}", real=True)

    W = {(c, d): r("W", c, d) for c in (1, 2) for d in (1, 2)}
    y = {(n, c): r("gamma", c) * (W[c, 1] * r("x", n, 1, 1) + W[c, 2] * r("x", n, 2, 1))
         / sqrt(W[c, 1] ** 2 + W[c, 2] ** 2) for n in (1, 2) for c in (1, 2)}
    loss = sum(r("g", n, c, 1) * v for (n, c), v in y.items())
    want = sum(W[2, d] * sympy.diff(loss, W[2, d]) for d in (1, 2))
    items = fc._weight_grad("weight")(None, {})
    got = items[2].lhs
    assert got.free_symbols == want.free_symbols
    rng = random.Random(17)
    point = {s: Rational(rng.randint(1, 9), rng.randint(1, 4)) * rng.choice((-1, 1))
             for s in sorted(want.free_symbols, key=str)}
    assert abs(sympy.N((got - want).xreplace(point), DIGITS)) < TOLERANCE
    # and channel 2's gain is gamma_2, not gamma_1
    assert r("gamma", 2) in got.free_symbols and r("gamma", 1) not in got.free_symbols


# ---- the layer, RMS and group builders against products written by hand ---------- #


def _braced(name, *idx):
    return Symbol(f"{name}_{{{','.join(map(str, idx))}}}", real=True)


def _agree(got, want, seed):
    """``got`` equals ``want`` at a random point where ``want`` is not 0."""
    assert got.free_symbols <= want.free_symbols | {eps}
    rng = random.Random(seed)
    point = {s: Rational(rng.randint(1, 9), rng.randint(1, 4))
             * (1 if s.is_nonnegative else rng.choice((-1, 1)))
             for s in sorted(got.free_symbols | want.free_symbols, key=str)}
    assert abs(sympy.N((got - want).xreplace(point), DIGITS)) < TOLERANCE
    return abs(sympy.N(want.xreplace(point), DIGITS)) > TOLERANCE


@pytest.mark.parametrize("row", ["layer", "rms"])
def test_the_whole_matrix_builders_are_written_by_hand(row):
    # one sample's C = 2 features, D = 2: a_c = W_{c,1} x_{1} + W_{c,2} x_{2};
    # layer: y_c = gamma_c (a_c - mu) / sqrt(var + floor) + beta_c, mean and biased
    # variance over c; RMS: y_c = gamma_c a_c / sqrt(mean_c(a_c**2) + floor) + beta_c.
    # The product sum_{c, d} W[c, d] dL/dW[c, d] with dL/dy_c = g_c: 0 at floor 0,
    # not 0 at floor eps (the witness)
    W = [_braced("W", c, d) for c in (1, 2) for d in (1, 2)]
    a = {c: _braced("W", c, 1) * _braced("x", 1) + _braced("W", c, 2) * _braced("x", 2)
         for c in (1, 2)}
    gamma, beta, g = ({c: Symbol(f"{name}_{c}", real=True) for c in (1, 2)}
                      for name in ("gamma", "beta", "g"))

    def product(floor):
        mu = (a[1] + a[2]) / 2 if row == "layer" else 0
        sd = sqrt(((a[1] - mu) ** 2 + (a[2] - mu) ** 2) / 2 + floor)
        loss = sum(g[c] * (gamma[c] * (a[c] - mu) / sd + beta[c]) for c in (1, 2))
        return sum(w * sympy.diff(loss, w) for w in W)

    identity, witness = wg.weight_grad_symbolic(row)(ConcreteBatch(2), {})
    _agree(identity.lhs, product(0), 19)
    assert _agree(witness.expr, product(eps), 19)


def test_the_group_witness_floors_the_variance():
    # K = 2 channels, P = 2 positions, D = 2, as in the group test above, at floor eps:
    # y = gamma_q (a - mu) / sqrt(var + eps) + beta_q; the product over the group's rows
    a = {(q, p): _braced("W", q, 1) * _braced("x", 1, p) + _braced("W", q, 2) * _braced("x", 2, p)
         for q in (1, 2) for p in (1, 2)}
    mu = sum(a.values()) / 4
    sd = sqrt(sum((v - mu) ** 2 for v in a.values()) / 4 + eps)
    loss = sum(_braced("g", q, p) * (_braced("gamma", q) * (a[q, p] - mu) / sd
                                     + _braced("beta", q)) for q, p in a)
    weights = [_braced("W", q, k) for q in (1, 2) for k in (1, 2)]
    want = sum(w * sympy.diff(loss, w) for w in weights)
    _, witness = wg.weight_grad_symbolic("group")(ConcreteBatch(2), {})
    assert _agree(witness.expr, want, 23)


def test_the_symbolic_group_sums_run_over_integer_indices():
    # a[q, p] = sum_d W[q, d] x[d, p]; the mean over (q, p), the variance over (r, s), the
    # loss over (h, t) and the product over rows f and inputs e: integer indices only
    identity, witness = wg.weight_grad_symbolic("group")(SymbolicBatch(), {})
    for expr in (identity.lhs, witness.expr):
        bound = {lim[0] for total in expr.atoms(sympy.Sum) for lim in total.limits}
        assert bound == {Symbol(name, integer=True) for name in "qprshtdef"}
