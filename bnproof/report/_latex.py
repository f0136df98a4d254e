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
#: A text column whose longest cell exceeds this many characters wraps (p{...}).
WRAP_AFTER_CHARS = 28

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
    "\U0001d4b3": r"$\mathcal{X}$",
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


def _math(block: doc.Math) -> str:
    source = re.sub(r"\n\s*\n", "\n", block.tex())
    return "\\begin{center}\\fitbox{$\\displaystyle " + source + "$}\\end{center}"


def _colspec(block: doc.Table) -> str:
    spec = []
    for col, numeric in enumerate(block.numeric):
        longest = max([len(block.headers[col])] + [len(r[col]) for r in block.rows])
        if numeric:
            spec.append("r")
        elif longest > WRAP_AFTER_CHARS:
            width = min(0.45, 0.012 * min(longest, 60) + 0.05)
            spec.append(rf"p{{{width:.2f}\linewidth}}")
        else:
            spec.append("l")
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
\setlength{\parindent}{0pt}
% Long identifiers (claim ids, module names) may stretch a line rather than overflow it.
\sloppy
\setlength{\parskip}{0.5\baselineskip}
\setcounter{MaxMatrixCols}{20}
% Scale a box down to the line width only when it is wider (long formulas, wide tables).
\newsavebox{\fitboxsave}
\newcommand{\fitbox}[1]{\sbox{\fitboxsave}{#1}%
  \ifdim\wd\fitboxsave>\linewidth\resizebox{\linewidth}{!}{\usebox{\fitboxsave}}%
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
