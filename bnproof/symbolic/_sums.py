"""A small, sound rule set for sums over a symbolic batch size.

SymPy differentiates ``Sum(f(x[k]), (k, 1, N))`` with respect to ``x[j]`` into
``Sum(f'(x[k]) * KroneckerDelta(j, k), (k, 1, N))`` correctly, but evaluating
such sums with ``.doit()`` either leaves a ``Piecewise`` on the unknown range
of ``j`` (sympy issues 12750, 12751, 13993) or crashes inside ``gosper_sum``
(sympy issue 27975). This module does not call ``.doit()`` on sums at all.
It applies only the following rules, each of which is an identity of finite
sums:

1. *Linearity*: ``Sum(c * f + d * h, k) = c * Sum(f, k) + d * Sum(h, k)``
   when ``c`` and ``d`` do not depend on the summation index ``k``.
2. *Constants*: ``Sum(c, (k, lo, hi)) = (hi - lo + 1) * c`` when ``c`` does
   not depend on ``k`` and ``hi - lo + 1 >= 0`` is known (otherwise refuse).
3. *Sifting*: ``Sum(KroneckerDelta(j, k) * f(k), (k, lo, hi)) = f(j)``
   provided ``j`` is an integer with ``lo <= j <= hi``; with an affine
   offset, ``KroneckerDelta(j, k + s)`` sifts to ``f(j - s)`` when
   ``j - s`` is an integer known to lie in ``[lo, hi]`` (convolutions);
   and ``0`` when ``j``, ``lo`` and ``hi`` are integers with ``j`` outside
   the range. The range of ``j`` must be declared (or be
   the range of an enclosing sum); otherwise the rule set refuses with
   :class:`SumRuleError` instead of guessing.
4. *Idempotence*: ``KroneckerDelta(j, k)**n = KroneckerDelta(j, k)`` for
   integer ``n >= 1``.
5. *Renaming*: the summation index is a bound variable, so every remaining
   sum is given a canonical index (PR 15239: sums that differ only in the
   name of their index are then the same object). The canonical names
   (``kappa_1``, ``kappa_2``, ...) are reserved: an input that uses one
   other than as the canonical index of a sum (``kappa_d`` binding a
   summand ``d - 1`` sums deep, as this module returns it) is refused,
   since sifting would substitute it into a sum that binds it.

6. *Interchange*: ``Sum_k c(k) Sum_q f(q, k) = Sum_q Sum_k c(k) f(q, k)``
   for rectangular limits, applied when the range of ``k`` sorts before
   that of ``q`` (never for two sums over the same range, so two sums are
   never swapped back and forth): a sum over the D features of a weight
   vector moves inside one over the N samples, where ``Sum_k U[n, k] w[k]``
   becomes the moment it is in the model.

Every sum must have ``hi - lo + 1 >= 0`` (known): for reversed limits SymPy
follows Karr's convention (``Sum(f, (k, 3, 1)) = -f(2)``), under which
sifting and the constant rule do not hold as stated, so such sums are
refused. Both limits must be known integers: a sum runs over the integers
from ``lo`` to ``hi``, and for ``hi = N / 2`` the count ``hi - lo + 1`` is
not the number of terms when ``N`` is odd (SymPy's ``doit`` says ``3/2``
for ``Sum(1, (k, 1, 3/2))``, which has one term), so such sums are refused
too. A summation index is known only from its limits: one declared
positive but summed over ``-2..-1`` is refused, since the rules read
lengths and ranges from assumptions.

After these rules every remaining sum is a sum of a single product of
factors that all depend on the index (a *moment*, e.g. ``Sum(g[k]*x[k])``).
:func:`moments_to_symbols` replaces each distinct moment by a fresh symbol.
Treating moments as independent symbols is sound for proving that an
expression vanishes: a rational function that is identically zero in
independent symbols is zero for every value they can take together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import sympy
from sympy import Add, Dummy, KroneckerDelta, Mul, Pow, Sum, Symbol

__all__ = ["SumRuleError", "moments_to_symbols", "reduce_sums"]

#: Index range: symbol -> (lower, upper), both inclusive.
Ranges = Mapping[Symbol, tuple[sympy.Expr, sympy.Expr]]


class SumRuleError(ValueError):
    """The rule set met a sum it cannot reduce soundly (the message says why)."""


#: Names of the canonical summation indices (:func:`_canonical_index`).
_RESERVED = re.compile(r"kappa_[0-9]+")


def _canonical_index(depth: int) -> Symbol:
    """Return the canonical summation index for a sum nested ``depth`` deep."""
    return Symbol(f"kappa_{depth}", integer=True)


def _canonical_for(summand: sympy.Basic, k: Symbol) -> Symbol:
    """Return the canonical index of a sum over ``k`` of ``summand``.

    ``kappa_d`` for the smallest ``d`` past the nesting depth of the summand
    that is neither free in it (an enclosing sum's index, after an
    interchange) nor bound in it: renaming ``k`` to it captures nothing.
    """
    taken = (summand.free_symbols | {lim[0] for s in summand.atoms(Sum) for lim in s.limits})
    taken.discard(k)
    d = _depth(summand) + 1
    while _canonical_index(d) in taken:
        d += 1
    return _canonical_index(d)


def _depth(expr: sympy.Basic) -> int:
    """Return how deeply sums nest in ``expr`` (0 when it has none), counting limits.

    SymPy merges ``Sum(Sum(f, (m, ...)), (k, ...))`` into one ``Sum`` with two
    limits: each limit is a level, or an outer index would get the name of an
    inner one and be captured by it.
    """
    if isinstance(expr, Sum):
        return len(expr.limits) + _depth(expr.function)
    return max((_depth(arg) for arg in expr.args), default=0)


def _misused_reserved(expr: sympy.Basic) -> set[Symbol]:
    """Reserved names used other than as a canonical index (free, or bound off-depth).

    A sum whose index is ``kappa_d`` with a summand ``d - 1`` deep is what
    :func:`reduce_sums` itself returns; the rules never rename an inner sum
    to ``kappa_d`` there (inner sums are less deep), so reducing it again is
    safe. Any other use of a reserved name could be captured by a renaming.
    """
    bad = {s for s in expr.free_symbols if _RESERVED.fullmatch(str(s))}
    for total in expr.atoms(Sum):
        names = {k for k, _, _ in total.limits if _RESERVED.fullmatch(str(k))}
        k = total.limits[0][0]
        if len(total.limits) == 1 and names == {_canonical_for(total.function, k)}:
            continue  # the canonical form reduce_sums returns
        bad |= names
    return bad


def _in_range(index: sympy.Expr, lo: sympy.Expr, hi: sympy.Expr, ranges: Ranges) -> bool:
    """Whether ``lo <= index <= hi`` is known from the declared ranges."""
    if index.is_Integer and lo.is_Integer and hi.is_Integer:
        return bool(lo <= index <= hi)
    if index.is_integer is not True:
        # a declared range says lo <= index <= hi, not that index is one of
        # the integers there (for q = 3/2 the delta is 0 for every k)
        return False
    if index in ranges:
        ilo, ihi = ranges[index]
        return _within(ilo, ihi, lo, hi)
    # an affine index j + c (rule 3b): j in [ilo, ihi] puts it in [ilo + c, ihi + c]
    known = [sym for sym in index.free_symbols if sym in ranges]
    if len(known) == 1:
        sym = known[0]
        shift = sympy.expand(index - sym)
        if sym not in shift.free_symbols and shift.is_integer:
            ilo, ihi = ranges[sym]
            return _within(ilo + shift, ihi + shift, lo, hi)
    return False


def _within(ilo, ihi, lo, hi) -> bool:
    """Whether ``[ilo, ihi]`` is known to lie in ``[lo, hi]``."""
    low, high = sympy.simplify(ilo - lo), sympy.simplify(hi - ihi)
    return bool(low.is_nonnegative) and bool(high.is_nonnegative)


def _solve_affine(difference: sympy.Expr, k: Symbol) -> sympy.Expr | None:
    """Solve ``difference = 0`` for ``k`` when it is ``+-k`` plus terms free of ``k``."""
    difference = sympy.expand(difference)
    coeff = difference.coeff(k)
    rest = sympy.expand(difference - coeff * k)
    if coeff not in (1, -1) or k in rest.free_symbols:
        return None
    return sympy.expand(-rest / coeff)


def _sift(term: sympy.Expr, k: Symbol, lo, hi, ranges: Ranges) -> sympy.Expr | None:
    """Sum one product ``term`` over ``k``; ``None`` when no delta can be sifted."""
    factors = []
    delta = None
    for factor in Mul.make_args(term):
        if isinstance(factor, Pow) and isinstance(factor.base, KroneckerDelta):
            if factor.exp.is_Integer and factor.exp >= 1:
                factor = factor.base  # rule 4
        if delta is None and isinstance(factor, KroneckerDelta) and k in factor.free_symbols:
            delta = factor
            continue
        factors.append(factor)
    if delta is None:
        return None
    if len(delta.args) != 2:
        raise SumRuleError(
            f"cannot sift {delta} over {k}: a delta with a range argument is not supported; "
            f"write KroneckerDelta({delta.args[0]}, {delta.args[1]}) and give the range as "
            "the sum's limits"
        )
    left, right = delta.args
    other = right if left == k else left if right == k else _solve_affine(left - right, k)
    if other is None or k in other.free_symbols:
        raise SumRuleError(
            f"cannot sift {delta} over {k}: the delta must compare {k} (or {k} plus an "
            f"integer offset) with an expression free of {k}"
        )
    if other.is_Integer and lo.is_Integer and hi.is_Integer and not lo <= other <= hi:
        return sympy.S.Zero  # the delta is 0 for every k in the range
    if other.is_integer is not True:
        raise SumRuleError(
            f"cannot sift {delta} over {k}: {other} is not known to be an integer "
            f"(KroneckerDelta({other}, {k}) is 0 for every integer {k} when {other} is "
            "not one); declare it with integer=True"
        )
    if not _in_range(other, lo, hi, ranges):
        raise SumRuleError(
            f"cannot sift {delta} over {k} in [{lo}, {hi}]: the range of {other} is "
            f"not known; declare it, e.g. ranges={{{other}: ({lo}, {hi})}}"
        )
    rest = Mul(*factors)
    bound = {limit[0] for s in rest.atoms(Sum) for limit in s.limits}
    if bound & other.free_symbols:  # xreplace ignores binding: the sum would capture it
        raise SumRuleError(
            f"cannot sift {delta} over {k}: {other} is also the index of a sum in {rest}"
        )
    return rest.xreplace({k: other})


def _sum_product(term: sympy.Expr, k: Symbol, lo, hi, ranges: Ranges) -> sympy.Expr:
    """Apply rules 2-5 to the sum over ``k`` of one product ``term``."""
    sifted = _sift(term, k, lo, hi, ranges)
    if sifted is not None:
        return sifted
    free, bound = [], []
    for factor in Mul.make_args(term):
        (bound if k in factor.free_symbols else free).append(factor)
    coeff = Mul(*free)
    if not bound:
        length = hi - lo + 1
        if not length.is_nonnegative:
            raise SumRuleError(
                f"cannot sum a constant over {k} in [{lo}, {hi}]: the number of terms "
                f"{length} is not known to be >= 0"
            )
        return coeff * length
    swapped = _interchange(bound, k, lo, hi, ranges)
    if swapped is not None:
        return coeff * swapped
    summand = Mul(*bound)
    canon = _canonical_for(summand, k)
    return coeff * Sum(summand.xreplace({k: canon}), (canon, lo, hi))


def _interchange(bound: list, k: Symbol, lo, hi, ranges: Ranges) -> sympy.Expr | None:
    """Rule 6: move a sum over a differently-sized range inside, or ``None``.

    ``Sum_k c(k) Sum_q f(q, k) = Sum_q Sum_k c(k) f(q, k)`` for rectangular
    limits of known lengths. Applied only when ``c(k)`` is not 1 and the
    range of ``k`` sorts before that of ``q`` (a fixed order, so two sums
    are never swapped back), e.g. a sum over the D features of a weight
    vector moves inside one over the N samples of a batch.
    """
    inner = [f for f in bound if isinstance(f, Sum)]
    others = [f for f in bound if not isinstance(f, Sum)]
    if len(inner) != 1 or len(inner[0].limits) != 1 or not others:
        return None
    total = inner[0]
    q, qlo, qhi = total.limits[0]
    if sympy.default_sort_key((lo, hi)) >= sympy.default_sort_key((qlo, qhi)):
        return None
    rest = Mul(*others)
    if (rest.has(Sum) or q == k or q in rest.free_symbols
            or k in (qlo.free_symbols | qhi.free_symbols)
            or not (qhi - qlo + 1).is_nonnegative):
        return None
    # a fresh outer index: its canonical name is given when the outer sum is
    # reduced, so the inner sums are named as they would be anywhere else
    fresh = Dummy(str(q), integer=True)
    function = total.function.xreplace({q: fresh})
    return _reduce(Sum(Sum(rest * function, (k, lo, hi)), (fresh, qlo, qhi)), ranges)


#: Facts about a summation index the rules may read (lengths, ranges) and
#: whether its limits ``(lo, hi)`` imply each one for every value it takes.
_INDEX_FACTS = {
    "positive": lambda lo, hi: lo.is_positive,
    "nonnegative": lambda lo, hi: lo.is_nonnegative,
    "negative": lambda lo, hi: hi.is_negative,
    "nonpositive": lambda lo, hi: hi.is_nonpositive,
    "nonzero": lambda lo, hi: lo.is_positive or hi.is_negative,
    "zero": lambda lo, hi: lo.is_zero and hi.is_zero,
    "even": lambda lo, hi: False,
    "odd": lambda lo, hi: False,
    "prime": lambda lo, hi: False,
    "composite": lambda lo, hi: False,
}


def _unfounded_fact(k: Symbol, lo: sympy.Expr, hi: sympy.Expr) -> str | None:
    """Return a fact declared on the index ``k`` that its limits do not imply, or None.

    The index takes the integer values lo..hi whatever it is declared to be
    (``k`` positive summed over ``-2..-1`` takes -2 and -1), and the rules
    read lengths and ranges from assumptions: such a fact could make a
    reversed inner sum look like an ordinary one.
    """
    if k.is_integer is False:
        return "not an integer"
    for fact, implied in _INDEX_FACTS.items():
        if getattr(k, f"is_{fact}") and not implied(lo, hi):
            return fact
    return None


def _reduce_sum(expr: Sum, ranges: Ranges) -> sympy.Expr:
    """Reduce one (possibly multi-limit) sum, innermost limit first."""
    for k, lo, hi in expr.limits:
        fact = _unfounded_fact(k, lo, hi)
        if fact is not None:
            raise SumRuleError(
                f"the index {k} of a sum over [{lo}, {hi}] is declared {fact}, which its "
                "limits do not imply (it takes every integer value lo..hi); declare it "
                "with integer=True only"
            )
    function = expr.function
    indices = {k for k, _, _ in expr.limits}
    out = None
    for pos, (k, lo, hi) in enumerate(expr.limits):
        if indices & (lo.free_symbols | hi.free_symbols):
            raise SumRuleError(f"the limits of {expr} depend on its own indices")
        if lo.is_integer is not True or hi.is_integer is not True:
            # the sum runs over the integers in [lo, hi]: hi - lo + 1 counts them
            # and sifting finds j among them only for integer limits
            raise SumRuleError(
                f"the sum over {k} in [{lo}, {hi}] has a limit not known to be an integer "
                "(the rules count and sift over the integers lo..hi); declare the sizes "
                "with integer=True"
            )
        if not (hi - lo + 1).is_nonnegative:
            raise SumRuleError(
                f"the sum over {k} in [{lo}, {hi}] may have reversed limits (hi - lo + 1 "
                "is not known to be >= 0), where SymPy's convention is Karr's and the "
                "rules do not apply"
            )
        # Inside the summand every enclosing index (this limit and the later,
        # outer ones) runs over its own range.
        inner_ranges = {**ranges, **{kk: (ll, hh) for kk, ll, hh in expr.limits[pos:]}}
        body = _reduce(function if out is None else out, inner_ranges)
        body = sympy.expand(body)
        out = Add(*(_sum_product(t, k, lo, hi, inner_ranges) for t in Add.make_args(body)))
    return out


def _reduce(expr: sympy.Basic, ranges: Ranges) -> sympy.Basic:
    if not expr.has(Sum):
        return expr
    if isinstance(expr, Sum):
        return _reduce_sum(expr, ranges)
    return expr.func(*(_reduce(arg, ranges) for arg in expr.args))


def reduce_sums(expr: sympy.Basic, ranges: Ranges | None = None) -> sympy.Basic:
    """Reduce every sum in ``expr`` with the sound rule set of this module.

    Parameters
    ----------
    expr : sympy.Basic
        An expression that may contain ``Sum`` objects, e.g. a derivative of
        a batch-norm output with respect to ``x[j]``.
    ranges : mapping of Symbol to (lower, upper), optional
        Declared ranges of free indices (``{j: (1, N)}``): a ``KroneckerDelta``
        is sifted only when the range of its other index is known.

    Returns
    -------
    sympy.Basic
        An equal expression whose sums are moments: sums of a product of
        index-dependent factors, with a canonical index name.

    Raises
    ------
    SumRuleError
        When a delta cannot be sifted soundly (unknown index range), a
        sum's limits depend on its own index, are not known integers, or
        may be reversed, or its index is declared something (e.g.
        positive) that its limits do not imply.

    Notes
    -----
    The rules are listed in the module docstring; they are the finite-sum
    identities behind Algorithm 1 of Ioffe & Szegedy (2015) and its
    backward pass (section 3).
    """
    if not isinstance(expr, sympy.Basic):
        raise TypeError(f"expr must be a SymPy expression, got {type(expr).__name__}")
    ranges = dict(ranges or {})
    for index, bounds in ranges.items():
        if not isinstance(index, Symbol) or len(bounds) != 2:
            raise TypeError(
                f"ranges must map index symbols to (lower, upper); got {index!r}: {bounds!r}"
            )
    reserved = sorted(str(s) for s in _misused_reserved(expr))
    if reserved:
        raise SumRuleError(
            f"{', '.join(reserved)} is reserved for the canonical summation index; "
            "rename that symbol"
        )
    return _reduce(expr, ranges)


def moments_to_symbols(expr: sympy.Basic) -> tuple[sympy.Basic, dict[Symbol, Sum]]:
    """Replace every sum of ``expr`` by a fresh symbol.

    Parameters
    ----------
    expr : sympy.Basic
        Usually the output of :func:`reduce_sums`, whose sums have
        canonical index names so that equal moments are equal objects.

    Returns
    -------
    expr : sympy.Basic
        ``expr`` with each distinct outermost sum replaced by a symbol.
    moments : dict
        Symbol -> the sum it stands for (to translate results back).

    Notes
    -----
    Sound for proving that an expression vanishes (see the module
    docstring); a nonzero result does not refute anything on its own,
    because moments are related (e.g. ``Sum(x**2) >= Sum(x)**2 / N``).
    """
    sums = sorted(
        {s for s in expr.atoms(Sum) if not any(s != t and t.has(s) for t in expr.atoms(Sum))},
        key=sympy.default_sort_key,
    )
    moments = {}
    for n, s in enumerate(sums):
        moments[Dummy(f"S{n}")] = s
    return expr.xreplace({s: sym for sym, s in moments.items()}), moments
