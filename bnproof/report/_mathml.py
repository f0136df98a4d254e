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

__all__ = ["ReportMathMLPrinter", "is_latex_label", "latex_mathml", "mathml"]

#: A symbol name written as LaTeX (``\\mu``, ``\\Delta b``, ``s(b + t \\Delta b)``)
#: rather than as a plain SymPy name (``mu_R``, ``sigma^2``).
_LABEL_MARKUP = re.compile(r"[\\ (){}|]")

#: LaTeX commands that may appear in such labels, as characters.
_COMMANDS = {
    "nabla": "\u2207", "partial": "\u2202", "langle": "\u27E8", "rangle": "\u27E9",
    "|": "\u2016", "cdot": "\u22C5", "times": "\u00D7", "infty": "\u221E",
    "sum": "\u2211", "ldots": "\u2026", "dots": "\u2026", "to": "\u2192", "in": "\u2208",
    "leq": "\u2264", "geq": "\u2265", "le": "\u2264", "ge": "\u2265", "neq": "\u2260",
    "ne": "\u2260", "Rightarrow": "\u21D2", "Leftarrow": "\u21D0", "leftarrow": "\u2190",
    "rightarrow": "\u2192", "iff": "\u21D4", "approx": "\u2248", "propto": "\u221D", "pm": "\u00B1",
    "epsilon": "\u03B5", "varepsilon": "\u03B5", "vartheta": "\u03D1", "varphi": "\u03C6",
}
_GREEK = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
    "sigma tau upsilon phi chi psi omega"
).split()
for _offset, _name in enumerate(_GREEK):
    _COMMANDS.setdefault(_name, chr(0x3B1 + _offset + (_offset >= 17)))
    _COMMANDS.setdefault(_name.capitalize(), chr(0x391 + _offset + (_offset >= 17)))
#: Sizing commands that print nothing, and spacing commands -> width in em.
_SILENT = {"left", "right", "big", "Big", "bigg", "Bigg", "displaystyle"}
_SPACES = {",": 0.1667, ":": 0.2222, ";": 0.2778, " ": 0.2778, "!": 0.0, "quad": 1.0,
           "qquad": 2.0}
#: Accents: command -> the character set over the base.
_ACCENTS = {"hat": "^", "bar": "\u00AF", "overline": "\u00AF", "tilde": "~", "vec": "\u2192",
            "dot": "\u02D9"}
#: Font commands whose argument is shown upright (MathML Core's only variant).
_UPRIGHT = {"mathrm", "operatorname", "text", "mathbf", "textrm", "mathsf"}
#: Characters of a label that are operators (everything else is an identifier).
_OPERATORS = set("+-=,()[]|<>/*!:;")


def _escape_xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
            try:
                return self._label(sym.name)
            except ValueError:
                # Markup outside the subset: show the name as it is written.
                return self._element("mi", _escape_xml(sym.name))
        if _escape_xml(sym.name) != sym.name:
            # SymPy writes names into the DOM unescaped.
            sym = sympy.Symbol(_escape_xml(sym.name))
        return super()._print_Symbol(sym, style=style)

    def _label(self, source: str, strict: bool = False):
        """Lay out simple LaTeX: see :func:`latex_mathml` for the subset understood."""
        return _LatexParser(self, source, strict).parse()

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

    Notes
    -----
    Prints the derivation steps of the proofs of sections 2 and 3 of Ioffe &
    Szegedy (2015) with :class:`ReportMathMLPrinter`.
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


class _LatexParser:
    """Recursive-descent parser for the small LaTeX subset of labels and statements."""

    def __init__(self, printer: ReportMathMLPrinter, source: str, strict: bool):
        self.p = printer
        self.src = source
        self.pos = 0
        self.strict = strict

    def _skip_spaces(self) -> None:
        while self.pos < len(self.src) and self.src[self.pos].isspace():
            self.pos += 1

    def _group_end(self, start: int) -> int:
        depth, end = 1, start + 1
        while end < len(self.src) and depth:
            depth += {"{": 1, "}": -1}.get(self.src[end], 0)
            end += 1
        if depth:
            raise ValueError(f"unbalanced braces in {self.src!r}")
        return end

    def _argument(self):
        """Parse a command's argument: a braced group or a single atom."""
        self._skip_spaces()
        if self.pos >= len(self.src):
            raise ValueError(f"a command in {self.src!r} lacks its argument")
        node = self._atom()
        while node is None and self.pos < len(self.src):
            node = self._atom()
        if node is None:
            raise ValueError(f"a command in {self.src!r} lacks its argument")
        return node

    def _atom(self):
        """Parse one atom at the current position; ``None`` for spaces and sizing."""

        def el(tag, text=None, **attrs):
            # Text from the source is escaped: SymPy's DOM writes text nodes raw.
            if text is not None:
                text = _escape_xml(text)
            return self.p._element(tag, text, **attrs)

        src, ch = self.src, self.src[self.pos]
        if ch == "{":
            end = self._group_end(self.pos)
            inner = _LatexParser(self.p, src[self.pos + 1 : end - 1], self.strict).parse()
            self.pos = end
            return inner
        if ch == "\\":
            match = re.match(r"[A-Za-z]+|.", src[self.pos + 1 :])
            if match is None:
                raise ValueError(f"a lone backslash ends {src!r}")
            name = match.group(0)
            self.pos += 1 + len(name)
            if name in _SILENT:
                return None
            if name in _SPACES:
                return el("mspace", width=f"{_SPACES[name]:.4f}em")
            if name == "frac":
                frac = el("mfrac")
                frac.appendChild(self._argument())
                frac.appendChild(self._argument())
                return frac
            if name == "sqrt":
                root = el("msqrt")
                root.appendChild(self._argument())
                return root
            if name in _ACCENTS:
                over = el("mover", accent="true")
                over.appendChild(self._argument())
                over.appendChild(el("mo", _ACCENTS[name]))
                return over
            if name in _UPRIGHT:
                text = "".join(n.data for n in _text_nodes(self._argument()))
                return el("mi", text, mathvariant="normal")
            char = _COMMANDS.get(name)
            if char is None:
                if self.strict:
                    raise ValueError(f"LaTeX command \\{name} of {src!r} is not supported")
                return el("mi", name)
            if not char.isalpha():
                return el("mo", char)
            # Capital Greek letters are set upright, as in TeX.
            return el("mi", char, mathvariant="normal") if char.isupper() else el("mi", char)
        if ch.isspace():
            self.pos += 1
            return None
        if ch.isdigit():
            number = re.match(r"[0-9]+(\.[0-9]+)?", src[self.pos :]).group(0)
            self.pos += len(number)
            return el("mn", number)
        self.pos += 1
        if ch in _OPERATORS:
            return el("mo", "\u2212" if ch == "-" else ch)
        if ch == "}":
            raise ValueError(f"unbalanced braces in {src!r}")
        return el("mi", ch)

    def parse(self):
        """Return an ``mrow`` for the whole source."""
        row = self.p._element("mrow")
        src = self.src
        while self.pos < len(src):
            if src[self.pos] in "_^":
                if self.strict:
                    raise ValueError(f"a script without a base in {src!r}")
                self.pos += 1
                continue
            base = self._atom()
            if base is None:
                continue
            scripts = {}
            while True:
                self._skip_spaces()
                if self.pos >= len(src) or src[self.pos] not in "_^":
                    break
                mark = src[self.pos]
                self.pos += 1
                scripts[mark] = self._argument()
            if "_" in scripts and "^" in scripts:
                node = self.p._element("msubsup")
                for child in (base, scripts["_"], scripts["^"]):
                    node.appendChild(child)
            elif scripts:
                (mark, script), = scripts.items()
                node = self.p._element("msub" if mark == "_" else "msup")
                node.appendChild(base)
                node.appendChild(script)
            else:
                node = base
            row.appendChild(node)
        return row


def latex_mathml(source: str, *, display: str = "block") -> str:
    r"""Return a small subset of LaTeX math as a complete ``<math>`` element.

    Parameters
    ----------
    source : str
        Math-mode LaTeX using only: letters, digits, operators, ``_``, ``^``,
        braces, Greek letters, ``\frac``, ``\sqrt``, accents (``\hat``,
        ``\bar``, ``\overline``, ``\tilde``, ``\vec``), upright text
        (``\mathrm``, ``\operatorname``, ``\mathbf``), spacing, sizing
        (``\Big``, ``\left``, ``\right``) and a few symbols (``\partial``,
        ``\nabla``, ``\sum``, ``\langle``, ``\neq``, ...).
    display : {"block", "inline"}, default "block"

    Returns
    -------
    str

    Raises
    ------
    TypeError
        If ``source`` is not a string.
    ValueError
        If ``source`` uses anything outside the subset (the caller may then
        show the source instead), or ``display`` is not valid.

    Notes
    -----
    For the registry's statements (:attr:`bnproof.symbolic.Claim.latex`),
    which have no SymPy form to print.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a str of LaTeX, got {type(source).__name__}")
    if display not in ("block", "inline"):
        raise ValueError(f"display={display!r}; use 'block' or 'inline'")
    printer = ReportMathMLPrinter()
    node = printer._label(source, strict=True)
    body = node.toxml().encode("ascii", "xmlcharrefreplace").decode()
    return f'<math display="{display}">{body}</math>'
