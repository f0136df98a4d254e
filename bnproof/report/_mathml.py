"""MathML Core output for SymPy expressions, with SymPy's fallbacks fixed.

SymPy's presentation printer (:class:`sympy.printing.mathml.MathMLPresentationPrinter`)
returns a fragment without a ``<math>`` root and, for classes it does not
know, prints the lowercased class name followed by the arguments: a
Kronecker delta comes out as ``kroneckerdelta(j, k)``, a ``Piecewise`` as
``piecewise((1/N, ...), (0, True))`` and an undefined function ``BN`` as
``bn`` (sympy issues 16036 and 11200). The derivation steps of the proofs
contain all three, so the report prints them with :class:`ReportMathMLPrinter`.

The output uses only elements of MathML Core (``mi``, ``mo``, ``mn``,
``mrow``, ``msub``, ``msup``, ``msubsup``, ``mfrac``, ``msqrt``,
``munderover``, ``mtable``, ``mtext``), which Chromium (109+), Firefox and
Safari lay out natively without JavaScript, and numeric character
references only, so a fragment is valid in HTML and in XML alike.
"""

from __future__ import annotations

import html.entities
import re

import sympy
from sympy.core.function import AppliedUndef
from sympy.printing.mathml import MathMLPresentationPrinter

__all__ = ["ReportMathMLPrinter", "is_latex_label", "mathml"]

#: A symbol name written as LaTeX (``\\mu``, ``\\Delta b``, ``s(b + t \\Delta b)``)
#: rather than as a plain SymPy name (``mu_R``, ``sigma^2``).
_LABEL_MARKUP = re.compile(r"[\\ (){}|]")

#: LaTeX commands that may appear in such labels, as characters.
_COMMANDS = {
    "nabla": "\u2207", "partial": "\u2202", "langle": "\u27E8", "rangle": "\u27E9",
    "|": "\u2016", "cdot": "\u22C5", "times": "\u00D7", "infty": "\u221E",
    "sum": "\u2211", "ldots": "\u2026", "dots": "\u2026", "to": "\u2192", "in": "\u2208",
    "leq": "\u2264", "geq": "\u2265", "le": "\u2264", "ge": "\u2265", "neq": "\u2260",
    "ne": "\u2260", "approx": "\u2248", "propto": "\u221D", "pm": "\u00B1",
    "epsilon": "\u03B5", "varepsilon": "\u03B5", "vartheta": "\u03D1", "varphi": "\u03C6",
}
_GREEK = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
    "sigma tau upsilon phi chi psi omega"
).split()
for _offset, _name in enumerate(_GREEK):
    _COMMANDS.setdefault(_name, chr(0x3B1 + _offset + (_offset >= 17)))
    _COMMANDS.setdefault(_name.capitalize(), chr(0x391 + _offset + (_offset >= 17)))
#: Spacing and sizing commands that print nothing.
_SILENT = {",", ";", ":", "!", " ", "left", "right", "big", "Big", "quad", "qquad"}
#: Characters of a label that are operators (everything else is an identifier).
_OPERATORS = set("+-=,()[]|<>/*!:;")


def is_latex_label(name: str) -> bool:
    r"""Return whether a symbol name is LaTeX markup (``\Delta b``), not a plain name."""
    return bool(_LABEL_MARKUP.search(name))

_ENTITY = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
#: XML's own five entities stay named; every other one becomes numeric.
_XML_ENTITIES = {"amp", "lt", "gt", "quot", "apos"}


def _numeric_entities(text: str) -> str:
    """Replace HTML named entities (``&dd;``, ``&InvisibleTimes;``) by numeric ones."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in _XML_ENTITIES:
            return match.group(0)
        chars = html.entities.html5.get(name + ";")
        if chars is None:
            raise ValueError(f"unknown entity &{name}; in MathML output")
        return "".join(f"&#x{ord(c):X};" for c in chars)

    return _ENTITY.sub(repl, text)


class ReportMathMLPrinter(MathMLPresentationPrinter):
    r"""Presentation MathML printer for the derivation report.

    Differences from SymPy's printer:

    * ``KroneckerDelta(i, j)`` prints as ``δ`` with the subscript ``i j``;
    * ``Piecewise`` prints as a brace and a table of (value, condition) rows,
      the last condition ``True`` as "otherwise";
    * undefined functions keep their name as written (``BN``, ``y_i``, Greek
      names as letters), and any other unknown class its own name rather
      than the lowercased one;
    * the ordinary derivative's "d" is an upright ``mi``, not the
      double-struck ``ⅆ`` operator, so it needs no special font;
    * the minus sign is U+2212, not a hyphen;
    * a symbol whose name is written in LaTeX (``Symbol(r"\Delta b")``,
      ``Symbol(r"\langle w, \nabla_w L \rangle")``) is laid out from that
      markup (Greek letters, a few operators, ``_``, ``^``, braces) instead
      of being shown as its raw source.

    Notes
    -----
    Used for the intermediate expressions of every proof step (the Kronecker
    delta appears in the Jacobian of section 3 of Ioffe & Szegedy 2015).
    """

    printmethod = "_mathml_report"

    def mathml_tag(self, e: object) -> str:
        """Return the tag or name for ``e``, keeping the class name's case."""
        name = super().mathml_tag(e)
        cls = type(e).__name__
        if name == cls.lower() and name != cls:
            return cls
        return name

    def _element(self, tag: str, text: str | None = None, **attrs: str):
        node = self.dom.createElement(tag)
        for key, value in attrs.items():
            node.setAttribute(key, value)
        if text is not None:
            node.appendChild(self.dom.createTextNode(text))
        return node

    def _print_KroneckerDelta(self, e):
        sub = self._element("msub")
        sub.appendChild(self._element("mi", "&#x3B4;"))
        indices = self._element("mrow")
        simple = all(arg.is_Atom for arg in e.args)
        for position, arg in enumerate(e.args):
            if position:
                # An invisible separator between atoms (δ_jk), a comma otherwise.
                indices.appendChild(self._element("mo", "&#x2063;" if simple else ","))
            indices.appendChild(self._print(arg))
        sub.appendChild(indices)
        return sub

    def _print_Piecewise(self, e):
        row = self._element("mrow")
        row.appendChild(self._element("mo", "{"))
        # displaystyle: fractions in the cells at full size, as in a display.
        table = self._element("mtable", columnalign="left left", displaystyle="true")
        for value, condition in e.args:
            tr = self._element("mtr")
            cell = self._element("mtd")
            cell.appendChild(self._print(value))
            tr.appendChild(cell)
            cell = self._element("mtd")
            if condition == sympy.true:
                cell.appendChild(self._element("mtext", "otherwise"))
            else:
                cond = self._element("mrow")
                cond.appendChild(self._element("mtext", "if&#xA0;"))
                cond.appendChild(self._print(condition))
                cell.appendChild(cond)
            tr.appendChild(cell)
            table.appendChild(tr)
        row.appendChild(table)
        return row

    def _print_Symbol(self, sym, style="plain"):
        if is_latex_label(sym.name):
            return self._label(sym.name)
        return super()._print_Symbol(sym, style=style)

    def _label(self, source: str):
        """Lay out a symbol name written in simple LaTeX (commands, ``_``, ``^``, braces)."""
        row = self._element("mrow")
        pos = 0

        def atom(pos):
            """Parse one atom at ``pos``; return (node or None, new position)."""
            ch = source[pos]
            if ch == "{":
                depth, end = 1, pos + 1
                while end < len(source) and depth:
                    depth += {"{": 1, "}": -1}.get(source[end], 0)
                    end += 1
                return self._label(source[pos + 1 : end - 1]), end
            if ch == "\\":
                match = re.match(r"[A-Za-z]+|.", source[pos + 1 :])
                if match is None:
                    return None, pos + 1
                name = match.group(0)
                end = pos + 1 + len(name)
                if name in _SILENT:
                    return None, end
                if name in ("hat", "bar", "tilde") and end < len(source):
                    base, end = atom(end)
                    over = self._element("mover", accent="true")
                    over.appendChild(base)
                    over.appendChild(self._element(
                        "mo", {"hat": "^", "bar": "\u00AF", "tilde": "~"}[name]))
                    return over, end
                if name in ("mathrm", "operatorname", "text") and end < len(source):
                    inner, end2 = atom(end)
                    text = "".join(n.data for n in _text_nodes(inner))
                    return self._element("mi", text, mathvariant="normal"), end2
                char = _COMMANDS.get(name)
                if char is None:
                    return self._element("mi", name), end
                tag = "mi" if char.isalpha() else "mo"
                return self._element(tag, char), end
            if ch.isspace():
                return None, pos + 1
            if ch.isdigit():
                match = re.match(r"[0-9.]+", source[pos:])
                return self._element("mn", match.group(0)), pos + len(match.group(0))
            if ch in _OPERATORS:
                return self._element("mo", "\u2212" if ch == "-" else ch), pos + 1
            return self._element("mi", ch), pos + 1

        while pos < len(source):
            if source[pos] in "_^":  # a script with no base: attach to nothing
                pos += 1
                continue
            base, pos = atom(pos)
            if base is None:
                continue
            sub = sup = None
            while pos < len(source) and source[pos] in "_^":
                mark = source[pos]
                pos += 1
                while pos < len(source) and source[pos].isspace():
                    pos += 1
                if pos >= len(source):
                    break
                script, pos = atom(pos)
                if mark == "_":
                    sub = script
                else:
                    sup = script
            if sub is not None and sup is not None:
                node = self._element("msubsup")
                for child in (base, sub, sup):
                    node.appendChild(child)
            elif sub is not None or sup is not None:
                node = self._element("msub" if sub is not None else "msup")
                node.appendChild(base)
                node.appendChild(sub if sub is not None else sup)
            else:
                node = base
            row.appendChild(node)
        return row

    def _print_Function(self, e):
        if not isinstance(e, AppliedUndef):
            return super()._print_Function(e)
        row = self._element("mrow")
        name = type(e).__name__
        if len(name) > 1 and name.isalpha() and name.isupper():
            # An operator-like name (BN): upright, as one identifier.
            row.appendChild(self._element("mi", name))
        else:
            row.appendChild(self._print(sympy.Symbol(name)))
        row.appendChild(self._paren_comma_separated(*e.args))
        return row

    def _print_Derivative(self, e):
        node = super()._print_Derivative(e)
        for mo in list(node.getElementsByTagName("mo")):
            if mo.firstChild is not None and mo.firstChild.data == "&dd;":
                mi = self._element("mi", "d", mathvariant="normal")
                mo.parentNode.replaceChild(mi, mo)
        return node

    def doprint(self, expr) -> str:
        """Return the fragment for ``expr`` with numeric character references only."""
        # SymPy writes the minus sign as a hyphen; typeset it as U+2212.
        out = super().doprint(expr).replace("<mo>-</mo>", "<mo>&#x2212;</mo>")
        return _numeric_entities(out)


def mathml(expr: sympy.Basic, *, display: str = "block") -> str:
    """Return ``expr`` as a complete ``<math>`` element.

    Parameters
    ----------
    expr : sympy.Basic
        The expression (an equation is a ``sympy.Eq``).
    display : {"block", "inline"}, default "block"
        ``block`` centres the formula on its own line.

    Returns
    -------
    str
        ``<math display="...">...</math>``, MathML Core, no JavaScript needed.

    Raises
    ------
    TypeError
        If ``expr`` is not a SymPy object.
    ValueError
        If ``display`` is neither ``"block"`` nor ``"inline"``.
    """
    if not isinstance(expr, sympy.Basic):
        raise TypeError(
            f"expr must be a SymPy expression, got {type(expr).__name__} "
            "(build it with sympy, e.g. sympy.Eq(lhs, rhs))"
        )
    if display not in ("block", "inline"):
        raise ValueError(f"display={display!r}; use 'block' or 'inline'")
    body = ReportMathMLPrinter().doprint(expr)
    return f'<math display="{display}">{body}</math>'


def _text_nodes(node):
    """Yield the text nodes below ``node`` in document order."""
    for child in node.childNodes:
        if child.nodeType == child.TEXT_NODE:
            yield child
        else:
            yield from _text_nodes(child)
