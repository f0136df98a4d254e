"""Establish a claim two independent ways and turn the outcome into a Proof.

A claim is a list of :class:`Identity` (an equation that must hold
identically) and :class:`Nonzero` (an expression that must *not* vanish
identically), written once for any batch: a :class:`SymbolicBatch` (symbolic
N) or a :class:`ConcreteBatch` (explicit x_1..x_n). :func:`establish`
checks them

1. **symbolically, for symbolic N**: ``lhs - rhs`` must reduce to the zero
   polynomial under :func:`bnproof.symbolic._zero.vanishes`;
2. **by full expansion at concrete N** = 2..n_max: the same reduction with
   explicit symbols (no sums, no rule set involved);
3. **at random exact rationals** for every concrete N: ``lhs - rhs`` is
   evaluated exactly; a nonzero value is a counterexample. A
   :class:`Nonzero` needs an exact nonzero value (a witness) at some point.

A cheap first test runs before all three: every identity is evaluated at
random rationals for N = 2..3 and every index value; a counterexample there
ends the work at once (``refuted``).

Verdicts: ``refuted`` as soon as a counterexample is found; ``proved`` when
every identity reached zero by every route that applies and every
:class:`Nonzero` has a witness; ``unproved`` otherwise, with the reason.
"""

from __future__ import annotations

import itertools
import random
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import sympy

from ._models import Batch, ConcreteBatch, SymbolicBatch
from ._proof import Check, Proof, Step
from ._sums import SumRuleError, reduce_sums
from ._text import plain
from ._zero import vanishes

__all__ = ["Identity", "Nonzero", "establish"]

#: Denominators of the random rationals (small, so exact arithmetic stays fast).
_DENOMINATORS = (1, 2, 3, 4, 5, 7)
#: Digits of the numeric guard on exact evaluations, and what counts as 0 there.
_DIGITS = 60
_NUMERIC_ZERO = sympy.Float("1e-40", _DIGITS)
#: Random points drawn before a value is defined (a point can be degenerate).
_POINT_TRIES = 20
#: Random rational points tried per concrete N when looking for a witness.
_WITNESS_TRIES = 3


@dataclass(frozen=True)
class Identity:
    """An equation ``label = lhs = rhs`` that must hold identically.

    Parameters
    ----------
    label : sympy.Expr
        What is computed, for display (e.g. ``Derivative(y[i], b)``).
    lhs : sympy.Expr
        The derived expression (e.g. ``diff(model.y(i), b)``).
    rhs : sympy.Expr
        What it must equal (e.g. ``0`` or a closed form).
    ranges : mapping
        Declared ranges of free indices, for the sum rule set.
    """

    label: sympy.Expr
    lhs: sympy.Expr
    rhs: sympy.Expr
    ranges: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a builder may return plain numbers at a concrete N
        object.__setattr__(self, "lhs", sympy.sympify(self.lhs))
        object.__setattr__(self, "rhs", sympy.sympify(self.rhs))


@dataclass(frozen=True)
class Nonzero:
    """An expression that must not vanish identically (a witness is required).

    Parameters
    ----------
    label : sympy.Expr
        What the expression is, for display.
    expr : sympy.Expr
        The expression.
    where : dict
        Values imposed on symbols when looking for a witness (e.g.
        ``{eps: Rational(1, 2)}`` to show a residual for ``eps > 0``).
    """

    label: sympy.Expr
    expr: sympy.Expr
    where: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a builder may return a plain number at a concrete N (e.g. batch.size + 1)
        object.__setattr__(self, "expr", sympy.sympify(self.expr))


Item = Identity | Nonzero
#: ``build(batch, indices) -> items``; ``indices`` maps index names to values.
Builder = Callable[[Batch, Mapping[str, object]], Sequence[Item]]


#: Concrete sizes up to which every index value is checked, symmetric or not.
FULL_INDEX_N = 3
#: Symbolic free indices, in order (the symbolic route takes at most two).
MAX_SYMBOLIC_FREE = 2


def _representatives(k: int, n: int) -> list[tuple[int, ...]]:
    """One index tuple per orbit of the permutations of ``1..n``.

    Tuples in the same orbit have the same pattern of equal entries: the
    patterns are the set partitions of the ``k`` positions into at most
    ``n`` blocks (restricted growth strings), each block a distinct value.
    """
    out: list[tuple[int, ...]] = []

    def grow(prefix: tuple[int, ...], used: int) -> None:
        if len(prefix) == k:
            out.append(tuple(v + 1 for v in prefix))
            return
        for v in range(min(used + 1, n)):
            grow(prefix + (v,), max(used, v + 1))

    grow((), 0)
    return out


def _concrete_indices(free: Sequence[str], n: int, symmetric: bool) -> list[dict[str, int]]:
    """Index values checked at concrete N.

    Every tuple of index values in ``1..n`` when ``n <= FULL_INDEX_N`` or the
    claim does not declare symmetry; for a claim that declares itself
    symmetric under permutations of the batch (its items at ``pi(i)`` are
    its items at ``i`` with the data permuted by ``pi``), one tuple per
    orbit beyond that. The declaration is checked where the full grid runs
    (``N <= FULL_INDEX_N``): a claim that is false at some index value
    there is refuted whatever it declares.
    """
    if not free:
        return [{}]
    if symmetric and n > FULL_INDEX_N:
        tuples = _representatives(len(free), n)
    else:
        tuples = list(itertools.product(range(1, n + 1), repeat=len(free)))
    return [dict(zip(free, t, strict=True)) for t in tuples]


def _random_value(symbol: sympy.Symbol, rng: random.Random) -> sympy.Rational:
    q = rng.choice(_DENOMINATORS)
    if symbol.is_integer:
        return sympy.Integer(rng.randint(1, 5))
    if symbol.is_positive:
        return sympy.Rational(rng.randint(1, 3 * q), q)
    if symbol.is_nonnegative:
        return sympy.Rational(rng.randint(1, 3 * q), q)
    return sympy.Rational(rng.randint(-3 * q, 3 * q), q)


def _unknowns_to_symbols(expr: sympy.Expr) -> tuple[sympy.Expr, dict]:
    """Replace unknown derivatives of an undefined loss by plain symbols."""
    atoms = sorted(
        expr.atoms(sympy.Subs, sympy.Derivative) | expr.atoms(sympy.core.function.AppliedUndef),
        key=sympy.default_sort_key,
    )
    top = [a for a in atoms if not any(a != o and o.has(a) for o in atoms)]
    mapping = {a: sympy.Dummy("dL", real=True) for a in top}
    return expr.xreplace(mapping), mapping


def _evaluate(
    expr: sympy.Expr, rng: random.Random, where: Mapping
) -> tuple[bool | None, dict, float]:
    """Evaluate ``expr`` exactly at a random rational point.

    Returns ``(is_zero, point, value)``; ``value`` is a float for display.
    Points where ``expr`` is undefined or not real (a division by zero) are
    drawn again; ``is_zero`` is None when :data:`_POINT_TRIES` points all
    were.
    The value is an algebraic number; it counts as nonzero only when the
    exact reduction says so *and* it is nonzero to :data:`_DIGITS` digits
    (square roots of different radicands can be dependent, e.g.
    ``sqrt(6) = sqrt(2) sqrt(3)``, which the exact reduction treats as
    independent: such a value is reported as zero, never as a
    counterexample).
    """
    expr = expr.xreplace(dict(where))
    expr, _ = _unknowns_to_symbols(expr)
    symbols = sorted(expr.free_symbols, key=sympy.default_sort_key)
    for _ in range(_POINT_TRIES):
        point = {s: _random_value(s, rng) for s in symbols}
        value = expr.xreplace(point)
        approx = sympy.N(value, _DIGITS)
        if approx.is_finite and approx.is_extended_real:
            break
        # a degenerate point (e.g. x_1 = x_2 at N = 2 and eps = 0 divides by
        # s = 0): neither a counterexample nor a witness; draw another
    else:
        return None, point, float("nan")
    is_zero = bool(abs(approx) < _NUMERIC_ZERO or vanishes(value).is_zero)
    return is_zero, point, float(approx)


def _point_text(point: Mapping) -> str:
    shown = sorted(point.items(), key=lambda kv: sympy.default_sort_key(kv[0]))
    return ", ".join(f"{plain(k)} = {v}" for k, v in shown if not isinstance(k, sympy.Dummy))


def _where(indices: Mapping) -> str:
    return ", ".join(f"{name} = {v}" for name, v in indices.items())


def _counterexample(n: int, where: str, item: Identity, value: float, point: Mapping) -> str:
    """``N = 4, i = 1: lhs - (rhs) = 0.5, at x_1 = 1/2`` (no ``at`` without symbols)."""
    gap = (f"{plain(item.label)} = {value:.6g}, not 0" if item.rhs == 0
           else f"{plain(item.label)} - ({plain(item.rhs)}) = {value:.6g}")
    shown = _point_text(point)
    return f"N = {n}, {where}: {gap}" + (f", at {shown}" if shown else "")


@dataclass
class _Outcome:
    steps: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    counterexample: str = ""
    missing: list = field(default_factory=list)
    #: Why the symbolic route does not cover every N (the verdict may still be
    #: a proof, from the concrete checks, but not one for symbolic N).
    symbolic_gaps: list = field(default_factory=list)


def _symbolic_part(items: Sequence[Item], out: _Outcome) -> bool:
    """Reduce every item for symbolic N; return whether all identities vanished."""
    all_zero = True
    for item in items:
        if isinstance(item, Identity):
            out.steps.append(Step("Derive", sympy.Eq(item.label, item.lhs, evaluate=False)))
            try:
                reduced = reduce_sums(item.lhs, item.ranges)
                if reduced != item.lhs:
                    out.steps.append(
                        Step(
                            "Apply the sum rules (linearity, constants, sifting of "
                            "KroneckerDelta over declared ranges)",
                            sympy.Eq(item.label, reduced, evaluate=False),
                        )
                    )
                test = vanishes(item.lhs - item.rhs, item.ranges)
            except SumRuleError as exc:
                all_zero = False
                out.missing.append(f"{plain(item.label)}: the sum rules refused ({exc})")
                continue
            if test.is_zero:
                out.steps.append(
                    Step(
                        "Exact zero test of the difference",
                        sympy.Eq(item.label, item.rhs, evaluate=False),
                        "lhs - rhs is the zero rational function once the moments are "
                        "symbols and each square root r satisfies r**2 = R",
                    )
                )
            else:
                all_zero = False
                out.missing.append(f"{plain(item.label)}: symbolic reduction left a residual")
                out.steps.append(
                    Step(
                        "Residual that the reduction did not bring to zero",
                        sympy.Eq(item.label - item.rhs, test.residual, evaluate=False),
                    )
                )
        else:
            out.steps.append(Step("Derive", sympy.Eq(item.label, item.expr, evaluate=False)))
            try:
                test = vanishes(item.expr)
            except SumRuleError as exc:
                out.symbolic_gaps.append(f"{plain(item.label)}: the sum rules refused ({exc})")
                continue
            if test.is_zero:  # zero for every value of every symbol: never nonzero
                out.counterexample = out.counterexample or (
                    f"{plain(item.label)} is identically 0 for symbolic N (exact zero test), "
                    "so it cannot be nonzero"
                )
                out.steps.append(
                    Step(
                        "Exact zero test: identically zero, not the nonzero it must be",
                        sympy.Eq(item.label, 0, evaluate=False),
                    )
                )
            else:
                out.steps.append(
                    Step(
                        "Reduced form (not identically zero; a witness follows)",
                        sympy.Eq(item.label, test.residual, evaluate=False),
                    )
                )
    return all_zero


def _concrete_part(
    build: Builder,
    free: Sequence[str],
    n_max: int,
    rng: random.Random,
    out: _Outcome,
    symmetric: bool = False,
) -> tuple[bool, bool]:
    """Expand and evaluate at N = 2..n_max; return ``(expanded_ok, witnesses_ok)``.

    Every identity is expanded and evaluated exactly at every tuple of
    index values, except beyond ``FULL_INDEX_N`` for a claim that declares
    permutation symmetry (one tuple per orbit there).
    """
    expanded_ok = True
    witnessed: dict[tuple, bool] = {}
    shown: set[int] = set()
    for n in range(2, n_max + 1):
        batch = ConcreteBatch(n)
        expand_pass, rational_pass = True, True
        # each check names its own failures (a passed check names none)
        expand_details, rational_details = [], []
        for indices in _concrete_indices(free, n, symmetric):
            where = _where(indices) or "any index"
            for pos, item in enumerate(build(batch, indices)):
                if isinstance(item, Identity):
                    diff = item.lhs - item.rhs
                    expr, _ = _unknowns_to_symbols(diff)
                    try:
                        expanded = vanishes(expr).is_zero
                        is_zero, point, value = _evaluate(diff, rng, {})
                    except SumRuleError as exc:
                        expand_pass = rational_pass = False
                        refused = f"{plain(item.label)} at {where}: the sum rules refused ({exc})"
                        expand_details.append(refused)
                        rational_details.append(refused)
                        continue
                    if not expanded:
                        expand_pass = False
                        expand_details.append(f"{plain(item.label)} at {where}: expansion not 0")
                    if is_zero is None:
                        rational_pass = False
                        rational_details.append(f"{plain(item.label)} at {where}: undefined "
                                                "at every point drawn")
                    elif not is_zero:
                        rational_pass = False
                        text = _counterexample(n, where, item, value, point)
                        rational_details.append(text)
                        out.counterexample = out.counterexample or text
                else:
                    # a witness is owed at every N and every index tuple, found or not
                    key = (n, tuple(sorted(indices.items())), pos)
                    witnessed.setdefault(key, False)
                    for _ in range(_WITNESS_TRIES):
                        try:
                            is_zero, point, value = _evaluate(item.expr, rng, item.where)
                        except SumRuleError:
                            break
                        if is_zero is False:
                            witnessed[key] = True
                            if n == 2 and pos not in shown:
                                shown.add(pos)
                                out.steps.append(
                                    Step(
                                        "Witness: an exact nonzero value",
                                        sympy.Eq(
                                            item.label.xreplace(dict(item.where)),
                                            sympy.nsimplify(
                                                item.expr.xreplace(dict(item.where))
                                                .xreplace(point)
                                            ),
                                            evaluate=False,
                                        ),
                                        ", ".join(filter(None, (
                                            f"N = {n}", _point_text({**item.where, **point})))),
                                    )
                                )
                            break
        expanded_ok &= expand_pass
        out.checks.append(Check(f"expand-N={n}", expand_pass, "; ".join(expand_details[:2])))
        out.checks.append(
            Check(f"rationals-N={n}", rational_pass, "; ".join(rational_details[:2]))
        )
    return expanded_ok, all(witnessed.values())


#: Concrete sizes of the cheap first test (exact values at random points).
SCREEN_N_MAX = 3


def _screen(build: Builder, free: Sequence[str], n_max: int, claim_id: str) -> Check | None:
    """Evaluate every identity at random rationals for N = 2..3: a failing check, or None.

    The cheap first test: a false claim is usually refuted here, at every
    index value, before the symbolic route and the full expansions run.
    """
    rng = random.Random(zlib.crc32(claim_id.encode()) + 1)
    for n in range(2, min(SCREEN_N_MAX, n_max) + 1):
        batch = ConcreteBatch(n)
        for indices in _concrete_indices(free, n, False):
            for item in build(batch, indices):
                if not isinstance(item, Identity):
                    continue
                try:
                    is_zero, point, value = _evaluate(item.lhs - item.rhs, rng, {})
                except SumRuleError:
                    continue  # the full checks report the refusal
                if is_zero is False:
                    text = _counterexample(n, _where(indices) or "any index", item, value, point)
                    return Check(f"rationals-N={n}", False, text)
    return None


def establish(
    claim_id: str,
    build: Builder,
    *,
    free: Sequence[str] = (),
    n_max: int = 8,
    symbolic: bool = True,
    preamble: Sequence[Step] = (),
    symmetric: bool = False,
) -> Proof:
    """Check a claim symbolically and at concrete N; return its :class:`Proof`.

    Parameters
    ----------
    claim_id : str
        The claim's id.
    build : callable
        ``build(batch, indices)`` returns the identities and nonzeros of the
        claim for a batch; ``indices`` maps the names in ``free`` to the
        symbols ``i``/``j`` (symbolic N) or to integers (concrete N).
    free : sequence of str
        Names of the free indices (``"i"``, ``"j"``) the items depend on.
    n_max : int
        Largest concrete batch size (from 2).
    symbolic : bool
        Whether to attempt the symbolic-N route.
    preamble : sequence of Step
        Definitions shown before the derivation.
    symmetric : bool, default False
        Declares that the claim is symmetric under permutations of the
        batch. Without it every tuple of index values is checked at every
        concrete N; with it, every tuple up to N = ``FULL_INDEX_N`` (where a
        false declaration shows as a counterexample) and one tuple per
        orbit of the permutations beyond.

    Returns
    -------
    Proof

    Raises
    ------
    ValueError
        For more than two free indices with ``symbolic=True`` (the symbolic
        route names them ``i`` and ``j``), or repeated index names.
    """
    from ._models import i, j

    free = tuple(free)
    if len(set(free)) != len(free) or not all(isinstance(f, str) for f in free):
        raise ValueError(f"free must be distinct index names (str), got {free!r}")
    if symbolic and len(free) > MAX_SYMBOLIC_FREE:
        raise ValueError(
            f"the symbolic-N route takes at most {MAX_SYMBOLIC_FREE} free indices (i, j), "
            f"got {len(free)}: {', '.join(free)}; pass symbolic=False to check every index "
            "value at concrete N only"
        )
    start = time.perf_counter()
    screened = _screen(build, free, n_max, claim_id)
    if screened is not None:
        return Proof(
            claim_id=claim_id, verdict="refuted", symbolic_n=False,
            methods=(f"rationals-N=2..{min(SCREEN_N_MAX, n_max)}",),
            steps=(*preamble, Step("Counterexample (exact rationals, the cheap first test)",
                                   None, screened.detail)),
            checks=(screened,), seconds=time.perf_counter() - start,
            reason=f"counterexample: {screened.detail}",
        )
    rng = random.Random(zlib.crc32(claim_id.encode()))
    out = _Outcome(steps=list(preamble))
    symbolic_ok = False
    methods = []
    if symbolic:
        items = build(SymbolicBatch(), dict(zip(free, (i, j), strict=False)))
        symbolic_ok = _symbolic_part(items, out)
        out.checks.append(
            Check(
                "symbolic-N", symbolic_ok, "; ".join(out.missing) or "every identity reduced to 0"
            )
        )
        methods.append("symbolic-N")
    expanded_ok, witnessed_ok = _concrete_part(build, free, n_max, rng, out, symmetric)
    methods += [f"expand-N=2..{n_max}", f"rationals-N=2..{n_max}"]
    if out.counterexample:
        verdict, reason = "refuted", f"counterexample: {out.counterexample}"
    elif symbolic and not symbolic_ok:
        verdict = "unproved"
        reason = "SymPy did not reduce it for symbolic N: " + "; ".join(out.missing)
    elif not expanded_ok:
        verdict, reason = "unproved", "full expansion at a concrete N did not reach 0"
    elif not witnessed_ok:
        verdict = "unproved"
        reason = "no exact nonzero witness was found for an expression that must not vanish"
    else:
        verdict, reason = "proved", ""
    return Proof(
        claim_id=claim_id,
        verdict=verdict,
        # only a proof covers symbolic N; a refutation is a counterexample
        symbolic_n=bool(verdict == "proved" and symbolic and symbolic_ok
                        and not out.symbolic_gaps),
        methods=tuple(methods),
        steps=tuple(out.steps),
        checks=tuple(out.checks),
        seconds=time.perf_counter() - start,
        reason=reason,
    )
