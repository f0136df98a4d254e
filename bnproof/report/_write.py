"""Write every format of the report into one folder."""

from __future__ import annotations

from pathlib import Path

from ._collect import ReportData
from ._html import write_html
from ._latex import write_latex
from ._markdown import write_markdown

__all__ = ["write_report"]


def write_report(data: ReportData, folder: str | Path) -> dict[str, Path]:
    """Write ``index.html``, ``report.md``, ``report.tex`` and the figures.

    Parameters
    ----------
    data : ReportData
        The gathered results (:func:`bnproof.report.collect`).
    folder : str or pathlib.Path
        An existing folder, normally the temporary one of
        :func:`bnproof._atomic.atomic_output_dir`, so that a failure part way
        leaves the previous report untouched.

    Returns
    -------
    dict
        Format (``"html"``, ``"markdown"``, ``"latex"``) -> path written.

    Raises
    ------
    TypeError
        If ``data`` is not a :class:`ReportData`.
    ValueError
        If ``folder`` is not an existing folder.

    Notes
    -----
    The three formats are rendered from one list of blocks
    (:mod:`bnproof.report._document`), so they say the same thing about
    sections 2 and 3 of Ioffe & Szegedy (2015).
    """
    if not isinstance(data, ReportData):
        raise TypeError(
            f"data must be a ReportData (from bnproof.report.collect), got {type(data).__name__}"
        )
    return {
        "html": write_html(data, folder),
        "markdown": write_markdown(data, folder),
        "latex": write_latex(data, folder),
    }
