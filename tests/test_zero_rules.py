"""The zero test rule by rule: each step of ``vanishes`` can say no, and its residual is honest.

The false identities here have a root-free part that reduces to 0, so only the
terms with an odd power of a square root are left: a zero test that dropped
those terms, or that reduced even powers wrongly, would call them zero.
"""

import pytest
import sympy
from sympy import Abs, IndexedBase, KroneckerDelta, Rational, Sum, Symbol, sqrt

from bnproof.symbolic import vanishes
from bnproof.symbolic._zero import _is_plain

N = Symbol("N", integer=True, positive=True)
j, k = sympy.symbols("j k", integer=True)
x = IndexedBase("x", real=True)
a = Symbol("a", positive=True)
c, d = sympy.symbols("c d", real=True)
R = c**2 + 1  # a radicand that is positive everywhere
S = d**2 + 2

#: Point at which a residual and the expression it came from are compared.
POINT = {a: Rational(3, 7), c: Rational(-5, 11), d: Rational(2, 3), x[j]: Rational(7, 5)}


def _value(expr):
    return sympy.N(expr.subs(POINT), 40)


# False identities whose only nonzero part carries an odd power of a root.
ODD_ONLY = [
    (sqrt(R) + 1) ** 2 - c**2 - 2,  # = 2 sqrt(R)
    (sqrt(R) + c) ** 3 - (c**3 + 3 * c * R),  # = (3 c^2 + R) sqrt(R)
    sqrt(R) * sqrt(S),  # parity (1, 1) only
    (sqrt(R) + sqrt(S)) ** 2 - R - S,  # = 2 sqrt(R) sqrt(S)
    1 / (sqrt(R) + 1) + 1 / (sqrt(R) - 1) - 2 * R / (R - 1),  # = 2 sqrt(R)/(R-1) - 2R/(R-1)
    (2 * sqrt(R) + 1) ** 2 - 4 * R - 1,  # = 4 sqrt(R)
    R ** Rational(3, 2) - R,  # = R sqrt(R) - R: the odd part is the whole difference
    c * sqrt(a**2 * c**2 + a**2) - a * c * R,  # = a c sqrt(R) - a c R
]


@pytest.mark.parametrize("expr", ODD_ONLY)
def test_a_nonzero_odd_root_part_is_not_zero(expr):
    result = vanishes(expr)
    assert result.is_zero is False
    assert result.residual != 0


@pytest.mark.parametrize("expr", ODD_ONLY + [c ** Rational(1, 3) - 1, sqrt(R) / (c - 1) - 1])
def test_the_residual_equals_the_expression(expr):
    # docstring: the residual is "equal to expr wherever expr is defined"
    residual = vanishes(expr).residual
    assert abs(_value(residual) - _value(expr)) < 1e-30
    assert abs(_value(residual)) > 1e-3  # and the point shows it is not 0


@pytest.mark.parametrize(
    "expr",
    [
        (2 * sqrt(R) + 1) ** 2 - 4 * R - 4 * sqrt(R) - 1,  # r**2 with coefficient 4 -> 4 R
        (sqrt(R) + 1) ** 4 - sympy.expand((sqrt(R) + 1) ** 4),  # r**4 -> R**2
        (sqrt(R) + sqrt(S)) ** 2 - R - S - 2 * sqrt(R) * sqrt(S),  # two roots
        # radicand related by a positive square factor: sqrt(a^2 R) = a sqrt(R)
        1 / sqrt(a**2 * c**2 + a**2) - 1 / (a * sqrt(R)),
        1 / sqrt(a**4 * c**2 + a**4) - 1 / (a**2 * sqrt(R)),  # factor a**4: scale a**2
        (a**2 * c**2 + a**2) ** Rational(3, 2) - a**3 * R * sqrt(R),  # exponent 3/2
        # a radicand with an atom (an indexed value) of its own
        (2 * sqrt(x[j] ** 2 + 1) + 1) ** 2 - 4 * (x[j] ** 2 + 1) - 4 * sqrt(x[j] ** 2 + 1) - 1,
    ],
)
def test_true_identities_with_roots_vanish(expr):
    result = vanishes(expr)
    assert result.is_zero is True
    assert result.residual == 0


def test_a_cube_root_is_not_a_square_root():
    # c**(1/3) is an independent atom: taking it for a half power (exponent
    # int(2/3) = 0) would turn it into 1 and "prove" c**(1/3) = 1.
    assert not vanishes(c ** Rational(1, 3) - 1).is_zero
    assert not vanishes(c ** Rational(2, 3) - c ** Rational(1, 3)).is_zero


def test_declared_ranges_reach_the_sum_rules():
    expr = Sum(KroneckerDelta(j, k) * x[k] ** 2, (k, 1, N)) - x[j] ** 2
    assert vanishes(expr, {j: (1, N)}).is_zero
    wrong = Sum(KroneckerDelta(j, k) * x[k] ** 2, (k, 1, N)) - x[j]
    assert not vanishes(wrong, {j: (1, N)}).is_zero


@pytest.mark.parametrize(
    ("scale", "plain"),
    [
        (sympy.Integer(2), True),
        (Rational(1, 3), True),
        (a**2, True),
        (3 * a * c, True),
        (Abs(c), False),  # sqrt(c**2) for real c: not a polynomial factor
        (sympy.I, False),  # sqrt(-1)
        (2 * sympy.I * a, False),
        (sqrt(c), False),  # a new root, not a scale
        (a * c ** Rational(1, 3), False),
        (c**d, False),  # a symbolic exponent
        (a * c**d, False),
    ],
)
def test_only_plain_scales_reuse_a_root(scale, plain):
    # step 2 reuses a root r = sqrt(R) for B = scale**2 R only when the scale
    # is plain: no fractional or symbolic power, no Abs, no imaginary unit
    assert _is_plain(scale) is plain
