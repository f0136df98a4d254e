r"""Plain-text maths for terminals and messages: the paper's notation, no LaTeX.

Some symbols of the derivations are named in LaTeX (``\\mu``, ``\\hat{x}``,
``\\Delta b``) so that the report typesets them; SymPy's ``str`` would print
those names verbatim (``Eq(\\mu, ...)``) and spell derivatives as
``Derivative(y[i], b)``. :func:`plain` prints an expression as a person
would type it: ``mu = Sum(x[m], (m, 1, N))/N``, ``dy[i]/db``.
"""

from __future__ import annotations

import re

import sympy
from sympy.printing.str import StrPrinter

__all__ = ["plain", "plain_name"]

_COMMANDS = (
    (re.compile(r"\\(?:hat|widehat)\{(\w+)\}"), r"\1hat"),
    (re.compile(r"\\(?:bar|overline)\{(\w+)\}"), r"\1bar"),
    (re.compile(r"\\langle\s*"), "<"),
    (re.compile(r"\s*\\rangle"), ">"),
    (re.compile(r"\\nabla_?"), "grad_"),
    (re.compile(r"\\\|"), "||"),
    (re.compile(r"\\(?:epsilon|varepsilon)"), "eps"),
    # font commands keep only their argument: \mathbf{W} -> W, \mathcal{B} -> B
    (re.compile(r"\\(?:math[a-z]+|boldsymbol|bm|operatorname|text[a-z]*)\{([^{}]*)\}"), r"\1"),
    # a command before its braced operand is a word of its own: \Delta{b} -> Delta b
    (re.compile(r"\\([A-Za-z]+)\s*\{(?=[A-Za-z0-9])"), r"\1 {"),
    (re.compile(r"\\([A-Za-z]+)(?![A-Za-z])\s*(?=[A-Za-z0-9])"), r"\1 "),
    (re.compile(r"\\([A-Za-z]+)"), r"\1"),
    (re.compile(r"[{}]"), ""),
)


def plain_name(name: str) -> str:
    r"""Return a symbol name with its LaTeX markup spelled out (``\\hat{x}`` -> ``xhat``)."""
    for pattern, repl in _COMMANDS:
        name = pattern.sub(repl, name)
    name = re.sub(r"\s+", " ", name).strip()
    return name.replace("grad_ ", "grad_")


class _PlainPrinter(StrPrinter):
    def _print_Symbol(self, expr):
        return plain_name(expr.name)

    _print_Dummy = _print_Symbol

    def _print_IndexedBase(self, expr):
        return plain_name(str(expr.label))

    def _print_Indexed(self, expr):
        base = plain_name(str(expr.base.label))
        return f"{base}[{', '.join(self._print(i) for i in expr.indices)}]"

    def _print_Derivative(self, expr):
        var = "".join(f"d{self._print(v)}" if n == 1 else f"d{self._print(v)}^{n}"
                      for v, n in expr.variable_count)
        order = sum(n for _, n in expr.variable_count)
        top = "d" if order == 1 else f"d^{order}"
        body = self._print(expr.expr)
        if not isinstance(expr.expr, sympy.Symbol | sympy.Indexed):
            body = f"({body})"
        return f"{top}{body}/{var}"

    def _print_KroneckerDelta(self, expr):
        return f"delta({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_Equality(self, expr):
        return f"{self._print(expr.lhs)} = {self._print(expr.rhs)}"


def plain(expr: object) -> str:
    r"""Return ``expr`` as plain text in the paper's notation.

    Parameters
    ----------
    expr : sympy.Basic or object
        An expression, an equation (printed ``lhs = rhs``) or anything else
        (printed with ``str``).

    Returns
    -------
    str

    Examples
    --------
    >>> import sympy
    >>> plain(sympy.Eq(sympy.Symbol(r"\mu"), sympy.Symbol("x") / 2, evaluate=False))
    'mu = x/2'
    """
    if isinstance(expr, sympy.Basic):
        return _PlainPrinter().doprint(expr)
    return str(expr)
