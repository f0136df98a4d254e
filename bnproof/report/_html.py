"""``index.html``: one self-contained page, math as MathML Core, figures as inline SVG.

The page needs no JavaScript and fetches nothing: styles are inline, math is
MathML that browsers lay out natively, figures are embedded SVG.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from . import _document as doc
from ._collect import ReportData
from ._mathml import latex_mathml, mathml

__all__ = ["render_html", "write_html"]

_CSS = """
:root { color-scheme: light; }
body { font-family: "Noto Serif", "DejaVu Serif", Georgia, serif; max-width: 60rem;
       margin: 1rem auto; padding: 0 1rem; line-height: 1.45; color: #1a1a1a; }
h1 { font-size: 1.6rem; margin: 0.5rem 0; }
h2 { margin: 2rem 0 0.6rem; border-bottom: 1px solid #ccc; }
h3 { margin: 1.2rem 0 0.4rem; }
blockquote { margin: 0.6rem 0; padding: 0.1rem 1rem; border-left: 4px solid #999;
             background: #f6f6f6; }
h1 + p.note { margin-top: 0; }
.answer { margin: 0.6rem 0; padding: 0.5rem 1rem; border-left: 4px solid #2a6ebb;
          background: #eef4fb; }
.ok { color: #1b6e20; } .fail { color: #b00020; font-weight: bold; }
.note { color: #555; font-size: 0.95em; }
math { font-family: "Noto Sans Math", "STIX Two Math", "Latin Modern Math", math;
       font-size: 1.15em; }
math[display="block"] { overflow-x: auto; overflow-y: hidden; padding: 0.3rem 0; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9em; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: 0.3rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; vertical-align: top; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5rem 0; } figure svg { max-width: 100%; height: auto; }
figcaption { font-style: italic; }
code { font-size: 0.9em; background: #f3f3f3; padding: 0 0.2em; }
.scroll { overflow-x: auto; }
details { margin: 0.8rem 0; } summary { cursor: pointer; color: #2a4d7a; }
details[open] > summary { margin-bottom: 0.5rem; }
ol.reason > li { margin-bottom: 0.4rem; } ol.reason p { margin: 0.2rem 0; }
p.note { margin: 0.4rem 0; }
"""

_SVG_PROLOGUE = re.compile(r"^\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", re.S)


def _runs(runs) -> str:
    out = []
    for kind, value in runs:
        escaped = html.escape(value, quote=False)
        if kind == "strong":
            out.append(f"<strong>{escaped}</strong>")
        elif kind == "code":
            out.append(f"<code>{escaped}</code>")
        elif kind.startswith("link:"):
            out.append(f'<a href="#{html.escape(kind[5:])}">{escaped}</a>')
        else:
            out.append(escaped)
    return "".join(out)


def _math(block: doc.Math) -> str:
    if block.expr is not None:
        return mathml(block.expr)
    # LaTeX-only statements (the registry's Claim.latex) have no SymPy form:
    # lay out the simple LaTeX we understand, and show anything else as source
    # rather than guess.
    try:
        return latex_mathml(block.latex)
    except ValueError:
        return f'<p class="note">LaTeX: <code>{html.escape(block.latex)}</code></p>'


_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)


def _svg(svg: str) -> str:
    # Inline SVG needs no XML prologue; the metadata block only names the
    # generator (and RDF namespaces that look like links).
    return _SVG_METADATA.sub("", _SVG_PROLOGUE.sub("", svg, count=1), count=1)


def _block(block) -> str:
    if isinstance(block, doc.Heading):
        anchor = f' id="{html.escape(block.anchor)}"' if block.anchor else ""
        return f"<h{block.level}{anchor}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, doc.Para):
        body = _runs(block.runs)
        if block.style == "quote":
            return f"<blockquote><p>{body}</p></blockquote>"
        cls = f' class="{block.style}"' if block.style else ""
        return f"<p{cls}>{body}</p>"
    if isinstance(block, doc.Math):
        return _math(block)
    if isinstance(block, doc.ItemList):
        tag = "ol" if block.ordered else "ul"
        items = "".join("<li>" + "".join(_block(b) for b in item) + "</li>"
                        for item in block.items)
        return f"<{tag}>{items}</{tag}>"
    if isinstance(block, doc.Table):
        caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
        rows = []
        for r, row in enumerate(block.rows):
            texts = [html.escape(c) for c in row]
            link = block.links[r] if r < len(block.links) else ""
            if link and texts:
                texts[0] = f'<a href="#{html.escape(link)}">{texts[0]}</a>'
            cells = "".join(
                f'<td class="num">{c}</td>' if num else f"<td>{c}</td>"
                for c, num in zip(texts, block.numeric, strict=False)
            )
            rows.append(f"<tr>{cells}</tr>")
        return (f'<div class="scroll"><table>{caption}<thead><tr>{head}</tr></thead>'
                f"<tbody>{''.join(rows)}</tbody></table></div>")
    if isinstance(block, doc.Details):
        inner = "\n".join(_block(b) for b in block.blocks)
        return (f"<details><summary>{html.escape(block.summary)}</summary>\n{inner}\n"
                "</details>")
    if isinstance(block, doc.Figure):
        data = block.data
        return (f'<figure id="figure-{html.escape(data.name)}">{_svg(data.svg)}'
                f"<figcaption>{html.escape(data.caption)}</figcaption></figure>")
    raise TypeError(f"unknown block {type(block).__name__}")


def render_html(data: ReportData) -> str:
    """Return the report as one self-contained HTML document.

    Parameters
    ----------
    data : ReportData
        The gathered results (:func:`bnproof.report.collect`).

    Returns
    -------
    str
        HTML5 with inline CSS, MathML Core formulas and inline SVG figures;
        no script, no external resource.
    """
    blocks = doc.build(data)
    body = "\n".join(_block(b) for b in blocks)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # No resource may load from anywhere: the page is complete as it is.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">\n"
        f"<title>{html.escape(doc.TITLE)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def write_html(data: ReportData, folder: str | Path) -> Path:
    """Write ``index.html`` into ``folder`` and return its path.

    Parameters
    ----------
    data : ReportData
        The gathered results.
    folder : str or pathlib.Path
        An existing folder (the command passes a fresh temporary one).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    TypeError
        If ``data`` is not a :class:`ReportData`.
    ValueError
        If ``folder`` is not an existing folder.

    Notes
    -----
    The page answers the question about section 2 of Ioffe & Szegedy (2015)
    with the derivations of sections 2 and 3; formulas are MathML Core
    (:mod:`bnproof.report._mathml`), laid out by the browser without scripts.
    """
    folder = _folder(folder)
    path = folder / "index.html"
    path.write_text(render_html(data), encoding="utf-8")
    return path


def _folder(folder: str | Path) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"folder {str(path)!r} is not an existing folder; create it first")
    return path
