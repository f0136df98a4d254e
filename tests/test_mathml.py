"""The report's MathML printer: SymPy's generic fallbacks fixed, MathML Core only."""

import re
import xml.dom.minidom

import pytest
import sympy
from sympy import Eq, Function, IndexedBase, KroneckerDelta, Piecewise, Sum, Symbol, sqrt
from sympy.printing.mathml import MathMLPresentationPrinter

from bnproof.report import mathml
from bnproof.report._mathml import ReportMathMLPrinter

i, j, k = sympy.symbols("i j k", integer=True)
N = Symbol("N", integer=True, positive=True)
x = IndexedBase("x")
b = Symbol("b")

#: Elements of MathML Core (https://w3c.github.io/mathml-core/) the printer may use.
MATHML_CORE = {
    "math", "mi", "mn", "mo", "mtext", "mspace", "ms", "mrow", "mfrac", "msqrt", "mroot",
    "msub", "msup", "msubsup", "munder", "mover", "munderover", "mmultiscripts",
    "mprescripts", "mtable", "mtr", "mtd", "mpadded", "mphantom", "mstyle", "semantics",
    "annotation", "annotation-xml", "merror",
}


def _parse(fragment):
    """Parse a <math> element as XML (fails on named HTML entities)."""
    return xml.dom.minidom.parseString(fragment).documentElement


def _texts(node, tag):
    return [el.firstChild.data if el.firstChild else "" for el in node.getElementsByTagName(tag)]


def test_wraps_in_a_block_math_element():
    root = _parse(mathml(Eq(b, 0)))
    assert root.tagName == "math"
    assert root.getAttribute("display") == "block"
    assert _parse(mathml(b, display="inline")).getAttribute("display") == "inline"


def test_kronecker_delta_is_a_subscripted_delta():
    root = _parse(mathml(KroneckerDelta(i, j)))
    sub = root.getElementsByTagName("msub")[0]
    assert sub.firstChild.tagName == "mi" and sub.firstChild.firstChild.data == "\u03b4"
    assert _texts(sub, "mi")[1:] == ["i", "j"]
    assert "kroneckerdelta" not in mathml(KroneckerDelta(i, j)).lower()


def test_kronecker_delta_with_compound_index_uses_a_comma():
    root = _parse(mathml(KroneckerDelta(i, k + 1)))
    assert "," in _texts(root, "mo")


def test_piecewise_is_a_brace_and_a_table():
    expr = Piecewise((1 / N, (j >= 1) & (j <= N)), (0, True))
    out = mathml(expr)
    root = _parse(out)
    assert "piecewise" not in out.lower()
    assert _texts(root, "mo")[0] == "{"
    rows = root.getElementsByTagName("mtr")
    assert len(rows) == 2
    assert _texts(rows[1], "mtext") == ["otherwise"]
    assert rows[0].getElementsByTagName("mfrac"), "the value 1/N is laid out as a fraction"
    assert "True" not in out


def test_undefined_function_names_keep_their_case():
    out = mathml(Function("BN")(x[j]))
    assert "<mi>BN</mi>" in out
    assert "<mi>bn</mi>" not in out


def test_undefined_function_names_split_subscripts_and_greek():
    root = _parse(mathml(Function("y_i")(b)))
    sub = root.getElementsByTagName("msub")[0]
    assert _texts(sub, "mi") == ["y", "i"]
    assert "\u03b3" in _texts(_parse(mathml(Function("gamma")(b))), "mi")


def test_known_functions_are_unchanged():
    assert "<mi>sin</mi>" in mathml(sympy.sin(b))
    assert _parse(mathml(sqrt(b + 1))).getElementsByTagName("msqrt")


def test_unknown_classes_print_their_own_name():
    class Moment(sympy.Function):
        """An applied function SymPy has no printer for."""

    out = mathml(Moment(b))
    assert "<mi>Moment</mi>" in out


def test_derivative_uses_an_upright_d_not_the_double_struck_operator():
    out = mathml(sympy.Derivative(Function("y")(b), b))
    assert "&dd;" not in out and "\u2146" not in out
    root = _parse(out)
    ds = [el for el in root.getElementsByTagName("mi") if el.getAttribute("mathvariant")]
    assert [el.firstChild.data for el in ds] == ["d", "d"]


def test_sums_and_indexed_values_lay_out():
    expr = Eq(Symbol("mu"), Sum(x[k] + b, (k, 1, N)) / N)
    root = _parse(mathml(expr))
    assert root.getElementsByTagName("munderover")
    assert root.getElementsByTagName("mfrac")
    assert "\u2211" in _texts(root, "mo")


def test_only_mathml_core_elements_and_numeric_references():
    exprs = [
        Eq(sympy.Derivative(Function("y")(b), b), KroneckerDelta(i, j) - 1 / N),
        Piecewise((1 / N, (j >= 1) & (j <= N)), (0, True)) * Symbol("gamma"),
        Sum(x[k] * KroneckerDelta(j, k), (k, 1, N)),
        sqrt(Symbol("sigma_R^2") + Symbol("epsilon")),
    ]
    for expr in exprs:
        out = mathml(expr)
        assert not re.search(r"&[A-Za-z]+;", out), out  # numeric references only
        tags = {el.tagName for el in _parse(out).getElementsByTagName("*")} | {"math"}
        assert tags <= MATHML_CORE, tags - MATHML_CORE


def test_sympys_own_printer_still_needs_the_fix():
    # Negative control: the stock printer is what the subclass corrects. If
    # SymPy fixes its fallbacks this fails, and the subclass can shrink.
    stock = MathMLPresentationPrinter().doprint(KroneckerDelta(i, j))
    assert "kroneckerdelta" in stock
    assert "kroneckerdelta" not in ReportMathMLPrinter().doprint(KroneckerDelta(i, j))


def test_rejects_bad_arguments():
    with pytest.raises(TypeError, match="SymPy expression"):
        mathml("x + 1")
    with pytest.raises(ValueError, match="display='wide'"):
        mathml(b, display="wide")


def test_minus_is_a_minus_sign():
    out = mathml(b - KroneckerDelta(i, j))
    assert "<mo>&#x2212;</mo>" in out
    assert "<mo>-</mo>" not in out


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (r"\mu", ["\u03bc"]),
        (r"\Delta b", ["\u0394", "b"]),
        (r"\sigma^2", ["\u03c3", "2"]),
        (r"\langle w, \nabla_w L \rangle", ["\u27e8", "w", ",", "\u2207", "w", "L", "\u27e9"]),
        (r"y_i(a x) - y_i(x)", ["y", "i", "(", "a", "x", ")", "\u2212", "y", "i", "(", "x", ")"]),
    ],
)
def test_symbols_named_in_latex_are_laid_out(name, expected):
    out = mathml(Symbol(name))
    assert "\\" not in out, out
    root = _parse(out)
    leaves = [el.firstChild.data for el in root.getElementsByTagName("*")
              if el.firstChild is not None and el.firstChild.nodeType == el.TEXT_NODE]
    assert leaves == expected


def test_latex_label_scripts_attach_to_their_base():
    root = _parse(mathml(Symbol(r"\sigma^2")))
    sup = root.getElementsByTagName("msup")[0]
    assert [c.firstChild.data for c in sup.childNodes] == ["\u03c3", "2"]
    root = _parse(mathml(Symbol(r"\nabla_w L")))
    sub = root.getElementsByTagName("msub")[0]
    assert [c.firstChild.data for c in sub.childNodes] == ["\u2207", "w"]


def test_plain_symbol_names_keep_sympys_handling():
    assert _texts(_parse(mathml(Symbol("mu_R"))), "mi") == ["\u03bc", "R"]


def _leaves(root):
    return [el.firstChild.data for el in root.getElementsByTagName("*")
            if el.firstChild is not None and el.firstChild.nodeType == el.TEXT_NODE]


def test_latex_statements_are_laid_out():
    from bnproof.report import latex_mathml

    root = _parse(latex_mathml(
        r"\frac{\partial y_i}{\partial b} = \frac{\gamma}{\sqrt{\sigma_R^2 + \epsilon}} \neq 0"))
    fracs = root.getElementsByTagName("mfrac")
    assert len(fracs) == 2
    assert _leaves(fracs[0]) == ["\u2202", "y", "i", "\u2202", "b"]
    (root_,) = root.getElementsByTagName("msqrt")
    assert _leaves(root_) == ["\u03c3", "R", "2", "+", "\u03b5"]
    assert "\u2260" in _leaves(root)


def test_latex_accents_spacing_and_upright_text():
    from bnproof.report import latex_mathml

    root = _parse(latex_mathml(r"\mathrm{BN}(x + c\,\mathbf{1}) = \hat x_j\Big(\bar g\Big)"))
    mis = {el.firstChild.data: el.getAttribute("mathvariant")
           for el in root.getElementsByTagName("mi")}
    assert mis["BN"] == "normal" and mis["1"] == "normal"
    (sub,) = root.getElementsByTagName("msub")
    assert sub.firstChild.tagName == "mover"  # the hat sits on x, the j below both
    assert root.getElementsByTagName("mspace")
    assert "Big" not in _leaves(root)


@pytest.mark.parametrize("source", [r"\unknowncommand x", r"\frac{a}{b", "x}", r"\frac{a}"])
def test_latex_outside_the_subset_is_refused(source):
    from bnproof.report import latex_mathml

    with pytest.raises(ValueError):
        latex_mathml(source)


def test_capital_greek_is_upright():
    mi = _parse(mathml(Symbol(r"\Delta b"))).getElementsByTagName("mi")[0]
    assert mi.firstChild.data == "\u0394" and mi.getAttribute("mathvariant") == "normal"
