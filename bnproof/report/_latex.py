"""``report.tex``: a LaTeX article for pdflatex, figures as PDF files beside it.

Only packages of a basic TeX installation are used (amsmath, amssymb,
graphicx, geometry). Text is escaped and the few non-ASCII characters the
report uses are spelled as LaTeX commands, so pdflatex needs no Unicode setup.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from . import _document as doc
from ._collect import ReportData
from ._html import _folder

__all__ = ["render_latex", "write_latex"]

#: Tables longer than this are split, since a scaled box cannot break across pages.
ROWS_PER_TABLE = 40
#: Characters of ``\\footnotesize`` text on one line of the page, and the
#: space each column's padding takes, in the same characters.
TABLE_CHARS = 118
CELL_PAD_CHARS = 3

_ESCAPES = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "^": r"\textasciicircum{}",
    "_": r"\_",
    "%": r"\%",
    "~": r"\textasciitilde{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}

#: Non-ASCII characters of the report's text, as LaTeX.
_UNICODE = {
    "\u2212": "$-$", "\u2013": "--", "\u2014": "---", "\u2018": "`", "\u2019": "'",
    "\u201c": "``", "\u201d": "''", "\u2026": r"\ldots{}", "\u00a0": "~",
    "\u00d7": r"$\times$", "\u00b7": r"$\cdot$", "\u00b2": r"$^2$", "\u2190": r"$\leftarrow$",
    "\u2192": r"$\rightarrow$", "\u221d": r"$\propto$", "\u2202": r"$\partial$",
    "\u221a": r"$\surd$", "\u2211": r"$\sum$", "\u03a3": r"$\Sigma$", "\u0394": r"$\Delta$",
    "\u2264": r"$\le$", "\u2265": r"$\ge$", "\u2260": r"$\ne$", "\u2248": r"$\approx$",
    "\u2208": r"$\in$", "\u221e": r"$\infty$", "\u00b1": r"$\pm$",
    "\u03b1": r"$\alpha$", "\u03b2": r"$\beta$", "\u03b3": r"$\gamma$", "\u03b4": r"$\delta$",
    "\u03b5": r"$\varepsilon$", "\u03b7": r"$\eta$", "\u03bc": r"$\mu$", "\u03c3": r"$\sigma$",
    "\U0001d4b3": r"$\mathcal{X}$", "\u016b": r"$\bar{u}$", "\u2207": r"$\nabla$",
    "\u27e8": r"$\langle$", "\u27e9": r"$\rangle$",
}
_HAT = re.compile("(.)\u0302")


def _escape(value: str) -> str:
    out = []
    value = _HAT.sub(lambda m: "\x00" + m.group(1), value)
    hat = False
    for ch in value:
        if ch == "\x00":
            hat = True
            continue
        if hat:
            hat = False
            out.append(rf"$\hat{{{ch}}}$" if ch.isalpha() else _escape(ch))
            continue
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 128:
            out.append(ch)
        elif ch in _UNICODE:
            out.append(_UNICODE[ch])
        else:
            # Latin letters with accents are fine in T1 with inputenc; anything
            # else is named rather than left to break the build.
            decomposed = unicodedata.normalize("NFKD", ch)
            if decomposed and ord(decomposed[0]) < 128:
                out.append(ch)
            else:
                out.append(rf"\texttt{{[U+{ord(ch):04X}]}}")
    return "".join(out)


def _runs(runs) -> str:
    out = []
    for kind, value in runs:
        if kind == "strong":
            out.append(rf"\textbf{{{_escape(value)}}}")
        elif kind == "code":
            out.append(rf"\texttt{{{_escape(value)}}}")
        elif kind.startswith("link:"):
            out.append(rf"{_escape(value)} (\ref{{{kind[5:]}}})")
        else:
            out.append(_escape(value))
    return "".join(out)


#: Estimated width, in characters of display math, that fits on one line of
#: the page (11 pt, 2.2 cm margins). Longer formulas are broken into lines.
LINE_CHARS = 62


def _width(tex: str) -> float:
    """Estimate how wide ``tex`` typesets, in characters (a fraction counts its wider part)."""
    tex = re.sub(r"\\(left|right|big|Big|bigg|Bigg|displaystyle)\b", "", tex)
    tex = re.sub(r"\\(?:operatorname|mathrm|text)\{([^{}]*)\}", r"\1", tex)

    def frac(m: re.Match) -> str:
        num, den = m.group(1), m.group(2)
        return "x" * int(max(_width(num), _width(den)) + 1)

    previous = None
    while previous != tex:
        previous = tex
        tex = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", frac, tex)
    tex = re.sub(r"[_^]\{([^{}]*)\}", lambda m: "x" * (len(m.group(1)) // 2), tex)
    tex = re.sub(r"\\[A-Za-z]+", "x", tex)
    return float(len(re.sub(r"[{}\s]", "", tex)))


def _sympy_tex(expr) -> str:
    return doc.Math(expr).tex()


def _abbreviate(expr):
    """Name every sum and square root of ``expr``: ``(reduced, [(name, part), ...])``."""
    import sympy

    names: dict = {}
    order: list = []

    def visit(node):
        if isinstance(node, sympy.Sum) or (
            isinstance(node, sympy.Pow) and node.exp.is_Rational and node.exp.q == 2
            and _width(_sympy_tex(node)) > 12
        ):
            key = node if isinstance(node, sympy.Sum) else sympy.sqrt(node.base)
            if key not in names:
                for arg in key.args:
                    visit(arg)
                prefix = "S" if isinstance(key, sympy.Sum) else "R"
                count = sum(1 for k in order if isinstance(k, sympy.Sum) == (prefix == "S"))
                names[key] = sympy.Symbol(f"{prefix}_{count + 1}")
                order.append(key)
            return
        for arg in node.args:
            visit(arg)

    visit(expr)
    if not order:
        return expr, []
    # innermost first: a root may contain sums, which are named before it
    replaced = expr
    # xreplace, not subs: a name stands for its exact subtree also where the
    # subtree's free index is bound by an outer sum (S_2 depends on k there)
    for key in reversed(order):
        replaced = replaced.xreplace(_naming(key, names[key]))
    parts = []
    for key in order:
        inner = key
        # outermost first: naming an inner sum first would change the larger
        # subtree that another name stands for, which then no longer matches
        for other in reversed(order):
            if other is not key and inner.has(other):
                inner = inner.xreplace(_naming(other, names[other]))
        parts.append((names[key], inner))
    return replaced, parts


def _naming(key, name) -> dict:
    """Return the replacements that write ``key`` as ``name`` (a root also as ``1 / name``)."""
    import sympy

    if isinstance(key, sympy.Pow):  # sqrt(B): 1/sqrt(B) is B**(-1/2), another node
        return {key: name, sympy.Pow(key.base, -sympy.S.Half): 1 / name}
    return {key: name}


def _split_terms(lhs_tex: str, rhs) -> list[str]:
    """Break ``lhs = rhs`` after whole terms of ``rhs`` so that each line fits."""
    import sympy

    terms = sympy.Add.make_args(rhs) if isinstance(rhs, sympy.Add) else (rhs,)
    lines: list[str] = []
    current = f"{lhs_tex} = " if lhs_tex else ""
    for n, term in enumerate(terms):
        tex = _sympy_tex(term)
        piece = tex if n == 0 else (f" {tex}" if tex.startswith("-") else f" + {tex}")
        if n and _width(current + piece) > LINE_CHARS:
            lines.append(current)
            current = r"\qquad " + piece.strip()
        else:
            current += piece
    lines.append(current)
    return lines


def _expr_lines(expr) -> list[str]:
    """Return display lines for a SymPy expression: short ones whole, long ones broken."""
    import sympy

    tex = _sympy_tex(expr)
    if _width(tex) <= LINE_CHARS:
        return [tex]
    if isinstance(expr, sympy.Equality):
        lhs, rhs = expr.lhs, expr.rhs
        lhs_tex = _sympy_tex(lhs)
    else:
        lhs, rhs, lhs_tex = None, expr, ""
    if _width(lhs_tex) > LINE_CHARS // 2:
        # an identity of two long sides: both abbreviated with the same names,
        # the left side on lines of its own, then "= right side"
        (lhs, reduced), parts = _abbreviate(sympy.Tuple(lhs, rhs))
        lines = _split_terms("", lhs) + _split_terms(r"\qquad", reduced)
    else:
        reduced, parts = _abbreviate(rhs)
        lines = _split_terms(lhs_tex, reduced)
    if parts:
        lines.append(r"\text{where}")
        for name, part in parts:
            lines += _split_terms(_sympy_tex(name), part)
    return lines


#: Top-level separators of hand-written formulas where a line may break.
_LATEX_BREAKS = re.compile(r",\\qquad |,\\quad |\\quad\\Rightarrow\\quad ")


def _latex_lines(tex: str) -> list[str]:
    r"""Break a long hand-written formula at its ``,\\quad`` and ``\\Rightarrow`` joints."""
    if _width(tex) <= LINE_CHARS:
        return [tex]
    lines, last = [], 0
    for m in _LATEX_BREAKS.finditer(tex):
        if tex[:m.start()].count("{") != tex[:m.start()].count("}"):
            continue  # inside a group: not a top-level joint
        joint = m.group(0)
        lines.append(tex[last:m.start()] + ("," if joint.startswith(",") else ""))
        last = m.end()
        if "Rightarrow" in joint:
            lines.append(r"\Rightarrow")
    lines.append(tex[last:])
    return [ln for ln in lines if ln.strip()]


def _math(block: doc.Math) -> str:
    if block.expr is not None:
        lines = _expr_lines(block.expr)
    else:
        lines = _latex_lines(block.tex())
    lines = [re.sub(r"\n\s*\n", "\n", line) for line in lines]
    body = "\\\\[3pt]\n".join(rf"\fitbox{{$\displaystyle {line}$}}" for line in lines)
    return "\\begin{center}\n" + body + "\n\\end{center}"


def _colspec(block: doc.Table) -> str:
    r"""Return column types: natural widths when the table fits, else wrapped columns that do.

    Widths are estimated in characters of ``\\footnotesize`` text
    (:data:`TABLE_CHARS` to a line). A table too wide for the line gets
    ``p`` columns: each at least as wide as its longest word, the rest of
    the line shared in proportion to what each column would need unwrapped;
    headers wrap too. The table then needs no shrinking.
    """
    cols = range(len(block.headers))
    natural = [max([len(block.headers[c])] + [len(r[c]) for r in block.rows]) for c in cols]
    words = [max(len(w) for cell in [block.headers[c], *(r[c] for r in block.rows)]
                 for w in (cell.split() or [""])) for c in cols]
    budget = TABLE_CHARS - CELL_PAD_CHARS * len(natural)
    if sum(natural) <= budget:
        return "".join("r" if num else "l" for num in block.numeric)
    floor = [max(1, w) + 2 for w in words]  # a little slack: letters vary in width
    spare = max(0, budget - sum(floor))
    extra = [n - f for n, f in zip(natural, floor, strict=True)]
    total_extra = sum(extra) or 1
    widths = [f + spare * e / total_extra for f, e in zip(floor, extra, strict=True)]
    spec = []
    for width, numeric in zip(widths, block.numeric, strict=True):
        frac = width / TABLE_CHARS
        align = r"\raggedleft" if numeric else r"\raggedright"
        spec.append(rf">{{{align}\arraybackslash}}p{{{frac:.3f}\linewidth}}")
    return "".join(spec)


def _table(block: doc.Table) -> str:
    spec = _colspec(block)
    head = " & ".join(rf"\textbf{{{_escape(h)}}}" for h in block.headers) + r" \\ \hline"
    parts = []
    chunks = [block.rows[i : i + ROWS_PER_TABLE]
              for i in range(0, max(len(block.rows), 1), ROWS_PER_TABLE)]
    for chunk in chunks:
        body = "\n".join(" & ".join(_escape(c) for c in row) + r" \\" for row in chunk)
        caption = rf"\emph{{{_escape(block.caption)}}}\\[2pt]" + "\n" if block.caption else ""
        parts.append(
            "\\begin{center}\\footnotesize\n" + caption
            + "\\fitbox{\\begin{tabular}{" + spec + "}\n\\hline\n" + head + "\n" + body
            + "\n\\hline\n\\end{tabular}}\n\\end{center}"
        )
    return "\n".join(parts)


def _block(block, figure_dir: str) -> str:
    if isinstance(block, doc.Heading):
        command = {1: "title", 2: "section", 3: "subsection"}.get(block.level, "paragraph")
        if command == "title":
            return ""  # set in the preamble
        label = rf"\label{{{block.anchor}}}" if block.anchor else ""
        return rf"\{command}{{{_escape(block.text)}}}{label}"
    if isinstance(block, doc.Para):
        body = _runs(block.runs)
        if block.style == "quote":
            return "\\begin{quote}\n" + body + "\n\\end{quote}"
        if block.style == "fail":
            return rf"\textbf{{{body}}}"
        if block.style == "note":
            return rf"{{\small\itshape {body}}}"
        return body
    if isinstance(block, doc.Math):
        return _math(block)
    if isinstance(block, doc.ItemList):
        env = "enumerate" if block.ordered else "itemize"
        items = "\n".join(
            r"\item " + "\n\n".join(_block(b, figure_dir) for b in item) for item in block.items
        )
        return f"\\begin{{{env}}}\n{items}\n\\end{{{env}}}"
    if isinstance(block, doc.Table):
        return _table(block)
    if isinstance(block, doc.Details):
        inner = "\n\n".join(s for s in (_block(b, figure_dir) for b in block.blocks) if s)
        # the PDF cannot fold: a small heading, then what HTML folds away
        return (rf"\par\medskip\noindent\textbf{{{_escape(block.summary)}}}\par\smallskip"
                + "\n\n" + inner)
    if isinstance(block, doc.Figure):
        data = block.data
        return (
            "\\begin{figure}[htbp]\n\\centering\n"
            f"\\includegraphics[width=\\linewidth]{{{figure_dir}/{data.name}.pdf}}\n"
            f"\\caption{{{_escape(data.caption)}}}\n\\end{{figure}}"
        )
    raise TypeError(f"unknown block {type(block).__name__}")


_PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage[T1]{fontenc}
\usepackage[utf8]{inputenc}
\usepackage[margin=2.2cm]{geometry}
\usepackage{amsmath,amssymb}
\usepackage{graphicx}
\usepackage{array}
% Scalable fonts where installed (Debian: lmodern), bitmaps otherwise.
\IfFileExists{lmodern.sty}{\usepackage{lmodern}}{}
\setlength{\parindent}{0pt}
% Long identifiers (claim ids, module names) may stretch a line rather than overflow it.
\sloppy
\setlength{\parskip}{0.5\baselineskip}
\setcounter{MaxMatrixCols}{20}
% Scale a box down to the line width only when it is wider (long formulas, wide tables).
\newsavebox{\fitboxsave}
% Each scaled box writes the line width and its own width to the log
% ("bnproof-fitbox 455.2pt 520.1pt"), so a test can check that nothing is
% shrunk below a readable size.
\newcommand{\fitbox}[1]{\sbox{\fitboxsave}{#1}%
  \ifdim\wd\fitboxsave>\linewidth
    \typeout{bnproof-fitbox \the\linewidth\space\the\wd\fitboxsave\space
      line \the\inputlineno}%
    \resizebox{\linewidth}{!}{\usebox{\fitboxsave}}%
  \else\usebox{\fitboxsave}\fi}
"""


def render_latex(data: ReportData, figure_dir: str = "figures") -> str:
    """Return the report as a LaTeX document for pdflatex.

    Parameters
    ----------
    data : ReportData
        The gathered results (:func:`bnproof.report.collect`).
    figure_dir : str, default "figures"
        Folder, relative to the ``.tex`` file, holding ``<name>.pdf``.

    Returns
    -------
    str
        A complete ``article`` document.
    """
    blocks = doc.build(data)
    title = next(b.text for b in blocks if isinstance(b, doc.Heading) and b.level == 1)
    body = "\n\n".join(s for s in (_block(b, figure_dir) for b in blocks) if s)
    return (
        _PREAMBLE
        + rf"\title{{{_escape(title)}}}" + "\n"
        + r"\date{}" + "\n\\begin{document}\n\\maketitle\n\n"
        + body
        + "\n\n\\end{document}\n"
    )


def write_latex(data: ReportData, folder: str | Path) -> Path:
    """Write ``report.tex`` and ``figures/<name>.pdf`` into ``folder``.

    Parameters
    ----------
    data : ReportData
        The gathered results.
    folder : str or pathlib.Path
        An existing folder.

    Returns
    -------
    pathlib.Path
        The path of ``report.tex``.

    Raises
    ------
    TypeError
        If ``data`` is not a :class:`ReportData`.
    ValueError
        If ``folder`` is not an existing folder.

    Notes
    -----
    Same content as :func:`bnproof.report.write_html` (sections 2 and 3 of
    Ioffe & Szegedy 2015). Compile with ``pdflatex report.tex`` (twice for
    the cross-references).
    """
    folder = _folder(folder)
    text = render_latex(data, "figures")
    if data.figures:
        figures = folder / "figures"
        figures.mkdir(exist_ok=True)
        for fig in data.figures:
            (figures / f"{fig.name}.pdf").write_bytes(fig.pdf)
    path = folder / "report.tex"
    path.write_text(text, encoding="utf-8")
    return path
