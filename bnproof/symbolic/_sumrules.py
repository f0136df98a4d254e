"""Two more identities of finite sums, as explicit rewriting steps.

:func:`bnproof.symbolic.reduce_sums` applies its rules on its own; the two
rules here change the shape of an expression rather than reduce it, so a
derivation applies them where it needs them (and shows the step):

* :func:`merge_ranges`: ``f(lo - 1) + Sum(f(k), (k, lo, hi)) = Sum(f(k),
  (k, lo - 1, hi))``, and the same at ``hi + 1``;
* :func:`interchange_sums`: ``Sum(c(m) Sum(f(k, m), (k, a, b)), (m, c, d))
  = Sum(Sum(c(m) f(k, m), (m, c, d)), (k, a, b))`` for rectangular limits.

Both hold for ordinary finite sums; they are applied only when every sum
involved has limits known to be integers with ``hi - lo + 1 >= 0`` (SymPy's
Karr convention differs for reversed limits, and a sum runs over the
integers in its range, see :mod:`bnproof.symbolic._sums`), and a rewrite
that would capture a variable is refused.
"""

from __future__ import annotations

import sympy
from sympy import Add, Mul, Sum, Symbol

from ._sums import SumRuleError

__all__ = ["interchange_sums", "merge_ranges"]


def _length_known(lo, hi) -> bool:
    """Whether ``lo..hi`` is known to be a range of integers of length ``>= 0``."""
    return bool(lo.is_integer and hi.is_integer and (hi - lo + 1).is_nonnegative)


def _bound(expr: sympy.Basic) -> set:
    return {limit[0] for s in expr.atoms(Sum) for limit in s.limits}


def _single_sum(term: sympy.Expr):
    """Return ``(coeff, sum)`` when ``term`` is a coefficient times one one-limit Sum."""
    sums = [f for f in Mul.make_args(term) if isinstance(f, Sum)]
    if len(sums) != 1 or len(sums[0].limits) != 1:
        return None
    total = sums[0]
    return Mul(*(f for f in Mul.make_args(term) if f is not total)), total


def _merge_add(expr: sympy.Expr) -> sympy.Expr:
    terms = list(Add.make_args(expr))
    changed = True
    while changed:
        changed = False
        for pos, term in enumerate(terms):
            found = _single_sum(term)
            if found is None:
                continue
            coeff, total = found
            k, lo, hi = total.limits[0]
            if (not _length_known(lo, hi) or k in _bound(total.function)
                    or k in coeff.free_symbols):  # a free k would be captured
                continue
            for at, limits in ((lo - 1, (k, lo - 1, hi)), (hi + 1, (k, lo, hi + 1))):
                target = coeff * total.function.xreplace({k: at})
                match = next((q for q, t in enumerate(terms)
                              if q != pos and sympy.expand(t - target) == 0), None)
                if match is not None:
                    terms[pos] = coeff * Sum(total.function, limits)
                    del terms[match]
                    changed = True
                    break
            if changed:
                break
    return Add(*terms)


def merge_ranges(expr: sympy.Basic) -> sympy.Basic:
    """Merge a sum with the term just below or above its range.

    Parameters
    ----------
    expr : sympy.Basic

    Returns
    -------
    sympy.Basic
        ``expr`` with every ``c f(lo - 1) + c Sum(f(k), (k, lo, hi))`` (and
        ``c f(hi + 1) + ...``) merged into one sum. A sum whose limits are
        not known integers with ``hi - lo + 1 >= 0`` is left alone, as is a
        term that matches only up to a different coefficient or point.

    Examples
    --------
    >>> from sympy import IndexedBase, Sum, symbols
    >>> x = IndexedBase("x"); k, N = symbols("k N", integer=True, positive=True)
    >>> merge_ranges(x[1] + Sum(x[k], (k, 2, N)))
    Sum(x[k], (k, 1, N))
    """
    if not isinstance(expr, sympy.Basic):
        raise TypeError(f"expr must be a SymPy expression, got {type(expr).__name__}")
    if not expr.args or not expr.has(Sum):
        return expr
    if isinstance(expr, Sum):
        return Sum(merge_ranges(expr.function), *expr.limits)
    expr = expr.func(*(merge_ranges(a) for a in expr.args))
    return _merge_add(expr) if expr.is_Add else expr


def _swap(outer: Sum, index: Symbol) -> sympy.Expr:
    m, lo_m, hi_m = outer.limits[0]
    body = sympy.expand(outer.function)
    out = []
    for term in Add.make_args(body):
        found = _single_sum(term)
        if found is None:
            raise SumRuleError(
                f"cannot interchange the sum over {m}: the term {term} is not a factor "
                "times one inner sum")
        coeff, inner = found
        k, lo_k, hi_k = inner.limits[0]
        if m in (lo_k.free_symbols | hi_k.free_symbols) or k in (lo_m.free_symbols
                                                                | hi_m.free_symbols):
            raise SumRuleError(
                f"cannot interchange the sums over {m} and {k}: the limits of one depend "
                "on the other (not a rectangle)")
        if not (_length_known(lo_m, hi_m) and _length_known(lo_k, hi_k)):
            raise SumRuleError(
                f"cannot interchange the sums over {m} and {k}: a length hi - lo + 1 is "
                "not known to be >= 0, or a limit is not known to be an integer")
        if k in coeff.free_symbols or k == m:
            raise SumRuleError(
                f"cannot interchange: {k} is also free in {coeff}, which would be captured")
        out.append(Sum(Sum(coeff * inner.function, (m, lo_m, hi_m)), (k, lo_k, hi_k)))
    return Add(*out)


def interchange_sums(expr: sympy.Basic, index: Symbol) -> sympy.Basic:
    """Swap every sum over ``index`` with the sum directly inside it.

    Parameters
    ----------
    expr : sympy.Basic
    index : Symbol
        The index of the outer sums to move inside.

    Returns
    -------
    sympy.Basic
        ``Sum(c(m) Sum(f(k, m), (k, a, b)), (m, lo, hi))`` rewritten as
        ``Sum(Sum(c(m) f(k, m), (m, lo, hi)), (k, a, b))``, term by term
        after expanding the outer summand.

    Raises
    ------
    SumRuleError
        When a term of the outer summand is not a factor times one inner
        sum, the limits are not rectangular, a length is not known to be
        ``>= 0``, or a variable would be captured.
    """
    if not isinstance(expr, sympy.Basic):
        raise TypeError(f"expr must be a SymPy expression, got {type(expr).__name__}")
    if not isinstance(index, Symbol):
        raise TypeError(f"index must be a SymPy Symbol, got {index!r}")
    if not expr.args:
        return expr
    args = [interchange_sums(a, index) if isinstance(a, sympy.Basic) else a
            for a in expr.args]
    expr = expr.func(*args)
    if isinstance(expr, Sum) and len(expr.limits) == 1 and expr.limits[0][0] == index:
        return _swap(expr, index)
    return expr
