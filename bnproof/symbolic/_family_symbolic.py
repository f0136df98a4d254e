"""The invariance table's invariant cells, proved for symbolic sizes.

:mod:`bnproof.symbolic._family` decides every cell of the table at the
concrete sizes of its ``LAYOUTS``. This module proves a cell that route
found invariant once more, for symbolic sizes: batch size ``N``, channels
or features ``C``, positions ``P``, input features ``D`` and, in the
channels setting, ``G`` groups of ``K`` channels each (``C = G K``, channel
``c = (g - 1) K + q``). The sums run over symbolic ranges and are reduced
only by the sound rules of :mod:`bnproof.symbolic._sums`; an identity
counts only when :func:`bnproof.symbolic.vanishes` reaches the literal 0.

A cell's derivation, for a row with statistics over an index set ``S`` of
``M`` elements (batch: ``n, p`` per channel, ``M = N P``; layer and RMS:
``c`` per sample, ``M = C``; group: ``q, p`` per sample and group,
``M = K P``; instance: ``p`` per sample and channel, ``M = P``):

1. *The action on the summed inputs*: with ``a[n, c, p] = sum_d W[c, d]
   x[n, d, p]`` for symbolic ``D``, the transformed weights, inputs and
   bias give ``a' = scale a + shift``, an identity of sums over ``d``.
2. *Constant over the statistics*: ``scale`` and ``shift`` do not change
   when the indices ``S`` runs over are renamed (an identity checked by
   the zero test, not read off the expression).
3. *The statistics*: ``mean_S(a') = scale mean_S(a) + shift`` and
   ``var_S(a') = scale**2 var_S(a)`` (RMS: ``ms_S(a') = scale**2 ms_S(a)``),
   identities of sums over ``S`` for symbolic ``M``; the same lemmas over
   ``k = 1..M`` with plain symbols ``s``, ``t`` (:func:`lemma`) head the
   derivation.
4. *The output*: ``y(a') - y(a)`` reduces to 0 for independent activations
   ``a``, for symbolic ``eps >= 0`` or at ``eps = 0`` (the concrete
   route's condition, kept as it is). At ``eps = 0`` the root
   ``sqrt(scale**2 var) = scale sqrt(var)`` needs ``scale > 0``, which every
   scale of the table is (``delta``, ``delta_c``, ``rho_n`` are positive
   symbols); a scale not known positive leaves the root unreduced.

Weight normalization has no statistics of activations: its outputs
``g_c sum_d v[c, d] x[n, d] / ||v_c||`` are compared directly, with the lemma
``||s v|| = s ||v||`` (``s > 0``) and symbolic ``D``.

Two checks tie the symbolic forms to the concrete definitions: at every
layout of the concrete grid (statistics over M = 2 to 6 elements), every
output of the symbolic row, its sums expanded, equals the concrete
``standardize`` output (the zero test, for symbolic ``eps``), and the
symbolic transformation gives the concrete transformed weights, inputs and
bias, entry by entry.

Refuted cells are not proved here: a counterexample at concrete sizes refutes
"invariant at every size" completely.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import sympy
from sympy import Dummy, Indexed, IndexedBase, Sum, Symbol

from ._proof import Check, Step
from ._sums import SumRuleError
from ._text import plain
from ._zero import vanishes

__all__ = ["ACTIONS", "LEMMAS", "M", "SHAPES", "SIZES", "SymbolicCell", "instantiate", "lemma",
           "prove_symbolic"]

_int = {"integer": True, "positive": True}
#: Symbolic sizes: batch, features or channels, positions, input features,
#: groups and channels per group (channels setting: C = G K).
N, C, P, D, G, K = (Symbol(s, **_int) for s in ("N", "C", "P", "D", "G", "K"))
#: The same in a mapping, by name.
SIZES = {"N": N, "C": C, "P": P, "D": D, "G": G, "K": K}

#: Indices of one output: sample, feature (features setting), group and
#: channel within the group (channels setting), position.
n, c, g, q, p = (Symbol(s, integer=True) for s in ("n", "c", "g", "q", "p"))

# The data, named as the concrete route names its symbols (W_{c,d}, x_{n,d,p}, ...).
W = IndexedBase("W", real=True)
x = IndexedBase("x", real=True)
a = IndexedBase("a", real=True)
gamma = IndexedBase("gamma", real=True)
beta = IndexedBase("beta", real=True)
delta_c = IndexedBase("delta", positive=True)
rho = IndexedBase("rho", positive=True)
s = IndexedBase("s", real=True)
b_c = IndexedBase("b", real=True)
b_g = IndexedBase("b^G", real=True)
b = Symbol("b", real=True)
#: Bases whose concrete symbols are positive (the others are real).
_POSITIVE = {"delta", "rho"}


def _scalars():
    from ._family import delta, eps

    return delta, eps


# --------------------------------------------------------------------------- #
# the transformations, for symbolic sizes
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Chan:
    """A channel: its index ``c`` and, in the channels setting, its group ``g``."""

    c: sympy.Expr
    g: sympy.Expr | None


@dataclass(frozen=True)
class Action:
    """A transformation of the table for symbolic sizes.

    ``weights(c, d)``, ``inputs(n, d, p)`` and ``bias(n, chan, p)`` give the
    transformed ``W'``, ``x'`` and the added bias; ``scale`` and ``shift``
    (same arguments as ``bias``) its claimed action ``a' = scale a + shift``.
    """

    weights: Callable
    inputs: Callable
    bias: Callable
    scale: Callable
    shift: Callable


#: The index of the sums over the D input features (never nested in one another).
_e = Symbol("e", integer=True)


def _sum_d(body: Callable) -> sympy.Expr:
    return Sum(body(_e), (_e, 1, D))


def _actions() -> dict[str, Action]:
    delta, _ = _scalars()
    same_w = lambda cc, d: W[cc, d]  # noqa: E731
    same_x = lambda nn, d, pp: x[nn, d, pp]  # noqa: E731
    zero = lambda nn, ch, pp: sympy.S.Zero  # noqa: E731
    one = lambda nn, ch, pp: sympy.S.One  # noqa: E731
    return {
        "weight-matrix-rescaling": Action(
            lambda cc, d: delta * W[cc, d], same_x, zero, lambda *_: delta, zero),
        "weight-matrix-recentering": Action(
            lambda cc, d: W[cc, d] + s[d], same_x, zero, one,
            lambda nn, ch, pp: _sum_d(lambda e: s[e] * x[nn, e, pp])),
        "weight-vector-rescaling": Action(
            lambda cc, d: delta_c[cc] * W[cc, d], same_x, zero,
            lambda nn, ch, pp: delta_c[ch.c], zero),
        "dataset-rescaling": Action(
            same_w, lambda nn, d, pp: delta * x[nn, d, pp], zero, lambda *_: delta, zero),
        "dataset-recentering": Action(
            same_w, lambda nn, d, pp: x[nn, d, pp] + s[d], zero, one,
            lambda nn, ch, pp: _sum_d(lambda e: W[ch.c, e] * s[e])),
        "case-rescaling": Action(
            same_w, lambda nn, d, pp: rho[nn] * x[nn, d, pp], zero,
            lambda nn, ch, pp: rho[nn], zero),
        "bias-shared": Action(same_w, same_x, lambda *_: b, one, lambda *_: b),
        "bias-per-feature": Action(same_w, same_x, lambda nn, ch, pp: b_c[ch.c], one,
                                   lambda nn, ch, pp: b_c[ch.c]),
        "bias-per-group": Action(same_w, same_x, lambda nn, ch, pp: b_g[ch.g], one,
                                 lambda nn, ch, pp: b_g[ch.g]),
    }


#: The transformations with a symbolic form, by column id.
ACTIONS: dict[str, Action] = _actions()


# --------------------------------------------------------------------------- #
# the rows, for symbolic sizes
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Shape:
    """A row's output index and the index set its statistics run over.

    ``setting`` is ``"features"`` (outputs ``(n, c)``) or ``"channels"``
    (outputs ``(n, (g - 1) K + q, p)``); ``running`` lists each index the
    statistics run over with its range, ``(index, 1, size)``; ``center``
    says whether the mean is subtracted.
    """

    setting: str
    running: tuple[tuple[Symbol, int, Symbol], ...]
    center: bool

    @property
    def size(self) -> sympy.Expr:
        """Return ``M``, the number of elements the statistics run over."""
        return sympy.Mul(*(hi for _, _, hi in self.running))


#: Each row's statistics: which indices they run over, whether centred.
SHAPES: dict[str, Shape] = {
    "batch": Shape("channels", ((n, 1, N), (p, 1, P)), True),
    "layer": Shape("features", ((c, 1, C),), True),
    "rms": Shape("features", ((c, 1, C),), False),
    "group": Shape("channels", ((q, 1, K), (p, 1, P)), True),
    "instance": Shape("channels", ((p, 1, P),), True),
}


def _index(setting: str, nn, cc_or_q, pp, gg=None) -> tuple:
    """Return ``(n, chan, p)``: features ``(n, c, 1)``; channels ``c = (g - 1) K + q``."""
    if setting == "features":
        return nn, Chan(cc_or_q, None), sympy.S.One
    return nn, Chan((gg - 1) * K + cc_or_q, gg), pp


def _output_index(setting: str) -> tuple:
    return _index(setting, n, c if setting == "features" else q, p, g)


#: Names of the bound indices that run over n, c, q, p (distinct from the output's).
_BOUND = {"n": "m", "c": "k", "q": "l", "p": "r"}


def _over(shape: Shape, body: Callable, outer: bool = False) -> sympy.Expr:
    """Return the sum of ``body(n, chan, p)`` over the statistics' index set.

    The bound indices have fixed names (``m, k, l, r``; primed for the
    ``outer`` sum of the variance, whose summand holds the mean), so the
    same sum is the same expression wherever it occurs and no sum binds an
    index that a sum inside it binds too.
    """
    fresh = {k: Symbol(_BOUND[k.name] + ("'" if outer else ""), integer=True)
             for k, _, _ in shape.running}
    nn, cq, pp = n, c if shape.setting == "features" else q, p
    nn, cq, pp = (fresh.get(v, v) for v in (nn, cq, pp))
    out = body(*_index(shape.setting, nn, cq, pp, g))
    for k, lo, hi in shape.running:
        out = Sum(out, (fresh[k], lo, hi))
    return out


def _plain(nn, ch, pp):
    """Return the activations as independent values, ``a[n, c, p]``."""
    return a[nn, ch.c, pp]


def mean(shape: Shape, values: Callable) -> sympy.Expr:
    """Return the mean of ``values`` over the statistics' index set (0 when not centred)."""
    if not shape.center:
        return sympy.S.Zero
    return _over(shape, values) / shape.size


def variance(shape: Shape, values: Callable) -> sympy.Expr:
    """Return the biased variance (RMS: the mean square) over the statistics' index set."""
    mu = mean(shape, values)
    return _over(shape, lambda *i: (values(*i) - mu) ** 2, outer=True) / shape.size


def output(shape: Shape, values: Callable, eps_value) -> sympy.Expr:
    """``y = gamma_c (a - mean) / sqrt(var + eps) + beta_c`` at the output index."""
    nn, ch, pp = _output_index(shape.setting)
    xhat = (values(nn, ch, pp) - mean(shape, values)) / sympy.sqrt(
        variance(shape, values) + eps_value)
    return gamma[ch.c] * xhat + beta[ch.c]


def summed(setting: str, weights: Callable, inputs: Callable) -> Callable:
    """Return ``a[n, c, p] = sum_d W[c, d] x[n, d, p]`` for symbolic ``D``, as a function."""
    return lambda nn, ch, pp: _sum_d(lambda e: weights(ch.c, e) * inputs(nn, e, pp))


def weight_output(action: Action | None) -> sympy.Expr:
    """Weight normalization's output ``g_c v_c . x_n / ||v_c|| (+ bias)`` at ``(n, c)``."""
    ch = Chan(c, None)
    weights = action.weights if action else (lambda cc, d: W[cc, d])
    inputs = action.inputs if action else (lambda nn, d, pp: x[nn, d, pp])
    norm = sympy.sqrt(_sum_d(lambda e: weights(c, e) ** 2))
    value = gamma[c] * _sum_d(lambda e: weights(c, e) * inputs(n, e, 1)) / norm
    return value + (action.bias(n, ch, 1) if action else 0)


# --------------------------------------------------------------------------- #
# lemmas over one index set of symbolic size M
# --------------------------------------------------------------------------- #

#: The size of the index set of the lemmas, ``k = 1..M``.
M = Symbol("M", integer=True, positive=True)
#: The lemmas, by name.
LEMMAS = ("mean", "var", "mean-square", "norm")


@functools.cache
def lemma(name: str, positive_scale: bool = True) -> tuple[sympy.Eq, bool]:
    """Prove one lemma over ``k = 1..M`` for symbolic ``M``; return it and whether it holds.

    Parameters
    ----------
    name : {"mean", "var", "mean-square", "norm"}
        ``mean(s a + t) = s mean(a) + t`` and ``var(s a + t) = s**2 var(a)``
        (``s``, ``t`` real), ``ms(s a) = s**2 ms(a)`` (``s`` real) or
        ``||s v|| = s ||v||`` (``s > 0``).
    positive_scale : bool, default True
        For ``norm``: whether ``s`` is positive; ``False`` gives a real
        ``s``, for which ``||s v|| = s ||v||`` is false (it is ``|s| ||v||``).

    Returns
    -------
    (sympy.Eq, bool)
        The lemma and whether the zero test reduced ``left - right`` to 0.

    Notes
    -----
    The sums are reduced by the rules of :mod:`bnproof.symbolic._sums`
    (linearity, constants: ``sum_k t = M t``), never evaluated by SymPy.
    """
    if name not in LEMMAS:
        raise KeyError(f"unknown lemma {name!r}; lemmas: {', '.join(LEMMAS)}")
    positive = name == "norm" and positive_scale
    sc = Symbol("s", positive=True) if positive else Symbol("s", real=True)
    t = Symbol("t", real=True)
    v = IndexedBase("a", real=True)

    def total(f):
        k = Dummy("k", integer=True)  # a fresh bound index for every sum
        return Sum(f(k), (k, 1, M))

    def avg(f):
        return total(f) / M

    def var(f):
        mu = avg(f)
        return avg(lambda kk: (f(kk) - mu) ** 2)

    moved = lambda kk: sc * v[kk] + t  # noqa: E731
    plain = lambda kk: v[kk]  # noqa: E731
    left, right = {
        "mean": lambda: (avg(moved), sc * avg(plain) + t),
        "var": lambda: (var(moved), sc**2 * var(plain)),
        "mean-square": lambda: (avg(lambda kk: (sc * v[kk]) ** 2),
                                sc**2 * avg(lambda kk: v[kk] ** 2)),
        "norm": lambda: (sympy.sqrt(total(lambda kk: (sc * v[kk]) ** 2)),
                         sc * sympy.sqrt(total(lambda kk: v[kk] ** 2))),
    }[name]()
    return sympy.Eq(left, right, evaluate=False), _zero(left - right)


def _zero(expr) -> bool:
    try:
        return vanishes(expr).is_zero
    except SumRuleError:
        return False


# --------------------------------------------------------------------------- #
# the concrete instance: sums expanded, indexed values as the concrete symbols
# --------------------------------------------------------------------------- #


def instantiate(expr: sympy.Expr, sizes: dict, keep_indexed: bool = False) -> sympy.Expr:
    """Return ``expr`` at concrete sizes: sums written out, ``W[1, 2]`` -> ``W_{1,2}``.

    Parameters
    ----------
    expr : sympy.Expr
        An expression of this module (sums over symbolic ranges).
    sizes : dict
        ``{"N": 2, "C": 3, ...}`` and the output indices (``"n"``, ``"c"``,
        ...) as integers.
    keep_indexed : bool, default False
        Leave the indexed values (``W[1, 2]``) as they are.

    Raises
    ------
    ValueError
        When a sum's limits are not integers once the sizes are given.
    """
    values = {sym: sizes[name] for name, sym in (*SIZES.items(),
                                                   *(("n", n), ("c", c), ("g", g), ("q", q),
                                                     ("p", p))) if name in sizes}
    expr = _write_out(expr.xreplace({k: sympy.Integer(v) for k, v in values.items()}))
    if keep_indexed:
        return expr
    return expr.xreplace({e: _concrete(e) for e in expr.atoms(Indexed)})


def _concrete(e: Indexed) -> Symbol:
    """Return the concrete route's symbol of ``e``: ``W[1, 2]`` -> ``W_{1,2}``."""
    name = str(e.base)
    idx = ",".join(str(int(i)) for i in e.indices)
    kind = {"positive": True} if name in _POSITIVE else {"real": True}
    return Symbol(f"{name}_{{{idx}}}", **kind)


def _write_out(expr: sympy.Basic) -> sympy.Basic:
    """Write every sum with integer limits out as the sum of its terms."""
    if not expr.has(Sum):
        return expr
    if not isinstance(expr, Sum):
        return expr.func(*(_write_out(arg) for arg in expr.args))
    body = _write_out(expr.function)
    for k, lo, hi in expr.limits:  # innermost first
        if not (lo.is_Integer and hi.is_Integer):
            raise ValueError(f"cannot write out the sum over {k} in [{lo}, {hi}]: give every "
                             "size as an integer")
        body = sympy.Add(*(body.xreplace({k: sympy.Integer(i)})
                           for i in range(int(lo), int(hi) + 1)))
    return body


# --------------------------------------------------------------------------- #
# one cell
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class SymbolicCell:
    """The outcome of the symbolic-size route for one cell.

    Parameters
    ----------
    proved : bool
        ``True`` only when every identity reduced to the literal 0 and both
        concrete cross-checks agreed.
    steps : tuple of Step
        The derivation, for the report.
    checks : tuple of Check
        One check per identity and cross-check.
    reason : str
        Why the route did not prove the cell (empty when it did).
    """

    proved: bool
    steps: tuple[Step, ...]
    checks: tuple[Check, ...]
    reason: str


#: The symbolic sizes of each setting, in words.
_SIZES_TEXT = {"channels": "symbolic N, G groups of K channels (C = G K), P positions, "
                           "D inputs",
               "features": "symbolic N, C features, D inputs"}
#: How much of an unreduced identity a reason shows.
_REASON_CHARS = 240


#: The lemmas each row's derivation uses (default: mean and variance).
_ROW_LEMMAS = {"rms": ("mean-square",), "weight": ("norm",)}


class _Refused(Exception):
    pass


def prove_symbolic(row: str, column: str, eps_value, layout=None) -> SymbolicCell:
    """Prove the cell ``row``-``column`` invariant for symbolic sizes, or say why not.

    Parameters
    ----------
    row, column : str
        Ids of :data:`bnproof.symbolic._family.ROWS` and ``COLUMNS``.
    eps_value : sympy.Expr
        The variance floor: the symbol ``eps`` (any ``eps >= 0``) or 0.
        Ignored for weight normalization (no eps).
    layout : Layout, optional
        Concrete sizes for the cross-checks (default: every layout of the
        row's setting in the concrete grid).

    Returns
    -------
    SymbolicCell
        ``proved`` only when each identity reduced to 0; otherwise ``reason``
        says which step did not.
    """
    from ._family import LAYOUTS, ROWS

    steps: list[Step] = []
    checks: list[Check] = []

    def identity(method: str, title: str, left, right, note: str = "") -> None:
        ok = _zero(left - right)
        checks.append(Check(method, ok, "reduced to 0" if ok else "did not reduce to 0"))
        if not ok:
            text = plain(sympy.Eq(left, right, evaluate=False))
            if len(text) > _REASON_CHARS:
                text = text[:_REASON_CHARS] + " ..."
            raise _Refused(f"{title}: {text} did not reduce to 0")
        steps.append(Step(title, sympy.Eq(left, right, evaluate=False), note))

    action = ACTIONS.get(column)
    if action is None:
        return SymbolicCell(False, (), (), f"the column {column} has no symbolic form")
    if row not in SHAPES and row != "weight":
        return SymbolicCell(False, (), (), f"the row {row} has no symbolic form")
    setting = ROWS[row].setting
    layouts = (layout,) if layout is not None else LAYOUTS[setting]
    try:
        for name in _ROW_LEMMAS.get(row, ("mean", "var")):
            eq, ok = lemma(name)
            checks.append(Check(f"symbolic-lemma-{name}", ok,
                                "reduced to 0" if ok else "did not reduce to 0"))
            if not ok:
                raise _Refused(f"the lemma {plain(eq)} did not reduce to 0")
            steps.append(Step("Lemma over k = 1..M (symbolic M)", eq,
                              {"norm": "s > 0", "mean-square": "s real"}.get(name,
                                                                             "s, t real")))
        if row == "weight":
            _weight(action, identity, steps)
        else:
            _statistics_row(SHAPES[row], action, eps_value, identity, steps)
        for lay in layouts:
            _cross_check(row, column, lay, checks)
    except _Refused as exc:
        return SymbolicCell(False, tuple(steps), tuple(checks), str(exc))
    steps.insert(0, Step(f"Symbolic sizes: {_SIZES_TEXT[setting]}", None,
                         "sums over symbolic ranges reduced by the finite-sum rules"))
    return SymbolicCell(True, tuple(steps), tuple(checks), "")


def _weight(action: Action, identity, steps) -> None:
    identity("symbolic-output", "Output unchanged for symbolic D",
             weight_output(action), weight_output(None),
             "||delta v_c|| = delta ||v_c|| for delta > 0")


def _statistics_row(shape: Shape, action: Action, eps_value, identity, steps) -> None:
    setting = shape.setting
    nn, ch, pp = _output_index(setting)
    # 1. the action on the summed inputs, for symbolic D
    moved_inputs = summed(setting, action.weights, action.inputs)
    plain_inputs = summed(setting, lambda cc, d: W[cc, d], lambda n_, d, p_: x[n_, d, p_])
    scale, shift = action.scale(nn, ch, pp), action.shift(nn, ch, pp)
    identity("symbolic-action", "Action on the summed inputs a = W x (symbolic D)",
             moved_inputs(nn, ch, pp) + action.bias(nn, ch, pp),
             scale * plain_inputs(nn, ch, pp) + shift)
    # 2. scale and shift are constant over the statistics' index set
    renamed = {k: Symbol(k.name + "'", integer=True) for k, _, _ in shape.running}
    names = ", ".join(f"{k} -> {v}" for k, v in renamed.items())
    for what, value in (("scale", scale), ("shift", shift)):
        identity(f"symbolic-constant-{what}",
                 f"The {what} is the same at every index the statistics run over",
                 value.xreplace(renamed), value, f"renamed {names}: unchanged")
    # 3. the statistics of a' = scale a + shift
    def moved(n_, ch_, p_):
        return action.scale(n_, ch_, p_) * a[n_, ch_.c, p_] + action.shift(n_, ch_, p_)

    if shape.center:
        identity("symbolic-mean", "Mean over the statistics' index set (symbolic M)",
                 mean(shape, moved), scale * mean(shape, _plain) + shift)
    identity("symbolic-variance",
             "Variance over the statistics' index set (symbolic M)" if shape.center else
             "Mean square over the statistics' index set (symbolic M)",
             variance(shape, moved), scale**2 * variance(shape, _plain))
    # 4. the output
    identity("symbolic-output", "Output unchanged (symbolic sizes)",
             output(shape, moved, eps_value), output(shape, _plain, eps_value),
             "at eps = 0: sqrt(scale**2 var) = scale sqrt(var), scale > 0"
             if eps_value == 0 else "for every eps >= 0")


def _cross_check(row: str, column: str, layout, checks: list) -> None:
    """Tie the symbolic forms to the concrete definitions at one layout.

    The results are cached per (row or column definition, layout): the
    definitions are frozen records, so a replaced one is checked afresh.
    """
    from ._family import COLUMNS, ROWS

    bad = _transformation_differs(COLUMNS[column], ACTIONS[column], layout)
    checks.append(Check(f"symbolic-instance-transformation-{layout.text()}", not bad,
                        "equal entry by entry" if not bad else "differs at " + ", ".join(bad)))
    if bad:
        raise _Refused(f"the symbolic transformation differs from the concrete one at "
                       f"{layout.text()}: {', '.join(bad)}")
    bad = _row_differs(ROWS[row], SHAPES.get(row), layout)
    checks.append(Check(f"symbolic-instance-output-{layout.text()}", bad is None,
                        "every output equal to the concrete one" if bad is None else
                        f"the outputs of slice {bad} differ"))
    if bad is not None:
        raise _Refused(f"the symbolic row differs from the concrete one at {layout.text()} "
                       f"(the outputs of slice {bad})")


def _sizes(layout) -> dict:
    return {"N": layout.N, "C": layout.C, "P": layout.P, "D": layout.D, "G": layout.G,
            "K": layout.per_group}


@functools.cache
def _transformation_differs(column, action: Action, layout) -> tuple[str, ...]:
    """Return the entries where the symbolic ``W'``, ``x'``, bias differ from the concrete ones."""
    from ._family import data

    dat, sizes = data(layout), _sizes(layout)
    W2, x2, bias = column.apply(dat)
    bad = []
    for (cc, d), value in W2.items():
        if sympy.expand(instantiate(action.weights(cc, d), sizes) - value) != 0:
            bad.append(f"W'[{cc}, {d}]")
    for (nn, d, pp), value in x2.items():
        if sympy.expand(instantiate(action.inputs(nn, d, pp), sizes) - value) != 0:
            bad.append(f"x'[{nn}, {d}, {pp}]")
    for (nn, cc, pp) in layout.activations():
        chan = Chan(cc, layout.group(cc))
        value = bias[nn, cc, pp] if bias else 0
        if sympy.expand(instantiate(action.bias(nn, chan, pp), sizes) - value) != 0:
            bad.append(f"bias[{nn}, {cc}, {pp}]")
    return tuple(bad)


@functools.cache
def _row_differs(row, shape: Shape | None, layout):
    """Return the first slice whose symbolic outputs differ from the concrete ones, or None.

    Compared for a symbolic ``eps >= 0``; the outputs at ``eps = 0`` are the
    same expressions with ``eps`` replaced by 0, on both sides.
    """
    from ._family import _all_vanish, _normalize, _outputs, data
    from ._indexsets import tensor

    _, eps_symbol = _scalars()
    dat, sizes = data(layout), _sizes(layout)
    if shape is None:  # weight normalization
        concrete = _outputs(row, dat, dat.W, dat.x, None, eps_symbol)
        symbolic = weight_output(None)
        key = lambda i: i[1]  # noqa: E731
    else:
        acts = tensor("a", layout.activations())
        concrete = _normalize(row, layout, acts, eps_symbol, dat)
        symbolic = output(shape, _plain, eps_symbol)
        key = row.key(layout)
    symbolic = instantiate(symbolic, sizes, keep_indexed=True)
    setting = row.setting
    instances = {}
    for (nn, cc, pp) in concrete:
        at = {n: nn, c: cc, p: pp}
        if setting == "channels":
            gg = layout.group(cc)
            at.update({g: gg, q: cc - (gg - 1) * layout.per_group})
        instances[nn, cc, pp] = instantiate(
            symbolic.xreplace({k: sympy.Integer(v) for k, v in at.items()}), {})
    return _all_vanish(instances, concrete, key)
