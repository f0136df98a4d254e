"""Literal unit tests of the index sets, tensors and statistics (``_indexsets``).

Every expected value is written out by hand: index lists by enumeration,
statistics from the definition of the mean and the biased variance
(Algorithm 1 of Ioffe & Szegedy 2015) at small exact numbers.
"""

import pytest
import sympy
from sympy import Rational, Symbol, sqrt

from bnproof.symbolic._indexsets import (
    Layout,
    StopGradient,
    standardize,
    strip_stop_gradients,
    tensor,
)

eps = Symbol("epsilon", nonnegative=True)
b = Symbol("b", real=True)


# ---- Layout ------------------------------------------------------------------------- #


def test_layout_defaults():
    lay = Layout(N=2, C=3)
    assert (lay.N, lay.C, lay.P, lay.D, lay.G) == (2, 3, 1, 2, 1)


def test_the_smallest_layout_is_allowed():
    lay = Layout(N=1, C=1, P=1, D=1, G=1)
    assert lay.activations() == [(1, 1, 1)]


@pytest.mark.parametrize("name", ["N", "C", "P", "D", "G"])
@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "2"])
def test_layout_rejects_a_bad_size_by_name(name, bad):
    sizes = {"N": 2, "C": 2, "P": 2, "D": 2, "G": 1, name: bad}
    with pytest.raises(ValueError, match=rf"layout size {name}={bad!r} must be an int >= 1"):
        Layout(**sizes)


def test_groups_must_divide_the_channels():
    with pytest.raises(ValueError, match=r"G=2 groups must divide C=3 channels \(choose G "
                                         r"among the divisors of 3\)"):
        Layout(N=1, C=3, G=2)
    assert Layout(N=1, C=4, G=4).per_group == 1
    assert Layout(N=1, C=4, G=2).per_group == 2


def test_per_group_is_an_int_and_groups_are_consecutive():
    lay = Layout(N=1, C=6, G=3)
    assert lay.per_group == 2
    assert isinstance(lay.per_group, int)
    # channels 1, 2 -> group 1; 3, 4 -> 2; 5, 6 -> 3
    assert [lay.group(c) for c in range(1, 7)] == [1, 1, 2, 2, 3, 3]
    assert [Layout(N=1, C=3).group(c) for c in (1, 2, 3)] == [1, 1, 1]


def test_index_lists_are_enumerated_in_order():
    lay = Layout(N=2, C=1, P=2, D=3)
    assert lay.activations() == [(1, 1, 1), (1, 1, 2), (2, 1, 1), (2, 1, 2)]
    assert lay.inputs() == [(1, 1, 1), (1, 1, 2), (1, 2, 1), (1, 2, 2), (1, 3, 1), (1, 3, 2),
                            (2, 1, 1), (2, 1, 2), (2, 2, 1), (2, 2, 2), (2, 3, 1), (2, 3, 2)]
    assert Layout(N=5, C=2, D=3).weights() == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert Layout(N=1, C=3, P=1).activations() == [(1, 1, 1), (1, 2, 1), (1, 3, 1)]


def test_layout_text():
    assert Layout(N=2, C=4, P=3, D=5, G=2).text() == "N=2, C=4, P=3, G=2, D=5"


# ---- tensor --------------------------------------------------------------------------- #


def test_tensor_names_and_real_by_default():
    t = tensor("a", [(1, 2, 1), (2, 1, 3)])
    assert list(t) == [(1, 2, 1), (2, 1, 3)]
    assert t[(1, 2, 1)] == Symbol("a_{1,2,1}", real=True)
    assert t[(2, 1, 3)] == Symbol("a_{2,1,3}", real=True)
    assert t[(1, 2, 1)] != Symbol("a_{1,2,1}")  # the assumption is part of the symbol


def test_tensor_with_its_own_assumptions():
    t = tensor("W", [(3,)], positive=True)
    assert t[(3,)] == Symbol("W_{3}", positive=True)
    assert t[(3,)] != Symbol("W_{3}", real=True)


# ---- standardize ---------------------------------------------------------------------- #


def test_standardize_one_slice_of_two():
    # mean 2, biased variance ((1-2)^2 + (3-2)^2) / 2 = 1
    out = standardize({(1,): 1, (2,): 3}, lambda i: 0, eps)
    assert out == {(1,): -1 / sqrt(1 + eps), (2,): 1 / sqrt(1 + eps)}


def test_standardize_one_slice_of_three_without_eps():
    # mean 3, biased variance (4 + 1 + 9) / 3 = 14/3
    out = standardize({(1,): 1, (2,): 2, (3,): 6}, lambda i: "all", 0)
    scale = sqrt(Rational(14, 3))
    assert out == {(1,): -2 / scale, (2,): -1 / scale, (3,): 3 / scale}


def test_standardize_per_slice():
    # slice "odd": 1, 5 (mean 3, variance 4); slice "even": 2, 2, 8 (mean 4, variance 8)
    a = {(1,): 1, (2,): 2, (3,): 5, (4,): 2, (6,): 8}
    out = standardize(a, lambda i: i[0] % 2, 0)
    assert out == {(1,): -1, (3,): 1, (2,): -2 / sqrt(8), (4,): -2 / sqrt(8),
                   (6,): 4 / sqrt(8)}


def test_standardize_without_centering_divides_by_the_root_mean_square():
    # mean square (9 + 16) / 2 = 25/2
    out = standardize({(1,): 3, (2,): 4}, lambda i: 0, eps, center=False)
    assert out == {(1,): 3 / sqrt(Rational(25, 2) + eps), (2,): 4 / sqrt(Rational(25, 2) + eps)}


# ---- StopGradient --------------------------------------------------------------------- #


def test_stop_gradient_has_derivative_zero_and_passes_its_value():
    assert sympy.diff(StopGradient(b**2) * b, b) == StopGradient(b**2)
    assert sympy.diff(StopGradient(b), b) == 0
    assert StopGradient(b).fdiff() is sympy.S.Zero
    assert StopGradient(sympy.Integer(3)) == 3
    assert StopGradient(Rational(1, 2)) == Rational(1, 2)
    assert isinstance(StopGradient(b), StopGradient)
    with pytest.raises(TypeError):
        StopGradient(b, b)  # one argument


def test_strip_stop_gradients():
    expr = StopGradient(b**2) * b + StopGradient(b + 1)
    assert strip_stop_gradients(expr) == b**3 + b + 1
    assert strip_stop_gradients(b) == b
