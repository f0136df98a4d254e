"""Literal unit tests of the plain-text printer (``_text``).

The expected strings are what a person would type for each LaTeX name or
expression (the module docstring's rules: ``\\hat{x}`` is ``xhat``, a
derivative is ``dy[i]/db``, an equation is ``lhs = rhs``).
"""

import pytest
import sympy
from sympy import Derivative, Eq, Function, IndexedBase, KroneckerDelta, Symbol

from bnproof.symbolic._text import _PlainPrinter, plain, plain_name


@pytest.mark.parametrize(
    "name, text",
    [
        (r"\hat{x}", "xhat"),
        (r"\widehat{x}", "xhat"),
        (r"\bar{x}", "xbar"),
        (r"\overline{x}", "xbar"),
        (r"\langle a, b \rangle", "<a, b>"),
        (r"\langle  a\rangle", "<a>"),
        (r"\nabla_b L", "grad_b L"),
        (r"\nabla L", "grad_L"),
        (r"\|x\|", "||x||"),
        (r"\epsilon", "eps"),
        (r"\varepsilon", "eps"),
        (r"\Delta b", "Delta b"),
        (r"\mu", "mu"),
        (r"\mu_B", "mu_B"),
        (r"\sigma_{R}^{2}", "sigma_R^2"),
        (r"\gamma2", "gamma 2"),  # a command is kept apart from what follows it
        (r"\Delta{b}", "Delta b"),  # and from its braced operand
        (r"\Delta {b}", "Delta b"),
        (r"\mathbf{W}", "W"),  # font commands keep only their argument
        (r"\mu_{\mathcal{B}}", "mu_B"),
        (r"\operatorname{Var}[x]", "Var[x]"),
        (r"\textrm{bias}", "bias"),
        ("  a   b ", "a b"),
        ("x", "x"),
    ],
)
def test_plain_name(name, text):
    assert plain_name(name) == text


def test_plain_prints_symbols_by_their_plain_names():
    assert plain(Symbol(r"\hat{x}") + 1) == "xhat + 1"
    assert plain(sympy.Dummy(r"\mu")) == "mu"
    assert plain(IndexedBase(r"\hat{x}")) == "xhat"
    i, j = sympy.symbols("i j")
    assert plain(IndexedBase(r"\bar{x}")[i, j]) == "xbar[i, j]"
    assert plain(IndexedBase("x")[i + 1]) == "x[i + 1]"


def test_the_printer_methods_for_indexed_objects():
    # SymPy 1.14 prints Indexed and IndexedBase through their own _sympystr (the label
    # goes through _print_Symbol); the printer's methods give the same text if called
    printer = _PlainPrinter()
    i, j = sympy.symbols("i j")
    assert printer._print_IndexedBase(IndexedBase(r"\hat{x}")) == "xhat"
    assert printer._print_Indexed(IndexedBase(r"\bar{x}")[i, j + 1]) == "xbar[i, j + 1]"


def test_plain_derivatives():
    b, c, i = sympy.symbols("b c i")
    y = IndexedBase("y")
    f = Function("f")
    assert plain(Derivative(y[i], b)) == "dy[i]/db"
    assert plain(Derivative(Symbol(r"\hat{x}"), b)) == "dxhat/db"
    assert plain(Derivative(y[i], (b, 2))) == "d^2y[i]/db^2"
    assert plain(Derivative(f(b, c), b, c)) == "d^2(f(b, c))/dbdc"
    assert plain(Derivative(f(b), b, (c, 3))) == "d^4(f(b))/dbdc^3"
    assert plain(Derivative(f(b), Symbol(r"\gamma"))) == "d(f(b))/dgamma"


def test_plain_delta_and_equation():
    i, j = sympy.symbols("i j")
    assert plain(KroneckerDelta(i, j + 1)) == "delta(i, j + 1)"
    mu = Symbol(r"\mu")
    assert plain(Eq(mu, Symbol("x") / 2, evaluate=False)) == "mu = x/2"


def test_plain_of_anything_else_is_str():
    assert plain([1, 2]) == "[1, 2]"
    assert plain(r"\mu") == r"\mu"  # a str is not a SymPy expression: left as it is
