"""Decide that an expression vanishes identically, reaching a literal zero.

The expressions of batch normalization are rational functions of the data
and of square roots ``sqrt(var + eps)``. :func:`vanishes` proves such an
expression identically zero in four sound steps:

1. reduce sums over a symbolic N with :mod:`bnproof.symbolic._sums` and
   replace each moment by a symbol;
2. replace every ``B**(p/2)`` by ``(c * r)**p`` where ``r`` is a new positive
   symbol standing for ``sqrt(R)``, ``R`` a radicand met before with
   ``B = c**2 * R`` (so ``sqrt(a**2 * var) = a * sqrt(var)`` for ``a > 0``),
   or ``R = B`` itself;
3. map the result into the field of rational functions over the rationals
   (SymPy's sparse ``QQ(...)`` arithmetic, with every remaining
   non-rational atom, such as a ``KroneckerDelta``, an indexed value or an
   unknown derivative, as an independent generator) and take the numerator;
4. rewrite the numerator with ``r**2 = R`` for each root symbol ``r``: a
   term ``c * r**e`` becomes ``c * R**(e // 2) * r**(e % 2)``, so the
   numerator becomes ``sum_p C_p * prod(r**p)`` over parity vectors ``p``,
   each ``C_p`` a rational function free of the roots.

The expression is declared zero only when every ``C_p`` is the zero rational
function; the numerator then vanishes wherever ``r = sqrt(R)``. Treating
atoms and moments as independent generators is sound for this purpose: a
rational function that is zero for all values of independent generators is
zero for any values they take. A nonzero residual proves nothing by itself
(moments are related, and square roots of different radicands may be
dependent), so callers report it as "not reduced" and rely on concrete
checks to refute.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy
from sympy import Abs, Dummy, Pow, Rational

from ._sums import Ranges, moments_to_symbols, reduce_sums

__all__ = ["ZeroTest", "vanishes"]


@dataclass(frozen=True)
class ZeroTest:
    """The outcome of :func:`vanishes`.

    Parameters
    ----------
    is_zero : bool
        ``True`` only when SymPy reached the literal 0.
    residual : sympy.Expr
        What remained after the reduction (``0`` when ``is_zero``), written
        back in terms of the original sums and square roots.
    """

    is_zero: bool
    residual: sympy.Expr


def _half_powers(expr: sympy.Basic) -> list[Pow]:
    pows = [
        p
        for p in expr.atoms(Pow)
        if isinstance(p.exp, Rational) and not p.exp.is_Integer and p.exp.q == 2
    ]
    return sorted(pows, key=sympy.default_sort_key)


def _is_plain(expr: sympy.Expr) -> bool:
    """Tell whether ``expr`` has no fractional power, no Abs and no imaginary unit."""
    if expr.has(Abs) or expr.has(sympy.I):
        return False
    return all(
        p.exp.is_Integer for p in expr.atoms(Pow) if isinstance(p.exp, Rational)
    ) and not any(not isinstance(p.exp, Rational) for p in expr.atoms(Pow))


def _eliminate_roots(expr):
    """Replace half-integer powers by powers of new root symbols (step 2)."""
    radicands: list[tuple[sympy.Symbol, sympy.Expr]] = []
    mapping = {}
    for power in _half_powers(expr):
        base, exp2 = power.base, int(2 * power.exp)
        for r, radicand in radicands:
            scale = sympy.sqrt(sympy.cancel(base / radicand))
            if _is_plain(scale):
                mapping[power] = (scale * r) ** exp2
                break
        else:
            r = Dummy("r", positive=True)
            radicands.append((r, base))
            mapping[power] = r**exp2
    return expr.xreplace(mapping), radicands


def _atoms_to_symbols(expr: sympy.Expr, mapping: dict) -> sympy.Expr:
    """Replace every non-rational atom by a symbol, recorded in ``mapping`` (step 3)."""

    def visit(e):
        if e.is_Symbol or e.is_Rational:
            return e
        if e.is_Add or e.is_Mul:
            return e.func(*(visit(a) for a in e.args))
        if e.is_Pow and e.exp.is_Integer:
            return visit(e.base) ** e.exp
        if e not in mapping:
            mapping[e] = Dummy("a")
        return mapping[e]

    return visit(expr)


def _reduce_roots(numer, roots, radicands, field):
    """Rewrite ``numer`` with ``r**2 = R`` for each root: ``{parity: coefficient}`` (step 4).

    ``numer`` is a polynomial whose first ``len(roots)`` generators are the
    root symbols. Each term ``c * r**e * m`` is grouped by the parities
    ``e % 2`` and multiplied by ``R**(e // 2)``; the result is the sum over
    parity vectors ``p`` of ``coefficient[p] * prod(r**p)``, with
    coefficients free of the roots.
    """
    ring = numer.ring
    nroots = len(roots)
    grouped: dict[tuple, dict[tuple, dict]] = {}
    for monom, coeff in numer.terms():
        parity = tuple(e % 2 for e in monom[:nroots])
        halves = tuple(e // 2 for e in monom[:nroots])
        rest = (0,) * nroots + tuple(monom[nroots:])
        bucket = grouped.setdefault(parity, {}).setdefault(halves, {})
        bucket[rest] = bucket.get(rest, 0) + coeff
    out = {}
    for parity, by_halves in grouped.items():
        total = field.zero
        for halves, terms in by_halves.items():
            part = field.new(ring.from_dict(terms))
            for radicand, h in zip(radicands, halves, strict=True):
                if h:
                    part *= radicand**h
            total += part
        out[parity] = total
    return out


def vanishes(expr: sympy.Expr, ranges: Ranges | None = None) -> ZeroTest:
    """Decide whether ``expr`` is identically zero, soundly.

    Parameters
    ----------
    expr : sympy.Expr
        The residual of a claim, e.g. ``derived - closed_form``.
    ranges : mapping of Symbol to (lower, upper), optional
        Declared ranges of free indices, passed to
        :func:`bnproof.symbolic._sums.reduce_sums`.

    Returns
    -------
    ZeroTest
        ``is_zero`` is ``True`` only when the reduction reached the zero
        polynomial; otherwise ``residual`` is the reduced expression, equal
        to ``expr`` wherever ``expr`` is defined.

    Raises
    ------
    SumRuleError
        When a sum cannot be reduced soundly (see ``reduce_sums``).

    Notes
    -----
    Assumes the expression is evaluated where it is defined: radicands are
    nonnegative (``var + eps >= 0``) and denominators nonzero, as in
    Algorithm 1 of Ioffe & Szegedy (2015).
    """
    expr = sympy.sympify(expr)
    moments: dict = {}
    if expr.has(sympy.Sum):
        expr, moments = moments_to_symbols(reduce_sums(expr, ranges))
    expr, radicands = _eliminate_roots(expr)
    atoms: dict = {}
    plain = _atoms_to_symbols(expr, atoms)
    plain_radicands = [_atoms_to_symbols(radicand, atoms) for _, radicand in radicands]
    roots = [r for r, _ in radicands]
    free = set().union(plain.free_symbols, *(p.free_symbols for p in plain_radicands))
    others = sorted(free - set(roots), key=sympy.default_sort_key)
    gens = roots + others or [Dummy("z")]
    field, *_ = sympy.polys.fields.field(gens, sympy.QQ)
    fraction = field.from_expr(plain)
    numer = fraction.numer
    field_radicands = [field.from_expr(p) for p in plain_radicands]
    groups = _reduce_roots(numer, roots, field_radicands, field)
    if all(not c for c in groups.values()):
        return ZeroTest(True, sympy.S.Zero)
    back = {v: k for k, v in atoms.items()}
    residual = sympy.Add(
        *(
            c.as_expr() * sympy.Mul(*(r**e for r, e in zip(roots, parity, strict=True)))
            for parity, c in groups.items()
            if c
        )
    )
    residual = (residual / fraction.denom.as_expr()).xreplace(back)
    residual = residual.xreplace({r: sympy.sqrt(radicand) for r, radicand in radicands})
    return ZeroTest(False, residual.xreplace(moments))
