"""The report's figures, rendered in memory: SVG for HTML and Markdown, PDF for LaTeX."""

from __future__ import annotations

import io
from dataclasses import dataclass

__all__ = ["FigureData", "figure_caption", "render_figure"]


@dataclass(frozen=True)
class FigureData:
    """A rendered figure: SVG text for HTML and Markdown, PDF bytes for LaTeX.

    Parameters
    ----------
    name : str
        File-name stem (letters, digits, ``-`` and ``_``).
    caption : str
        One or two plain-text sentences saying what the figure shows.
    svg : str
        The figure as an SVG document.
    pdf : bytes
        The figure as a PDF document.
    """

    name: str
    caption: str
    svg: str
    pdf: bytes


def render_figure(figure, name: str, caption: str) -> FigureData:
    """Render a :class:`matplotlib.figure.Figure` to SVG and PDF in memory.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        A figure built with the object-oriented API (no pyplot state).
    name : str
        File-name stem: letters, digits, ``-`` and ``_`` only.
    caption : str
        What the figure shows.

    Returns
    -------
    FigureData

    Raises
    ------
    TypeError
        If ``figure`` is not a matplotlib figure.
    ValueError
        If ``name`` is empty or holds other characters.

    Notes
    -----
    The figure's layout engine is switched off after the SVG is drawn, so
    the PDF keeps the same places without a second layout pass.
    The figures are those of the section 2 drift experiment of Ioffe &
    Szegedy (2015) and of the accuracy experiment (:mod:`bnproof.plots`).
    """
    from matplotlib.figure import Figure

    if not isinstance(figure, Figure):
        raise TypeError(f"figure {name!r} is a {type(figure).__name__}, not a matplotlib Figure")
    if not name or not all(ch.isalnum() or ch in "-_" for ch in name):
        raise ValueError(f"figure name {name!r} must be letters, digits, '-' or '_'")
    # The SVG keeps text as paths, so it looks the same without the fonts;
    # a fixed hash salt and no date make the output reproducible.
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "bnproof"}):
        svg = io.StringIO()
        figure.savefig(svg, format="svg", metadata={"Date": None})
    # The SVG's draw placed every axes: keep those places for the PDF rather
    # than run the layout engine again (a second layout was 15 % of the time)
    figure.set_layout_engine("none")
    pdf = io.BytesIO()
    figure.savefig(pdf, format="pdf", metadata={"CreationDate": None})
    return FigureData(name=name, caption=caption, svg=svg.getvalue(), pdf=pdf.getvalue())


def figure_caption(name: str, figure) -> str:
    """Return the figure's own title (suptitle, else its axes' titles), else its name."""
    titles = [figure.get_suptitle()] if figure.get_suptitle() else []
    if not titles:
        titles = [ax.get_title() for ax in figure.get_axes() if ax.get_title()]
    if titles:
        return "; ".join(titles) + "."
    return name.replace("-", " ").replace("_", " ").capitalize() + "."
