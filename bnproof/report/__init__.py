"""The derivation report: HTML with MathML, Markdown and LaTeX.

The report answers the question about the bias paragraph of section 2 of
Ioffe & Szegedy (2015) with the proofs of :mod:`bnproof.symbolic`, the
kernels' checks and the drift experiment. :func:`collect` gathers those
results; the writers only read them and compute nothing.

Functions
---------
collect
    Run the proofs and experiments; return a :class:`ReportData`.
write_html
    ``index.html``: one self-contained page, MathML Core, inline SVG.
write_markdown
    ``report.md`` with ``$$...$$`` math and ``figures/*.svg``.
write_latex
    ``report.tex`` for pdflatex and ``figures/*.pdf``.
write_report
    All three into one folder.
mathml
    A SymPy expression as a ``<math>`` element (SymPy's fallbacks fixed).
latex_mathml
    A small subset of LaTeX (the claims' statements) as a ``<math>`` element.
"""

from ._collect import STAGES as STAGES
from ._collect import ClaimResult as ClaimResult
from ._collect import FigureData as FigureData
from ._collect import ReportData as ReportData
from ._collect import collect as collect
from ._collect import render_figure as render_figure
from ._html import write_html as write_html
from ._latex import write_latex as write_latex
from ._markdown import write_markdown as write_markdown
from ._mathml import latex_mathml as latex_mathml
from ._mathml import mathml as mathml
from ._write import write_report as write_report

__all__ = [
    "STAGES",
    "ClaimResult",
    "FigureData",
    "ReportData",
    "collect",
    "latex_mathml",
    "mathml",
    "render_figure",
    "write_html",
    "write_latex",
    "write_markdown",
    "write_report",
]
