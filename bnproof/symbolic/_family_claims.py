"""Claims about the family beyond the table: bias parts and scale-invariant weights.

* ``{row}-bias-cancelling-part``: a per-feature bias ``b_c`` splits into a
  part ``P b`` that the normalization removes and a rest ``b - P b`` that
  it keeps. ``P`` is the mean over the features a statistic runs over
  (layer: all features, dimension 1; group: the channels of each group,
  dimension G), everything (batch, instance: dimension C) or nothing (RMS:
  dimension 0). Proved: ``y(a + b) = y(a + b - P b)`` for all ``a`` (the
  part ``P b`` cancels), and at ``a = 0``, ``eps > 0`` the output is
  ``gamma_c (b - P b)_c / sqrt(mean((b - P b)^2) + eps) + beta_c``, which
  differs from ``beta`` whenever ``b - P b != 0``: nothing more cancels.
* ``{row}-weight-grad-orthogonal``: for weights feeding the normalization,
  ``<W, grad_W L> = 0`` at ``eps = 0`` for any loss (Euler's theorem for a
  function invariant under ``W -> delta W``); per weight vector,
  ``<W_c, grad_{W_c} L> = 0``, where the invariance holds per feature
  (batch, instance, weight normalization); elsewhere a witness shows the
  per-vector product is not 0.

Both are checked at the concrete sizes of :data:`bnproof.symbolic._family.LAYOUTS`
(``symbolic: false``), through :func:`bnproof.symbolic.establish`.

* ``{row}-weight-grad-orthogonal-symbolic`` (batch, instance, layer, RMS,
  group, weight normalization): the product for symbolic sizes of the index
  sets the statistics run over and a symbolic input width ``D``, with
  builders from :mod:`bnproof.symbolic._family_weight_grad`.
"""

from __future__ import annotations

import sympy
from sympy import Rational, Symbol

from ._engine import Identity, Nonzero, establish
from ._family import LAYOUTS, ROWS, _normalize, data, summed
from ._family_weight_grad import (
    GROUP_CONCRETE_P,
    GROUP_N_MAX,
    SYMBOLIC_D_CONCRETE_D,
    SYMBOLIC_D_N_MAX,
    SYMBOLIC_ROWS,
    weight_grad_symbolic,
)
from ._indexsets import Layout, tensor
from ._proof import Claim, Proof
from ._registry import register

__all__ = ["cancelling_projection"]

eps = Symbol("epsilon", nonnegative=True)


def cancelling_projection(row: str, lay: Layout) -> sympy.Matrix:
    """Return the C x C projection onto the per-feature biases ``row`` removes."""
    C = lay.C
    if row in ("batch", "instance"):
        return sympy.eye(C)
    if row == "rms":
        return sympy.zeros(C, C)
    if row == "layer":
        return sympy.ones(C, C) / C
    if row == "group":
        return sympy.Matrix(C, C, lambda i, j: Rational(1, lay.per_group)
                            if lay.group(i + 1) == lay.group(j + 1) else 0)
    raise ValueError(f"no per-feature bias projection for row {row!r}")


#: Dimension of the cancelling part, as the sizes give it (checked against rank P).
DIMENSION = {"batch": "C", "instance": "C", "layer": "1", "group": "G", "rms": "0"}


def _bias_part(row_name: str):
    row = ROWS[row_name]

    def build(batch, indices) -> list:
        items = []
        for lay in LAYOUTS[row.setting]:
            dat = data(lay)
            P = cancelling_projection(row_name, lay)
            bvec = sympy.Matrix([dat.b_c[(c,)] for c in range(1, lay.C + 1)])
            kept = bvec - P * bvec
            a = tensor("a", lay.activations())
            with_b = _normalize(row, lay, {i: v + bvec[i[1] - 1] for i, v in a.items()},
                                eps, dat)
            with_kept = _normalize(row, lay, {i: v + kept[i[1] - 1] for i, v in a.items()},
                                   eps, dat)
            at_zero = _normalize(row, lay, {i: bvec[i[1] - 1] for i in a}, eps, dat)
            kept_zero = _normalize(row, lay, {i: kept[i[1] - 1] for i in a}, eps, dat)
            first = lay.activations()[0]
            items.append(Identity(Symbol(f"y(a + b) - y(a + b - Pb) [{lay.text()}]"),
                                  sympy.Add(*(Symbol(f"c_{k}") * (with_b[i] - with_kept[i])
                                              for k, i in enumerate(a))), 0))
            items.append(Identity(Symbol(f"y(b) at a = 0 [{lay.text()}]"),
                                  sympy.Add(*(Symbol(f"c_{k}") * (at_zero[i] - kept_zero[i])
                                              for k, i in enumerate(a))), 0))
            dim = {"C": lay.C, "G": lay.G, "1": 1, "0": 0}[DIMENSION[row_name]]
            items.append(Identity(Symbol(f"rank P [{lay.text()}]"), sympy.Integer(P.rank()),
                                  sympy.Integer(dim)))
            if dim < lay.C:  # the kept part moves the output (eps > 0, a = 0)
                items.append(Nonzero(Symbol(f"y(b - Pb) - beta at a = 0 [{lay.text()}]"),
                                     kept_zero[first] - dat.beta[(first[1],)],
                                     {eps: Rational(1, 2)}))
        return items

    return build


#: Sizes of the weight-gradient claims: small (the derivative of every output
#: with respect to every activation grows fast), yet every statistic runs over
#: at least three values (over two, xhat = +-1 is locally constant at eps = 0
#: and every gradient vanishes, which would make the witnesses impossible).
WEIGHT_GRAD_LAYOUTS = {
    "batch": Layout(N=3, C=2, P=1),
    "weight": Layout(N=2, C=2),
    "layer": Layout(N=1, C=3),
    "rms": Layout(N=1, C=3),
    "group": Layout(N=1, C=4, P=2, G=2),
    "instance": Layout(N=1, C=2, P=3),
}


def _weight_grad(row_name: str):
    row = ROWS[row_name]
    per_vector = row_name in ("batch", "instance", "weight")

    def build(batch, indices) -> list:
        items = []
        lay = WEIGHT_GRAD_LAYOUTS[row_name]
        dat = data(lay)
        g = tensor("g", lay.activations())
        if row.key is None:
            # weight normalization: outputs in v (= W) and x directly
            norm = {c: sympy.sqrt(sympy.Add(*(dat.W[c, d] ** 2 for d in range(1, lay.D + 1))))
                    for c in range(1, lay.C + 1)}
            y = {i: dat.gamma[(i[1],)] * summed(lay, dat.W, dat.x)[i] / norm[i[1]]
                 for i in lay.activations()}
            loss_grad = {k: sympy.Add(*(g[i] * sympy.diff(y[i], v) for i in y))
                         for k, v in dat.W.items()}
            per = {c: sympy.Add(*(dat.W[c, d] * loss_grad[c, d] for d in range(1, lay.D + 1)))
                   for c in range(1, lay.C + 1)}
        else:
            # <W_c, grad_{W_c} L> = sum_{n,p} a[n,c,p] dL/da[n,c,p] (chain rule, a = W x)
            a = tensor("a", lay.activations())
            y = _normalize(row, lay, a, sympy.S.Zero, dat)
            da = {k: sympy.Add(*(g[i] * sympy.diff(y[i], a[k]) for i in y)) for k in a}
            per = {c: sympy.Add(*(a[k] * da[k] for k in a if k[1] == c))
                   for c in range(1, lay.C + 1)}
        items.append(Identity(Symbol(r"\langle W, \nabla_W L \rangle"),
                              sympy.Add(*per.values()), 0))
        for c, value in per.items():
            label = Symbol(rf"\langle W_{c}, \nabla_{{W_{c}}} L \rangle")
            if per_vector:
                items.append(Identity(label, value, 0))
            elif c == 1:
                items.append(Nonzero(label, value))
        return items

    return build


def _claim(cid: str, statement: str, build, assumptions, section: str) -> Claim:
    def prove_claim(n_max: int) -> Proof:
        # the sizes are the layouts' (LAYOUTS); one concrete pass suffices
        return establish(cid, build, n_max=2, symbolic=False)

    return Claim(id=cid, statement=statement, latex=r"\text{" + cid + "}",
                 assumptions=tuple(assumptions), expected="proved", prove=prove_claim,
                 symbolic_n_expected=False, section=section, group="family")


#: What each symbolic-size claim states, the size its statistics run over
#: (the engine's N), and its section.
_SYMBOLIC = {
    "batch": ("For x_n = sum_d U[n, d] w[d] feeding batch normalization at eps = 0, "
              "<w, grad_w L> = 0 for any loss, for a symbolic batch size N and a symbolic "
              "width D (the sum over d moves inside the sum over n); not 0 for eps > 0.",
              r"\sum_{d=1}^{D} w_d \frac{\partial L}{\partial w_d} = 0", "N samples",
              "Section 3.3 of Ioffe & Szegedy (2015); Salimans & Kingma (2016)"),
    "instance": ("For a_p = sum_d x[p, d] w[d] feeding instance normalization (one sample "
                 "and channel, statistics over its P positions) at eps = 0, <w, grad_w L> = 0 "
                 "for any loss, for a symbolic P and a symbolic width D; not 0 for eps > 0.",
                 r"\sum_{d=1}^{D} w_d \frac{\partial L}{\partial w_d} = 0", "P positions",
                 "Ulyanov, Vedaldi & Lempitsky (2016); van Laarhoven (2017)"),
    "layer": ("For one sample's features a_c = sum_d W[c, d] x[d] feeding layer normalization "
              "(statistics over the C features, per-feature gamma_c, beta_c) at eps = 0, "
              "<W, grad_W L> = 0 over the whole matrix for any loss, for a symbolic C and a "
              "symbolic width D; not 0 for eps > 0.",
              r"\sum_{c=1}^{C} \sum_{d=1}^{D} W_{cd} \frac{\partial L}{\partial W_{cd}} = 0",
              "C features", "Ba, Kiros & Hinton (2016), section 5.1; van Laarhoven (2017)"),
    "rms": ("For one sample's features a_c = sum_d W[c, d] x[d] feeding RMS normalization "
            "(root mean square over the C features, per-feature gamma_c, beta_c) at eps = 0, "
            "<W, grad_W L> = 0 over the whole matrix for any loss, for a symbolic C and a "
            "symbolic width D; not 0 for eps > 0.",
            r"\sum_{c=1}^{C} \sum_{d=1}^{D} W_{cd} \frac{\partial L}{\partial W_{cd}} = 0",
            "C features", "Zhang & Sennrich (2019); van Laarhoven (2017)"),
    "group": ("For one sample and one group of K channels over P positions, a[q, p] = "
              "sum_d W[q, d] x[d, p] feeding group normalization (statistics over the group's "
              "channels and positions, per-channel gamma_q, beta_q) at eps = 0, the product "
              "<W_G, grad_{W_G} L> over the group's rows of W is 0 for any loss (so is the whole "
              "matrix's), for symbolic K, P and width D; not 0 for eps > 0.",
              r"\sum_{q=1}^{K} \sum_{d=1}^{D} W_{qd} \frac{\partial L}{\partial W_{qd}} = 0",
              "K channels of a group, P positions", "Wu & He (2018); van Laarhoven (2017)"),
    "weight": ("For weight normalization y_n = g sum_d v[d] x[n, d] / ||v|| over N samples, "
               "<v, grad_v L> = 0 for any loss and every v != 0, for a symbolic N and a "
               "symbolic width D; not 0 once a floor eps > 0 enters the norm, "
               "sqrt(||v||^2 + eps).",
               r"\sum_{d=1}^{D} v_d \frac{\partial L}{\partial v_d} = 0", "N samples",
               "Salimans & Kingma (2016), section 2.1"),
}


def _symbolic_claim(row: str) -> Claim:
    cid = f"{row}-weight-grad-orthogonal-symbolic"
    statement, latex, size, section = _SYMBOLIC[row]
    build = weight_grad_symbolic(row)
    largest = GROUP_N_MAX if row == "group" else SYMBOLIC_D_N_MAX

    def prove_claim(n_max: int) -> Proof:
        return establish(cid, build, n_max=min(n_max, largest))

    condition = "every v != 0 (witness: sqrt(||v||^2 + eps), eps = 1/2)" if row == "weight" \
        else "eps = 0 (witness for eps = 1/2)"
    return Claim(
        id=cid, statement=statement, latex=latex,
        assumptions=(condition, f"symbolic {size} and D inputs; concrete " + (
            f"{size.split()[0]} = " + ("2" if largest == 2 else f"2..{largest}")
            + (f", P = {GROUP_CONCRETE_P}" if row == "group" else "")
            + f", D = {SYMBOLIC_D_CONCRETE_D}")),
        expected="proved", prove=prove_claim, symbolic_n_expected=True,
        section=section, group="family")


def register_claims() -> None:
    """Register the bias-part and weight-gradient claims (called once, by the package)."""
    for _row in SYMBOLIC_ROWS:
        register(_symbolic_claim(_row))
    for _row in ("batch", "layer", "rms", "group", "instance"):
        _setting = ROWS[_row].setting
        register(_claim(
            f"{_row}-bias-cancelling-part",
            f"Under {ROWS[_row].title} a per-feature bias b splits into a part P b that cancels "
            f"(dimension {DIMENSION[_row]}) and a rest b - P b that changes the output whenever "
            "it is not 0 (eps > 0).",
            _bias_part(_row),
            ("eps >= 0 (the witness: eps = 1/2)", "gamma_c != 0", "sizes: " + "; ".join(
                lay.text() for lay in LAYOUTS[_setting])),
            "Ba, Kiros & Hinton (2016), section 5.1; " + ROWS[_row].paper))
    for _row in ("batch", "weight", "layer", "rms", "group", "instance"):
        _per = _row in ("batch", "instance", "weight")
        register(_claim(
            f"{_row}-weight-grad-orthogonal",
            f"Under {ROWS[_row].title}, weights W feeding it satisfy <W, grad_W L> = 0 for any "
            "loss" + (" (eps = 0)" if _row != "weight" else "") + (
                ", and so does every weight vector W_c on its own." if _per else
                "; a single weight vector's product is not 0 (witness)."),
            _weight_grad(_row),
            (("eps = 0",) if _row != "weight" else ("every v_c != 0",)) + (
                "sizes: " + WEIGHT_GRAD_LAYOUTS[_row].text(),),
            "Salimans & Kingma (2016); van Laarhoven (2017); " + ROWS[_row].paper))
