"""``report.md``: Markdown with ``$$...$$`` math and the figures as SVG files beside it."""

from __future__ import annotations

import html
import re
from pathlib import Path

from . import _document as doc
from ._collect import ReportData
from ._html import _folder

__all__ = ["render_markdown", "write_markdown"]

#: ASCII punctuation that Markdown could read as markup; CommonMark allows a
#: backslash before any ASCII punctuation, so escaping these is always safe.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|$])")


def _escape(value: str) -> str:
    return _SPECIAL.sub(r"\\\1", value).replace("\n", " ")


def _runs(runs) -> str:
    out = []
    for kind, value in runs:
        if kind == "strong":
            out.append(f"**{_escape(value.strip())}**" + (" " if value.endswith(" ") else ""))
        elif kind == "code":
            out.append("`" + value.replace("`", "'") + "`")
        else:
            # Links are plain text: Markdown renderers name heading anchors differently.
            out.append(_escape(value))
    return "".join(out)


def _math(block: doc.Math) -> str:
    # One formula per $$ block; blank lines inside would end the block.
    source = re.sub(r"\n\s*\n", "\n", block.tex())
    return f"$$\n{source}\n$$"


def _block(block, figure_dir: str) -> str:
    if isinstance(block, doc.Heading):
        heading = "#" * block.level + " " + _escape(block.text)
        # an explicit anchor: the links of the claims table point to it, and
        # a viewer's own heading slug would differ (claim-x against x)
        return f'<a id="{html.escape(block.anchor)}"></a>\n\n{heading}' if block.anchor else heading
    if isinstance(block, doc.Para):
        body = _runs(block.runs)
        if block.style == "quote":
            return "> " + body
        # a whole-paragraph emphasis: its strong runs become plain text (no
        # nested markers); escaped asterisks in the text (r\*\*2) stay
        plain = _runs([("text" if kind == "strong" else kind, value)
                       for kind, value in block.runs])
        if block.style == "fail":
            return "**" + plain + "**"
        if block.style == "note":
            return "*" + plain + "*" if plain else ""
        return body
    if isinstance(block, doc.Math):
        return _math(block)
    if isinstance(block, doc.ItemList):
        # A list of short paragraphs (the contents) stays tight; one holding
        # formulas or tables needs blank lines between its parts.
        tight = _is_tight(block)
        sep = "\n" if tight else "\n\n"
        lines = []
        for number, item in enumerate(block.items, start=1):
            marker = f"{number}. " if block.ordered else "- "
            pad = " " * len(marker)
            parts = [_block(b, figure_dir) for b in item]
            text = sep.join(p for p in parts if p)
            indented = "\n".join(pad + line if line else "" for line in text.splitlines())
            lines.append(marker + indented[len(pad):])
        return sep.join(lines)
    if isinstance(block, doc.Table):
        out = []
        if block.caption:
            out.append("*" + _escape(block.caption) + "*\n")
        out.append("| " + " | ".join(_escape(h) for h in block.headers) + " |")
        out.append("|" + "|".join("---:" if n else "---" for n in block.numeric) + "|")
        for r, row in enumerate(block.rows):
            cells = [_escape(c) for c in row]
            link = block.links[r] if r < len(block.links) else ""
            if link and cells:
                cells[0] = f"[{cells[0]}](#{link})"
            out.append("| " + " | ".join(cells) + " |")
        return "\n".join(out)
    if isinstance(block, doc.Details):
        # GitHub and most Markdown viewers fold <details>; the blank lines let
        # the Markdown inside it render.
        inner = "\n\n".join(p for p in (_block(b, figure_dir) for b in block.blocks) if p)
        return (f"<details><summary>{html.escape(block.summary)}</summary>\n\n{inner}\n\n"
                "</details>")
    if isinstance(block, doc.Figure):
        data = block.data
        return (f"![{_escape(data.caption)}]({figure_dir}/{data.name}.svg)\n\n"
                f"*{_escape(data.caption)}*")
    raise TypeError(f"unknown block {type(block).__name__}")


def _is_tight(block: doc.ItemList) -> bool:
    for item in block.items:
        for part in item:
            if isinstance(part, doc.ItemList):
                if not _is_tight(part):
                    return False
            elif not (isinstance(part, doc.Para) and len(item) <= 2 and part.style == ""):
                return False
    return True


def render_markdown(data: ReportData, figure_dir: str = "figures") -> str:
    """Return the report as Markdown.

    Parameters
    ----------
    data : ReportData
        The gathered results (:func:`bnproof.report.collect`).
    figure_dir : str, default "figures"
        Folder, relative to the Markdown file, holding ``<name>.svg``.

    Returns
    -------
    str
        CommonMark with ``$$...$$`` display math (LaTeX from SymPy) and GFM tables.
    """
    blocks = doc.build(data)
    return "\n\n".join(_block(b, figure_dir) for b in blocks) + "\n"


def write_markdown(data: ReportData, folder: str | Path) -> Path:
    """Write ``report.md`` and ``figures/<name>.svg`` into ``folder``.

    Parameters
    ----------
    data : ReportData
        The gathered results.
    folder : str or pathlib.Path
        An existing folder.

    Returns
    -------
    pathlib.Path
        The path of ``report.md``.

    Raises
    ------
    TypeError
        If ``data`` is not a :class:`ReportData`.
    ValueError
        If ``folder`` is not an existing folder.

    Notes
    -----
    Same content as :func:`bnproof.report.write_html` (sections 2 and 3 of
    Ioffe & Szegedy 2015); formulas are SymPy's LaTeX between ``$$`` lines.
    """
    folder = _folder(folder)
    text = render_markdown(data, "figures")
    if data.figures:
        figures = folder / "figures"
        figures.mkdir(exist_ok=True)
        for fig in data.figures:
            (figures / f"{fig.name}.svg").write_text(fig.svg, encoding="utf-8")
    path = folder / "report.md"
    path.write_text(text, encoding="utf-8")
    return path
