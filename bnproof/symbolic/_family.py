"""The normalization family and the invariance table of Ba, Kiros & Hinton (2016).

Section 5.1 of Ba, Kiros & Hinton (2016, arXiv:1607.06450) compares batch,
weight and layer normalization under transformations of the weights and of
the data; its Table 1 argues each cell in prose. Here each cell is a claim
``{row}-{column}`` ("the normalized output, training mode, is invariant
under the transformation") decided by exact computation:

* **rows** (:data:`ROWS`): batch (statistics over samples and positions, per
  channel), weight (``w = g v / ||v||``), layer (over the features of one
  sample), RMS (root mean square over the features, no centering; Zhang &
  Sennrich 2019), group (over the channels of a group and the positions,
  per sample; Wu & He 2018) and instance (over positions, per sample and
  channel; Ulyanov et al. 2016). Batch, group and instance act on
  ``a[n, c, p]`` (channels x positions, "feature" means channel), layer,
  RMS and weight on feature vectors ``a[n, c]``. Every row ends with a
  per-feature gain and bias, ``y = gamma_c xhat + beta_c``.
* **columns** (:data:`COLUMNS`): the six transformations of Table 1 and
  three bias patterns added to the summed inputs ``a = W x``.

How a cell is decided (steps 1 and 2 at concrete sizes, every output index
checked; step 3 for symbolic sizes):

1. *Cheap first*: every output difference ``y(T) - y`` is evaluated
   exactly at a random rational point, for a random ``eps > 0`` and for
   ``eps = 0``. A nonzero value is a counterexample: the cell is
   ``refuted`` (not invariant).
2. *Then the proof*: each transformation acts on the summed inputs as
   ``a -> scale * a + shift`` (checked as a polynomial identity in W and
   x); with the activations ``a`` as independent symbols, ``y(scale * a +
   shift) - y(a)`` must be the zero rational function once square roots
   are eliminated (:func:`bnproof.symbolic.vanishes`), for symbolic
   ``eps`` or, when only ``eps = 0`` passed step 1, at ``eps = 0``. Being
   zero for independent ``a`` it is zero for ``a = W x`` in particular.
   Weight normalization is not a function of ``a``; its outputs are tested
   directly in ``W`` and ``x``.

3. *Then symbolic sizes*: a cell proved in step 2 is proved again, under
   the same condition, for a symbolic batch size ``N``, features or
   channels ``C`` (``G`` groups of ``K``), positions ``P`` and inputs ``D``
   (:mod:`bnproof.symbolic._family_symbolic`); the proof's ``symbolic_n``
   says whether every identity there reduced to 0. A refuted cell needs no
   such step: invariance is claimed at every size, and one counterexample
   at concrete sizes refutes it.

A cell that passes step 1 but not step 2 is ``unproved`` with the reason; one
that passes step 2 but not step 3 stays ``proved`` at the concrete sizes, with
``symbolic_n`` false and the reason as a step.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import sympy
from sympy import Symbol

from ._engine import _evaluate, _point_text
from ._indexsets import Layout, Tensor, standardize, tensor
from ._proof import Check, Claim, Proof, Step
from ._registry import register
from ._zero import vanishes

__all__ = ["COLUMNS", "EXPECTED", "LAYOUTS", "ROWS", "Column", "Row", "cells", "prove_cell",
           "table"]

#: The variance floor, a symbol >= 0.
eps = Symbol("epsilon", nonnegative=True)
#: One positive scale for the whole matrix or data set.
delta = Symbol("delta", positive=True)

#: Sizes checked per setting: every output index of every layout is checked.
#: Small on purpose (the whole table runs in seconds per cell); the second
#: channels layout has one group, so group normalization is layer-like there.
LAYOUTS: dict[str, tuple[Layout, ...]] = {
    "features": (Layout(N=2, C=3, D=2), Layout(N=3, C=2, D=2)),
    "channels": (Layout(N=2, C=4, P=2, D=2, G=2), Layout(N=2, C=2, P=3, D=2, G=1)),
}


@dataclass(frozen=True)
class Row:
    """A normalization of the table.

    Parameters
    ----------
    name : str
        Row id (``"batch"``, ``"layer"``, ...).
    title : str
        How people call it.
    setting : {"features", "channels"}
        Feature vectors ``a[n, c]`` or channels x positions ``a[n, c, p]``.
    key : callable or None
        ``key(layout) -> (index -> slice id)``: indices sharing statistics;
        ``None`` for weight normalization (no statistics of activations).
    center : bool
        Whether the mean is subtracted (RMS: no).
    statistics : str
        Over which axes the statistics run, in words.
    paper : str
        Where it is defined.
    """

    name: str
    title: str
    setting: str
    key: Callable[[Layout], Callable] | None
    center: bool
    statistics: str
    paper: str


ROWS: dict[str, Row] = {
    row.name: row
    for row in (
        Row("batch", "batch normalization (training)", "channels",
            lambda lay: lambda i: i[1], True,
            "samples and positions, per channel", "Ioffe & Szegedy 2015, Algorithm 1"),
        Row("weight", "weight normalization", "features", None, False,
            "none: w_c = g_c v_c / ||v_c||", "Salimans & Kingma 2016, eq. 2"),
        Row("layer", "layer normalization", "features",
            lambda lay: lambda i: i[0], True,
            "the features of one sample", "Ba, Kiros & Hinton 2016, eq. 4"),
        Row("rms", "RMS normalization", "features",
            lambda lay: lambda i: i[0], False,
            "the features of one sample, no centering", "Zhang & Sennrich 2019, eq. 4"),
        Row("group", "group normalization", "channels",
            lambda lay: lambda i: (i[0], lay.group(i[1])), True,
            "the channels of a group and the positions, per sample", "Wu & He 2018, eq. 1-3"),
        Row("instance", "instance normalization", "channels",
            lambda lay: lambda i: (i[0], i[1]), True,
            "the positions, per sample and channel", "Ulyanov, Vedaldi & Lempitsky 2016, eq. 2"),
    )
}


@dataclass(frozen=True)
class Data:
    """The symbols of one layout: weights, inputs and transformation parameters."""

    layout: Layout
    W: Tensor
    x: Tensor
    gamma: Tensor
    beta: Tensor
    delta_c: Tensor
    rho_n: Tensor
    shift_d: Tensor
    b_c: Tensor
    b_g: Tensor
    b: Symbol


def data(layout: Layout) -> Data:
    """Return the symbols of ``layout``."""
    chans = [(c,) for c in range(1, layout.C + 1)]
    return Data(
        layout=layout,
        W=tensor("W", layout.weights()),
        x=tensor("x", layout.inputs()),
        gamma=tensor("gamma", chans),
        beta=tensor("beta", chans),
        delta_c=tensor("delta", chans, positive=True),
        rho_n=tensor("rho", [(n,) for n in range(1, layout.N + 1)], positive=True),
        shift_d=tensor("s", [(d,) for d in range(1, layout.D + 1)]),
        b_c=tensor("b", chans),
        b_g=tensor("b^G", [(g,) for g in range(1, layout.G + 1)]),
        b=Symbol("b", real=True),
    )


def summed(lay: Layout, W: Tensor, x: Tensor) -> Tensor:
    """Return ``a[n, c, p] = sum_d W[c, d] x[n, d, p]`` (section 5.1's summed inputs)."""
    return {
        (n, c, p): sympy.Add(*(W[c, d] * x[n, d, p] for d in range(1, lay.D + 1)))
        for n, c, p in lay.activations()
    }


@dataclass(frozen=True)
class Column:
    """A transformation of the table.

    Parameters
    ----------
    name : str
        Column id.
    title : str
        What it does, in words.
    apply : callable
        ``apply(data) -> (W', x', bias)``, ``bias`` a tensor over the
        activations added to ``W' x'`` (or None).
    affine : callable
        ``affine(data, index) -> (scale, shift)``: the transformation's
        action on the summed inputs, ``a' = scale * a + shift``.
    settings : tuple of str
        Settings where the column applies.
    """

    name: str
    title: str
    apply: Callable
    affine: Callable
    settings: tuple[str, ...] = ("features", "channels")


def _same(dat: Data):
    return dat.W, dat.x


COLUMNS: dict[str, Column] = {
    col.name: col
    for col in (
        Column(
            "weight-matrix-rescaling", "W -> delta W (delta > 0)",
            lambda d: ({k: delta * v for k, v in d.W.items()}, d.x, None),
            lambda d, i: (delta, 0),
        ),
        Column(
            "weight-matrix-recentering", "W[c, d] -> W[c, d] + s_d (the same vector added to "
            "every row)",
            lambda d: ({(c, e): v + d.shift_d[(e,)] for (c, e), v in d.W.items()}, d.x, None),
            lambda d, i: (1, sympy.Add(*(d.shift_d[(e,)] * d.x[i[0], e, i[2]]
                                         for e in range(1, d.layout.D + 1)))),
        ),
        Column(
            "weight-vector-rescaling", "W[c, :] -> delta_c W[c, :] (each weight vector its own "
            "delta_c > 0)",
            lambda d: ({(c, e): d.delta_c[(c,)] * v for (c, e), v in d.W.items()}, d.x, None),
            lambda d, i: (d.delta_c[(i[1],)], 0),
        ),
        Column(
            "dataset-rescaling", "x -> delta x for every case (delta > 0)",
            lambda d: (d.W, {k: delta * v for k, v in d.x.items()}, None),
            lambda d, i: (delta, 0),
        ),
        Column(
            "dataset-recentering", "x[n, d, p] -> x[n, d, p] + s_d for every case",
            lambda d: (d.W, {(n, e, p): v + d.shift_d[(e,)] for (n, e, p), v in d.x.items()},
                       None),
            lambda d, i: (1, sympy.Add(*(d.W[i[1], e] * d.shift_d[(e,)]
                                         for e in range(1, d.layout.D + 1)))),
        ),
        Column(
            "case-rescaling", "x[n] -> rho_n x[n] (each training case its own rho_n > 0)",
            lambda d: (d.W, {(n, e, p): d.rho_n[(n,)] * v for (n, e, p), v in d.x.items()},
                       None),
            lambda d, i: (d.rho_n[(i[0],)], 0),
        ),
        Column(
            "bias-shared", "a -> a + b (one scalar for every feature)",
            lambda d: (d.W, d.x, dict.fromkeys(d.layout.activations(), d.b)),
            lambda d, i: (1, d.b),
        ),
        Column(
            "bias-per-feature", "a[n, c, p] -> a[n, c, p] + b_c (one per feature or channel)",
            lambda d: (d.W, d.x, {i: d.b_c[(i[1],)] for i in d.layout.activations()}),
            lambda d, i: (1, d.b_c[(i[1],)]),
        ),
        Column(
            "bias-per-group", "a[n, c, p] -> a[n, c, p] + b_g (one per group of channels)",
            lambda d: (d.W, d.x, {i: d.b_g[(d.layout.group(i[1]),)]
                                  for i in d.layout.activations()}),
            lambda d, i: (1, d.b_g[(d.layout.group(i[1]),)]),
            settings=("channels",),
        ),
    )
}

#: Condition texts of the table.
ANY_EPS = "any eps >= 0"
EPS_ZERO = "eps = 0"
WEIGHT_ALWAYS = "every v_c != 0 (no eps)"

_P, _R = "proved", "refuted"
#: The verdict and condition each cell is expected to have, derived by hand
#: (the module docstring says how the engine decides; the notes say why).
EXPECTED: dict[tuple[str, str], tuple[str, str]] = {
    **{("batch", c): v for c, v in {
        "weight-matrix-rescaling": (_P, EPS_ZERO), "weight-matrix-recentering": (_R, ""),
        "weight-vector-rescaling": (_P, EPS_ZERO), "dataset-rescaling": (_P, EPS_ZERO),
        "dataset-recentering": (_P, ANY_EPS), "case-rescaling": (_R, ""),
        "bias-shared": (_P, ANY_EPS), "bias-per-feature": (_P, ANY_EPS),
        "bias-per-group": (_P, ANY_EPS)}.items()},
    **{("weight", c): v for c, v in {
        "weight-matrix-rescaling": (_P, WEIGHT_ALWAYS), "weight-matrix-recentering": (_R, ""),
        "weight-vector-rescaling": (_P, WEIGHT_ALWAYS), "dataset-rescaling": (_R, ""),
        "dataset-recentering": (_R, ""), "case-rescaling": (_R, ""),
        "bias-shared": (_R, ""), "bias-per-feature": (_R, "")}.items()},
    **{("layer", c): v for c, v in {
        "weight-matrix-rescaling": (_P, EPS_ZERO), "weight-matrix-recentering": (_P, ANY_EPS),
        "weight-vector-rescaling": (_R, ""), "dataset-rescaling": (_P, EPS_ZERO),
        "dataset-recentering": (_R, ""), "case-rescaling": (_P, EPS_ZERO),
        "bias-shared": (_P, ANY_EPS), "bias-per-feature": (_R, "")}.items()},
    **{("rms", c): v for c, v in {
        "weight-matrix-rescaling": (_P, EPS_ZERO), "weight-matrix-recentering": (_R, ""),
        "weight-vector-rescaling": (_R, ""), "dataset-rescaling": (_P, EPS_ZERO),
        "dataset-recentering": (_R, ""), "case-rescaling": (_P, EPS_ZERO),
        "bias-shared": (_R, ""), "bias-per-feature": (_R, "")}.items()},
    **{("group", c): v for c, v in {
        "weight-matrix-rescaling": (_P, EPS_ZERO), "weight-matrix-recentering": (_R, ""),
        "weight-vector-rescaling": (_R, ""), "dataset-rescaling": (_P, EPS_ZERO),
        "dataset-recentering": (_R, ""), "case-rescaling": (_P, EPS_ZERO),
        "bias-shared": (_P, ANY_EPS), "bias-per-feature": (_R, ""),
        "bias-per-group": (_P, ANY_EPS)}.items()},
    **{("instance", c): v for c, v in {
        "weight-matrix-rescaling": (_P, EPS_ZERO), "weight-matrix-recentering": (_R, ""),
        "weight-vector-rescaling": (_P, EPS_ZERO), "dataset-rescaling": (_P, EPS_ZERO),
        "dataset-recentering": (_P, ANY_EPS), "case-rescaling": (_P, EPS_ZERO),
        "bias-shared": (_P, ANY_EPS), "bias-per-feature": (_P, ANY_EPS),
        "bias-per-group": (_P, ANY_EPS)}.items()},
}

#: Where a cell differs from Ba, Kiros & Hinton (2016), Table 1, and why.
NOTES: dict[tuple[str, str], str] = {
    ("layer", "weight-matrix-recentering"): (
        "Agrees with Table 1: W + 1 s^T adds s.x_n to every feature of case n, a constant "
        "that the per-case mean removes."),
    ("batch", "dataset-recentering"): (
        "Agrees with Table 1: x + s adds (W s)_c to every case of channel c, which the batch "
        "mean removes, for any eps."),
    ("batch", "weight-matrix-recentering"): (
        "Agrees with Table 1; in the channels x positions setting the added term s.x[n, :, p] "
        "varies over samples and positions, so no per-channel statistic removes it."),
    ("group", "weight-matrix-recentering"): (
        "Not in Table 1. With positions the added term s.x[n, :, p] varies over the positions "
        "a group's statistics run over, so it is not removed (unlike layer normalization of "
        "feature vectors)."),
    ("instance", "weight-matrix-recentering"): (
        "Not in Table 1. The added term s.x[n, :, p] varies over the positions."),
    ("instance", "weight-vector-rescaling"): (
        "Not in Table 1. Each channel has its own statistics, so scaling one channel's weight "
        "vector is undone (at eps = 0)."),
    ("weight", "weight-matrix-rescaling"): (
        "Agrees with Table 1 and holds exactly (no eps): v/||v|| ignores a positive scale."),
}


def _cell_text(row: Row, col: Column) -> str:
    return (f"Under {row.title} (training mode; statistics over {row.statistics}) the "
            f"normalized output is invariant under {col.name.replace('-', ' ')}: "
            f"{col.title}.")


def applies(row: str, column: str) -> bool:
    """Whether the table has a cell ``row``-``column``."""
    return ROWS[row].setting in COLUMNS[column].settings


def _outputs(row: Row, dat: Data, W: Tensor, x: Tensor, bias, eps_value) -> Tensor:
    """Return the row's outputs ``y = gamma_c xhat + beta_c`` from weights, inputs and a bias."""
    lay = dat.layout
    if row.key is None:  # weight normalization: a_c = g_c v_c.x / ||v_c||
        out = {}
        for n, c, p in lay.activations():
            norm = sympy.sqrt(sympy.Add(*(W[c, d] ** 2 for d in range(1, lay.D + 1))))
            a = dat.gamma[(c,)] * sympy.Add(*(W[c, d] * x[n, d, p]
                                              for d in range(1, lay.D + 1))) / norm
            out[n, c, p] = a + (bias[n, c, p] if bias else 0)
        return out
    a = summed(lay, W, x)
    if bias:
        a = {i: v + bias[i] for i, v in a.items()}
    return _normalize(row, lay, a, eps_value, dat)


def _normalize(row: Row, lay: Layout, a: Tensor, eps_value, dat: Data) -> Tensor:
    xhat = standardize(a, row.key(lay), eps_value, center=row.center)
    return {i: dat.gamma[(i[1],)] * v + dat.beta[(i[1],)] for i, v in xhat.items()}


def _search(diffs: dict, rng: random.Random, where: dict):
    """Evaluate each output difference at a random point; return the first nonzero."""
    for idx, diff in diffs.items():
        is_zero, point, value = _evaluate(diff, rng, where)
        if is_zero is False:
            return idx, point, value
    return None


def _all_vanish(after: Tensor, before: Tensor, key: Callable) -> object:
    """Return the first slice whose outputs do not all reduce to 0, else None.

    The outputs of one slice share their square roots, so they are tested
    together as ``sum_i c_i (after_i - before_i)`` with independent
    coefficients ``c_i``: that is the zero rational function exactly when
    every difference is (the coefficients are generators the differences
    do not contain).
    """
    slices: dict[object, list] = {}
    for idx in before:
        slices.setdefault(key(idx), []).append(idx)
    for name, members in slices.items():
        total = sympy.Add(*(sympy.Dummy("c", real=True) * (after[i] - before[i])
                            for i in members))
        if not vanishes(total).is_zero:
            return name
    return None


def _attempt(row: Row, col: Column, dat: Data, eps_value) -> tuple[bool, str]:
    """Prove every output invariant at one layout; return ``(proved, detail)``."""
    lay = dat.layout
    W2, x2, bias = col.apply(dat)
    if row.key is None:
        before = _outputs(row, dat, dat.W, dat.x, None, eps_value)
        after = _outputs(row, dat, W2, x2, bias, eps_value)
        bad = _all_vanish(after, before, lambda i: i[1])
        if bad is not None:
            return False, f"the outputs of channel {bad} did not reduce to 0"
        return True, "every output difference reduced to 0 in W and x"
    a_new = summed(lay, W2, x2)
    a_old = summed(lay, dat.W, dat.x)
    for idx in lay.activations():
        scale, shift = col.affine(dat, idx)
        lifted = a_new[idx] + (bias[idx] if bias else 0) - (scale * a_old[idx] + shift)
        if sympy.expand(lifted) != 0:
            return False, f"the action on the summed inputs at {idx} is not scale a + shift"
    a = tensor("a", lay.activations())
    moved = {}
    for idx in lay.activations():
        scale, shift = col.affine(dat, idx)
        moved[idx] = scale * a[idx] + shift
    before = _normalize(row, lay, a, eps_value, dat)
    after = _normalize(row, lay, moved, eps_value, dat)
    bad = _all_vanish(after, before, row.key(lay))
    if bad is not None:
        return False, f"the outputs of slice {bad} did not reduce to 0"
    return True, "a' = scale a + shift checked; every output difference reduced to 0 in a"


def prove_cell(row_name: str, column_name: str,
               layouts: Sequence[Layout] | None = None) -> Proof:
    """Decide the invariance cell ``row``-``column``; return its :class:`Proof`.

    Parameters
    ----------
    row_name : str
        A key of :data:`ROWS`.
    column_name : str
        A key of :data:`COLUMNS` that applies to the row's setting.
    layouts : sequence of Layout, optional
        Sizes to check (default :data:`LAYOUTS` of the row's setting).

    Returns
    -------
    Proof
        ``proved`` (invariant, with ``condition``), ``refuted`` (not
        invariant; ``reason`` holds the counterexample) or ``unproved``.
    """
    if row_name not in ROWS:
        raise KeyError(f"unknown row {row_name!r}; rows: {', '.join(ROWS)}")
    if column_name not in COLUMNS:
        raise KeyError(f"unknown column {column_name!r}; columns: {', '.join(COLUMNS)}")
    row, col = ROWS[row_name], COLUMNS[column_name]
    if not applies(row_name, column_name):
        raise ValueError(f"column {column_name} does not apply to the {row_name} row")
    claim_id = f"{row_name}-{column_name}"
    layouts = tuple(layouts or LAYOUTS[row.setting])
    start = time.perf_counter()
    rng = random.Random(zlib.crc32(claim_id.encode()))
    steps = [
        Step(f"Normalization: {row.title}", None,
             f"statistics over {row.statistics} ({row.paper}); outputs "
             "y = gamma_c xhat + beta_c; summed inputs a[n, c, p] = sum_d W[c, d] x[n, d, p]"),
        Step(f"Transformation: {col.title}", None),
    ]
    checks: list[Check] = []
    counter: dict[str, str] = {}
    eps_positive_fails = False
    for lay in layouts:
        dat = data(lay)
        W2, x2, bias = col.apply(dat)
        for label, where in (("eps>0", {}), ("eps=0", {eps: 0})):
            if label == "eps=0" and not eps_positive_fails:
                continue
            before = _outputs(row, dat, dat.W, dat.x, None, eps)
            after = _outputs(row, dat, W2, x2, bias, eps)
            diffs = {i: (after[i] - before[i]).xreplace(where) for i in before}
            found = _search(diffs, rng, where)
            checks.append(Check(f"rationals-{label}-{lay.text()}", found is None,
                                "" if found is None else f"nonzero at output {found[0]}"))
            if found is not None:
                idx, point, value = found
                text = (f"{lay.text()}: y{idx} changes by {value:.6g} at "
                        f"{_point_text({**where, **point})}")
                counter.setdefault(label, text)
                if label == "eps>0":
                    eps_positive_fails = True
    if "eps=0" in counter:
        reason = f"counterexample: {counter['eps=0']}"
        if "eps>0" in counter:
            reason += f"; with eps > 0: {counter['eps>0']}"
        steps.append(Step("Counterexample (exact rationals): not invariant", None, reason))
        steps.append(Step("Refuted for every size", None,
                          "the cell claims invariance at every size; one counterexample at "
                          "concrete sizes refutes it, so no symbolic-size derivation is needed"))
        return Proof(claim_id, "refuted", False, ("rationals",), tuple(steps), tuple(checks),
                     time.perf_counter() - start, reason)
    at_zero = eps_positive_fails
    eps_value = sympy.S.Zero if at_zero else eps
    proved = True
    details = []
    for lay in layouts:
        ok, detail = _attempt(row, col, data(lay), eps_value)
        checks.append(Check(f"zero-test-{lay.text()}", ok, detail))
        proved &= ok
        if not ok:
            details.append(f"{lay.text()}: {detail}")
    if row.key is None:
        condition = WEIGHT_ALWAYS
    else:
        condition = EPS_ZERO if at_zero else ANY_EPS
    if not proved:
        reason = "SymPy did not reduce it: " + "; ".join(details)
        return Proof(claim_id, "unproved", False, ("rationals", "zero-test"), tuple(steps),
                     tuple(checks), time.perf_counter() - start, reason)
    steps.append(Step(f"Exact zero test at every output ({condition})", None,
                      "; ".join(lay.text() for lay in layouts)))
    if at_zero:
        steps.append(Step("Not invariant for eps > 0 (exact rationals)", None, counter["eps>0"]))
    # the same condition for symbolic sizes (bnproof.symbolic._family_symbolic)
    from ._family_symbolic import prove_symbolic

    sym = prove_symbolic(row_name, column_name, eps_value)
    checks.extend(sym.checks)
    checks.append(Check("symbolic-sizes", sym.proved,
                        "every identity reduced to 0" if sym.proved else sym.reason))
    if sym.proved:
        steps.extend(sym.steps)
    else:
        steps.append(Step("Symbolic sizes: not reached (proved at the concrete sizes only)",
                          None, sym.reason))
    methods = ("rationals", "zero-test") + (("symbolic-sizes",) if sym.proved else ())
    return Proof(claim_id, "proved", sym.proved, methods, tuple(steps),
                 tuple(checks), time.perf_counter() - start, "", condition=condition)


# --------------------------------------------------------------------------- #
# the table as claims of the registry, and as plain data for the CLI and report
# --------------------------------------------------------------------------- #

#: How a verdict reads in the table.
TABLE_VERDICTS = {"proved": "invariant", "refuted": "not invariant", "unproved": "unproved"}


def cells() -> list[tuple[str, str, str]]:
    """Every cell of the table as ``(row, column, claim id)``, row by row."""
    return [(r, c, f"{r}-{c}") for r in ROWS for c in COLUMNS if applies(r, c)]


def table(proofs: Mapping[str, Proof]) -> dict[str, dict[str, dict]]:
    """Return ``{row: {column: {verdict, condition, claim, symbolic}}}`` from proofs.

    Parameters
    ----------
    proofs : mapping of claim id to Proof
        The proofs of the cells (see :func:`cells`); a missing cell is
        reported as ``unproved``.
    """
    out: dict[str, dict[str, dict]] = {}
    for row, col, cid in cells():
        proof = proofs.get(cid)
        verdict = TABLE_VERDICTS[proof.verdict] if proof is not None else "unproved"
        out.setdefault(row, {})[col] = {
            "verdict": verdict,
            "condition": proof.condition if proof is not None else "",
            "claim": cid,
            "symbolic": bool(proof is not None and proof.symbolic_n),
        }
    return out


#: The symbolic sizes of each setting, in words.
_SYMBOLIC_SIZES = {"features": "N, C, D",
                   "channels": "N, C = G K (G groups of K channels), P, D"}


def register_table() -> None:
    """Register one claim per cell (called once, by the package)."""
    for row_name, col_name, cid in cells():
        row, col = ROWS[row_name], COLUMNS[col_name]
        expected, condition = EXPECTED[row_name, col_name]

        def prove_claim(n_max: int, _r=row_name, _c=col_name) -> Proof:
            # the grid of sizes is fixed (LAYOUTS); n_max is the catalogue's knob
            return prove_cell(_r, _c)

        assumptions = (condition,) if condition else ("eps >= 0",)
        register(Claim(
            id=cid,
            statement=_cell_text(row, col) + ("" if expected == "proved" else
                                              " Expected: not invariant (refuted by a "
                                              "counterexample at concrete sizes, which "
                                              "refutes invariance at every size)."),
            latex=r"\mathrm{" + row_name + r"}(T\,a) = \mathrm{" + row_name + r"}(a),\ T: "
            + r"\text{" + col_name + "}",
            assumptions=assumptions + ("sizes: " + "; ".join(
                lay.text() for lay in LAYOUTS[row.setting]) + (
                    "; and symbolic " + _SYMBOLIC_SIZES[row.setting]
                    if expected == "proved" else ""),),
            expected=expected,
            prove=prove_claim,
            symbolic_n_expected=expected == "proved",
            section="Ba, Kiros & Hinton (2016), section 5.1 and Table 1; " + row.paper,
            group="invariances",
            condition=condition,
            note=NOTES.get((row_name, col_name), ""),
        ))

