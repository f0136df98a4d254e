"""Adversarial checks of the symbolic routes: false statements must not be proved.

Each test either reproduces a statement the rule set once proved although it
is false, or is a negative control: a near miss of a true claim (eps > 0, an
index shift, unequal weights, a bias along the statistics axis) that the
symbolic route must refuse, next to the true claim that it proves. The
invariance cells and the weight-gradient claims are also checked against an
independent NumPy computation at random sizes.
"""

import numpy as np
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


# ---- near misses of <w, grad_w L> = 0 (symbolic N and D) --------------------- #
#
# The product is 0 exactly when the outputs do not change under w -> s w
# (s > 0). A bias shared by the batch is removed by the mean, so the claim
# still holds; a bias that varies over the samples (or any bias under RMS
# normalization, which does not centre) breaks it. The symbolic route must
# prove the first and not the others.

D = Symbol("D", integer=True, positive=True)
CONCRETE_D = 2


def _with_bias(model, bias):
    """Builder of <w, grad_w L> at eps = 0 for a_t = sum_d U[t, d] w[d] + bias(t)."""
    from bnproof.symbolic import SymbolicBatch, loss_gradient

    def build(batch, indices):
        if isinstance(batch, SymbolicBatch):
            d, e = Symbol("d", integer=True), Symbol("e", integer=True)
            U, w = IndexedBase("U", real=True), IndexedBase("w", real=True)
            fitted = model(batch, lambda t: Sum(U[t, d] * w[d], (d, 1, D)) + bias(batch, t),
                           eps=sympy.S.Zero)
            lhs = Sum(w[e] * loss_gradient(fitted, w[e]), (e, 1, D))
            ranges = {**batch.ranges, e: (1, D)}
        else:
            ws = [Symbol(f"w_{c}", real=True) for c in range(1, CONCRETE_D + 1)]

            def values(t):
                return sympy.Add(*(Symbol(f"U_{{{t},{c}}}", real=True) * wc
                                   for c, wc in enumerate(ws, 1))) + bias(batch, t)

            fitted = model(batch, values, eps=sympy.S.Zero)
            lhs = sympy.Add(*(wc * loss_gradient(fitted, wc) for wc in ws))
            ranges = {}
        return [Identity(Symbol("P"), lhs, 0, ranges)]

    return build


def _shared(batch, t):
    return Symbol("c", real=True)


def _per_sample(batch, t):
    return batch.item(IndexedBase("c", real=True), t)


def _symbolic_zero(build):
    from bnproof.symbolic import SymbolicBatch

    (item,) = build(SymbolicBatch(), {})
    try:
        return vanishes(item.lhs - item.rhs, item.ranges).is_zero
    except SumRuleError:
        return False


def test_a_bias_shared_by_the_batch_keeps_the_weight_orthogonal_to_its_gradient():
    from bnproof.symbolic import training

    # the control: true, and proved for symbolic N and D
    assert _symbolic_zero(_with_bias(training, _shared))
    proof = establish("shared-bias-orthogonal", _with_bias(training, _shared), n_max=3)
    assert proof.verdict == "proved" and proof.symbolic_n, proof.reason


@pytest.mark.parametrize(("model", "bias"), [("training", _per_sample), ("rms", _shared)],
                         ids=["batch-per-sample-bias", "rms-shared-bias"])
def test_a_bias_the_statistics_do_not_remove_is_not_proved_orthogonal(model, bias):
    import bnproof.symbolic as bs

    build = _with_bias(getattr(bs, model), bias)
    assert not _symbolic_zero(build)
    proof = establish(f"{model}-bias-orthogonal", build, n_max=3)
    assert proof.verdict == "refuted" and not proof.symbolic_n, proof.reason


# ---- the invariance table and the weight gradients, in NumPy ------------------ #
#
# An independent float64 computation at sizes larger than the concrete grid:
# every invariant cell must leave the outputs unchanged under its condition,
# and every refuted cell (and every eps = 0 cell at eps > 0) must change them.

#: Relative size of a float64 round-off difference in these outputs.
RTOL = 1e-9
#: A change this large is a real change, ten orders above round-off (eps > 0
#: changes an output by about eps / var, small when the variance is large).
CHANGED = 1e-6


def _sizes(rng):
    # at least two values under every statistic, so var > 0 at eps = 0; K >= 2
    # (with one channel per group, group normalization is instance normalization)
    # F >= 3 (two features standardize to -1, 1 whatever the weights) and D >= 2
    # (one input: v / ||v|| is a sign, unchanged by most recenterings)
    return dict(N=int(rng.integers(2, 5)), G=int(rng.integers(1, 4)), K=int(rng.integers(2, 4)),
                P=int(rng.integers(2, 5)), D=int(rng.integers(2, 5)), F=int(rng.integers(3, 6)))


def _numpy_outputs(row, W, x, bias, eps_value, gamma, beta, K):
    a = np.einsum("cd,ndp->ncp", W, x)
    if row == "weight":  # g_c v_c . x_n / ||v_c||, then the bias
        return gamma[None, :, None] * a / np.sqrt((W * W).sum(axis=1))[None, :, None] + bias
    a = a + bias
    n, c, p = a.shape
    if row == "group":
        a = a.reshape(n, c // K, K, p)
    axes = {"batch": (0, 2), "layer": (1, 2), "rms": (1, 2), "group": (2, 3),
            "instance": (2,)}[row]
    mu = a.mean(axis=axes, keepdims=True) if row != "rms" else 0.0
    var = ((a - mu) ** 2).mean(axis=axes, keepdims=True)
    xhat = ((a - mu) / np.sqrt(var + eps_value)).reshape(n, c, p)
    return gamma[None, :, None] * xhat + beta[None, :, None]


def _numpy_cell(row, column, eps_value, rng, sz):
    from bnproof.symbolic import ROWS

    features = ROWS[row].setting == "features"
    N, D = sz["N"], sz["D"]
    C, P, K = (sz["F"], 1, 1) if features else (sz["G"] * sz["K"], sz["P"], sz["K"])
    W, x = rng.normal(size=(C, D)), rng.normal(size=(N, D, P))
    gamma, beta = rng.normal(size=C), rng.normal(size=C)
    s, b = rng.normal(size=D), rng.normal()
    # scales away from 1, so that a change they cause is not small
    delta, delta_c, rho = rng.uniform(2, 4), rng.uniform(2, 4, size=C), rng.uniform(2, 4, N)
    b_c, b_g = rng.normal(size=C), rng.normal(size=C // K)
    W2, x2, bias = W, x, np.zeros((N, C, P))
    if column == "weight-matrix-rescaling":
        W2 = delta * W
    elif column == "weight-matrix-recentering":
        W2 = W + s[None, :]
    elif column == "weight-vector-rescaling":
        W2 = delta_c[:, None] * W
    elif column == "dataset-rescaling":
        x2 = delta * x
    elif column == "dataset-recentering":
        x2 = x + s[None, :, None]
    elif column == "case-rescaling":
        x2 = rho[:, None, None] * x
    elif column == "bias-shared":
        bias = bias + b
    elif column == "bias-per-feature":
        bias = bias + b_c[None, :, None]
    else:  # bias-per-group: channel c in group c // K
        bias = bias + np.repeat(b_g, K)[None, :, None]
    before = _numpy_outputs(row, W, x, np.zeros_like(bias), eps_value, gamma, beta, K)
    after = _numpy_outputs(row, W2, x2, bias, eps_value, gamma, beta, K)
    return np.abs(after - before).max() / (1 + np.abs(before).max())


def _numpy_disagreements(expected, rng):
    """Cells whose NumPy outputs contradict ``expected`` at three random sets of sizes."""
    from bnproof.symbolic import cells
    from bnproof.symbolic._family import EPS_ZERO

    bad = set()
    for _ in range(3):
        sz = _sizes(rng)
        for row, column, cid in cells():
            verdict, condition = expected[row, column]
            at_zero = _numpy_cell(row, column, 0.0, rng, sz)
            positive = _numpy_cell(row, column, 0.7, rng, sz)
            if verdict == "refuted":
                ok = max(at_zero, positive) > CHANGED
            elif condition == EPS_ZERO:
                ok = at_zero < RTOL and positive > CHANGED
            else:  # any eps >= 0, or weight normalization (no eps)
                ok = max(at_zero, positive) < RTOL
            if not ok:
                bad.add(cid)
    return bad


def test_numpy_agrees_with_every_cell_of_the_table(rng):
    from bnproof.symbolic._family import EXPECTED

    assert sum(v == "proved" for v, _ in EXPECTED.values()) == 30
    assert _numpy_disagreements(EXPECTED, rng) == set()


def test_the_numpy_check_of_the_table_can_say_no(rng):
    from bnproof.symbolic._family import ANY_EPS, EXPECTED

    wrong = {**EXPECTED, ("layer", "dataset-recentering"): ("proved", ANY_EPS),
             ("batch", "weight-matrix-rescaling"): ("proved", ANY_EPS),
             ("group", "bias-per-group"): ("refuted", "")}
    assert _numpy_disagreements(wrong, rng) == {
        "layer-dataset-recentering", "batch-weight-matrix-rescaling", "group-bias-per-group"}


def _weight_dot_grad(row, eps_value, rng, sz, row_scale=None):
    """<W, grad_W L> for L = sum g * y, by a complex step along W (exact to round-off)."""
    features = row in ("layer", "rms", "weight")
    N, D = sz["N"], sz["D"]
    C, P, K = (sz["F"], 1, 1) if features else (sz["G"] * sz["K"], sz["P"], sz["K"])
    W, x = rng.normal(size=(C, D)), rng.normal(size=(N, D, P))
    gamma, beta, g = rng.normal(size=C), rng.normal(size=C), rng.normal(size=(N, C, P))
    scale = np.ones(C) if row_scale is None else row_scale(np.arange(1, C + 1))
    h = 1e-30

    def loss(Wc):
        a = np.einsum("cd,ndp->ncp", Wc, x)
        if row == "weight":
            norm = np.sqrt((Wc * Wc).sum(axis=1) + eps_value)
            y = gamma[None, :, None] * a / norm[None, :, None]
        else:
            n, c, p = a.shape
            b = a.reshape(n, c // K, K, p) if row == "group" else a
            axes = {"batch": (0, 2), "layer": (1, 2), "rms": (1, 2), "group": (2, 3),
                    "instance": (2,)}[row]
            mu = b.mean(axis=axes, keepdims=True) if row != "rms" else 0.0
            var = ((b - mu) ** 2).mean(axis=axes, keepdims=True)
            y = gamma[None, :, None] * ((b - mu) / np.sqrt(var + eps_value)).reshape(n, c, p)
            y = y + beta[None, :, None]
        return (g * y).sum()

    return (loss(W + 1j * h * scale[:, None] * W).imag / h) / (1 + np.abs(W).sum())


@pytest.mark.parametrize("row", ["batch", "instance", "layer", "rms", "group", "weight"])
def test_numpy_agrees_with_the_symbolic_weight_gradient_claims(row, rng):
    sz = _sizes(rng)
    assert abs(_weight_dot_grad(row, 0.0, rng, sz)) < RTOL
    # the negative controls the claims list: eps > 0, rows weighed unequally
    assert abs(_weight_dot_grad(row, 0.5, rng, sz)) > CHANGED
    if row in ("layer", "rms"):
        assert abs(_weight_dot_grad(row, 0.0, rng, sz, row_scale=lambda c: c)) > CHANGED


# ---- a bias along the statistics axis, for symbolic sizes -------------------- #


@pytest.fixture
def bias_per_sample(monkeypatch):
    """A column a[n, c, p] -> a + b_n, with its symbolic form (b_n written rho_n)."""
    from bnproof.symbolic import _family_symbolic as fs
    from bnproof.symbolic._family import COLUMNS, Column

    column = Column(
        "bias-per-sample", "a[n, c, p] -> a[n, c, p] + b_n",
        lambda d: (d.W, d.x, {i: d.rho_n[(i[0],)] for i in d.layout.activations()}),
        lambda d, i: (1, d.rho_n[(i[0],)]),
    )
    action = fs.Action(lambda cc, dd: fs.W[cc, dd], lambda nn, dd, pp: fs.x[nn, dd, pp],
                       lambda nn, ch, pp: fs.rho[nn], lambda *_: sympy.S.One,
                       lambda nn, ch, pp: fs.rho[nn])
    monkeypatch.setitem(COLUMNS, "bias-per-sample", column)
    monkeypatch.setitem(fs.ACTIONS, "bias-per-sample", action)
    return fs


def test_a_bias_per_sample_is_removed_by_per_sample_statistics(bias_per_sample):
    from bnproof.symbolic._family import eps

    cell = bias_per_sample.prove_symbolic("layer", "bias-per-sample", eps)
    assert cell.proved, cell.reason  # the control: layer statistics are per sample


def test_a_bias_varying_over_the_batch_is_not_proved_invariant_for_batch_norm(bias_per_sample):
    from bnproof.symbolic._family import eps

    for eps_value in (eps, sympy.S.Zero):
        cell = bias_per_sample.prove_symbolic("batch", "bias-per-sample", eps_value)
        assert not cell.proved
        assert cell.reason.startswith("The shift is the same at every index"), cell.reason


# ---- sizes that may be 0 or negative ------------------------------------------ #


def test_a_size_not_known_positive_is_not_summed_over():
    M = Symbol("M", integer=True)  # may be 0 or negative: reversed limits (Karr)
    with pytest.raises(SumRuleError, match="may have reversed limits"):
        reduce_sums(Sum(KroneckerDelta(j, k) * x[k], (k, 1, M)), {j: (1, M)})
    M0 = Symbol("M", integer=True, nonnegative=True)  # M = 0: sum_{k=1}^{-1} is reversed
    with pytest.raises(SumRuleError, match="may have reversed limits"):
        reduce_sums(Sum(1, (k, 1, M0 - 1)))
    # the controls: a positive size, where N = 1 gives the empty sum 0 = N - 1
    assert reduce_sums(Sum(KroneckerDelta(j, k) * x[k], (k, 1, N)), {j: (1, N)}) == x[j]
    assert reduce_sums(Sum(1, (k, 1, N - 1))) == N - 1
