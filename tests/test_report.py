"""The report writers, on hand-made results (the report only reads results)."""

import re
import shutil
import subprocess
import xml.dom.minidom
from html.parser import HTMLParser

import pytest
import sympy
from sympy import Eq, Function, IndexedBase, KroneckerDelta, Piecewise, Sum, Symbol

from bnproof.report import (
    ClaimResult,
    ReportData,
    render_figure,
    write_html,
    write_latex,
    write_markdown,
    write_report,
)
from bnproof.report._html import render_html
from bnproof.symbolic._proof import Check, Claim, Proof, Step

matplotlib = pytest.importorskip("matplotlib")

i, j, k = sympy.symbols("i j k", integer=True)
N = Symbol("N", integer=True, positive=True)
x = IndexedBase("x")
b = Symbol("b")


def _claim(cid, statement, expected="proved"):
    return Claim(
        id=cid,
        statement=statement,
        latex=r"\frac{\partial y_i}{\partial b} = 0",
        assumptions=("eps >= 0", "N >= 2"),
        expected=expected,
        prove=lambda n_max: None,
        section="Ioffe & Szegedy (2015), section 3.2",
    )


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [0, 1, 4], label="b_t")
    ax.set_title("drift of b")
    return render_figure(fig, "bias-drift", "b against the step: a straight line.")


def sample_data(*, failing=False):
    """A ReportData with the kinds of expression the real proofs hold."""
    steps = (
        Step("the batch mean of x = u + b", Eq(Symbol("mu"), Sum(x[k] + b, (k, 1, N)) / N)),
        Step("differentiate y_i with respect to b",
             Eq(sympy.Derivative(Function("y")(b), b), 0), note="through mu and var"),
        Step("the Jacobian of xhat",
             Eq(Function("J")(i, j), (KroneckerDelta(i, j) - 1 / N) / Symbol("s"))),
        Step("d(mu)/d(x_j) before the range of j is known",
             Piecewise((1 / N, (j >= 1) & (j <= N)), (0, True))),
        Step("the normalized value",
             Eq(Symbol("xhat_i"), (x[i] - Symbol("mu")) / sympy.sqrt(Symbol("sigma^2")
                                                                   + Symbol("epsilon")))),
        Step("prose only, no expression"),
    )
    train = ClaimResult(
        _claim("bias-cancels-train", "In training mode dy_i/db = 0 for every i."),
        Proof("bias-cancels-train", "failed" if False else "proved", True,
              ("symbolic-N", "expand-N=2..8"), steps,
              (Check("expand-N=4", True, "0 == 0"), Check("rationals-N=5", True, "")), 0.42),
    )
    control = ClaimResult(
        _claim("rms-bias-survives", "Under RMS normalization dy_i/db != 0.", "refuted"),
        Proof("rms-bias-survives", "proved" if failing else "refuted", False,
              ("expand-N=2..8",), steps[:1], (Check("rationals-N=3", not failing, "1/3 != 0"),),
              0.1, reason="counterexample x = (1, 2, 4), b = 1"),
    )
    crosscheck = {"rows": [
        {"n": 2, "quantity": "dx", "max_abs_err_symbolic": 9.1e-16,
         "max_abs_err_finite_diff": 1.4e-11, "tolerance": 1e-12, "passed": True},
        {"n": 3, "quantity": "dbias", "max_abs_err_symbolic": 0.0,
         "max_abs_err_finite_diff": None, "tolerance": 1e-12, "passed": True},
    ]}
    accuracy = {
        "rows": [
            {"offset_over_std": o, "method": m, "max_err_ulp": e, "max_abs_err": e * 1e-7}
            for o, m, e in [(0.0, "bnproof", 0.41), (0.0, "one-pass-float32", 3.5),
                            (1e6, "bnproof", 0.42), (1e6, "one-pass-float32", 9.9e9)]
        ],
        "setup": {"shape": [256, 8], "std": 1.0},
        "reference": "float64 with math.fsum sums",
    }
    drift = {
        "bias-only": {
            "description": "only b trains",
            "setup": {"dataset": "digits", "steps": 20, "lr": 0.5},
            "runs": [{"norm": "center", "mode": "outside", "dtype": "float64",
                      "summary": {"b_drift_per_step_max_abs": 0.0123,
                                  "b_displacement_final_max_abs": 0.246,
                                  "loss_change_max_abs_nats": 2.2e-16}}],
            "checks": [{"norm": "center", "mode": "outside", "dtype": "float64",
                        "expectation": "b drifts on a straight line while the loss stays fixed",
                        "passed": not failing}],
        },
    }
    return ReportData(
        claims=(train, control),
        crosscheck=crosscheck,
        accuracy=accuracy,
        drift=drift,
        figures=(_figure(),),
        provenance={"bnproof": "0.1.0", "python": "3.11", "date": "2026-01-01T00:00:00+00:00"},
        seeds={"drift": 7},
        settings={"quick": True, "proofs": {"n_max": 4}},
        timings_seconds={"proofs": 1.5},
    )


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.attrs = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)


def test_html_is_one_self_contained_page(tmp_path):
    page = write_html(sample_data(), tmp_path).read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(page)
    assert "script" not in parser.tags
    assert {"link", "img", "iframe", "object", "embed"}.isdisjoint(parser.tags)
    urls = [v for name, v in parser.attrs if name in ("src", "href") and v]
    assert all(u.startswith(("#", "data:")) for u in urls), urls
    # The only URLs left are XML namespace names, which are never fetched.
    assert not re.search(r"https?://", re.sub(r'xmlns(:\w+)?="[^"]*"', "", page))
    assert parser.tags.count("svg") == 1, "the figure is embedded inline"
    assert "<?xml" not in page


def test_html_holds_the_question_claims_steps_and_tables():
    data = sample_data()
    page = render_html(data)
    assert "What&#x27;s the point of having b anyway?" in page or "point of having b" in page
    assert "Training mode versus inference mode" in page
    for result in data.claims:
        assert f'id="claim-{result.claim.id}"' in page
        assert result.claim.statement in page.replace("&#x27;", "'")
    # Every step with an expression becomes one <math display="block">.
    n_math = len(re.findall(r'<math display="block">', page))
    steps = sum(1 for c in data.claims for s in c.proof.steps if s.expr is not None)
    assert n_math >= steps
    assert "kroneckerdelta" not in page and "piecewise" not in page.lower()
    assert "counterexample x = (1, 2, 4), b = 1" in page
    assert "9.1e-16" in page and "1.4e-11" in page  # cross-check numbers, as given
    assert "9.9e+09" in page  # accuracy table
    assert "0.0123" in page  # drift numbers
    # the seed's own row (a bare "7" in page could match any number on it)
    assert "<tr><td>seed (drift)</td><td>7</td></tr>" in page


def test_every_math_element_is_well_formed_xml():
    page = render_html(sample_data())
    fragments = re.findall(r"<math .*?</math>", page, flags=re.S)
    assert fragments
    for fragment in fragments:
        xml.dom.minidom.parseString(fragment)


def test_failed_claims_are_reported_as_failures():
    good, bad = sample_data(), sample_data(failing=True)
    assert good.failures == []
    assert bad.failures == [
        "claim rms-bias-survives: verdict proved, expected refuted",
        "drift center outside float64: expected that b drifts on a straight line while "
        "the loss stays fixed",
    ]
    assert "did not reach the expected verdict" in render_html(bad)
    assert "did not reach the expected verdict" not in render_html(good)
    assert "1 of 1 runs do not show the expected outcome" in render_html(bad)
    assert "All 1 runs show the expected outcome" in render_html(good)


def test_missing_stages_are_said_not_hidden(tmp_path):
    data = sample_data()
    empty = ReportData(claims=(), crosscheck=None, accuracy=None, drift=None, figures=(),
                       provenance=data.provenance)
    page = render_html(empty)
    for what in ("proofs", "cross-check", "accuracy experiment", "drift experiment"):
        assert f"The {what} was" in page or f"The {what} were" in page


def test_markdown_has_display_math_and_figure_files(tmp_path):
    data = sample_data()
    path = write_markdown(data, tmp_path)
    text = path.read_text(encoding="utf-8")
    assert text.count("$$\n") >= 2 * 4
    assert r"\delta_{i j}" in text
    assert r"\begin{cases}" in text
    assert "](figures/bias-drift.svg)" in text
    svg = (tmp_path / "figures" / "bias-drift.svg").read_text(encoding="utf-8")
    assert "<svg" in svg
    # Table rows have as many cells as the header.
    for table in re.findall(r"(?:^\|.*\|\n)+", text, flags=re.M):
        counts = {len(re.split(r"(?<!\\)\|", line)) for line in table.splitlines()}
        assert len(counts) == 1, table


def test_markdown_escapes_markup_in_text():
    from bnproof.report._markdown import _escape

    assert _escape("dy_i/db = 0 | *x*") == r"dy\_i/db = 0 \| \*x\*"


def test_markdown_emphasis_keeps_escaped_asterisks():
    # a note paragraph once lost its escaped asterisks: r**2 became r\\2
    from bnproof.report import _document as doc
    from bnproof.report._markdown import _block

    note = doc.Para((("text", "each root r satisfies "), ("strong", "r**2 = R")), style="note")
    assert _block(note, "figures") == r"*each root r satisfies r\*\*2 = R*"
    fail = doc.Para((("text", "r**2"),), style="fail")
    assert _block(fail, "figures") == r"**r\*\*2**"


def test_latex_has_figures_as_pdf_and_escapes_text(tmp_path):
    path = write_latex(sample_data(), tmp_path)
    tex = path.read_text(encoding="utf-8")
    assert tex.startswith(r"\documentclass")
    assert tex.rstrip().endswith(r"\end{document}")
    assert r"\includegraphics[width=\linewidth]{figures/bias-drift.pdf}" in tex
    assert (tmp_path / "figures" / "bias-drift.pdf").read_bytes().startswith(b"%PDF")
    assert r"dy\_i/db" in tex
    assert r"Ioffe \& Szegedy" in tex
    assert tex.isascii() or all(ord(c) < 128 or c == "\u00e9" for c in tex)


def test_latex_escape_covers_specials_and_the_reports_unicode():
    from bnproof.report._latex import _escape

    assert _escape("a_b & 50% #1 {x} $y$ ~ ^") == (
        r"a\_b \& 50\% \#1 \{x\} \$y\$ \textasciitilde{} \textasciicircum{}"
    )
    assert _escape("x\u0302 \u2212 E[x]") == r"$\hat{x}$ $-$ E[x]"
    assert _escape("\u4e00") == r"\texttt{[U+4E00]}"
    from bnproof.report import _question

    for value in vars(_question).values():
        if isinstance(value, str):
            assert "[U+" not in _escape(value), value


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX installation")
def test_latex_compiles_with_pdflatex(tmp_path):
    write_latex(sample_data(), tmp_path)
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
         "report.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")


def test_write_report_writes_all_three(tmp_path):
    paths = write_report(sample_data(), tmp_path)
    assert {p.name for p in paths.values()} == {"index.html", "report.md", "report.tex"}
    assert all(p.parent == tmp_path and p.stat().st_size > 0 for p in paths.values())


def test_writers_validate_their_arguments(tmp_path):
    with pytest.raises(TypeError, match="ReportData"):
        write_report({"claims": []}, tmp_path)
    with pytest.raises(TypeError, match="ReportData"):
        write_html(None, tmp_path)
    with pytest.raises(ValueError, match="not an existing folder"):
        write_markdown(sample_data(), tmp_path / "missing")
    with pytest.raises(TypeError, match="not a matplotlib Figure"):
        render_figure(object(), "x", "caption")
    from matplotlib.figure import Figure

    with pytest.raises(ValueError, match="figure name"):
        render_figure(Figure(), "a/b", "caption")


def test_figures_render_reproducibly():
    first, second = _figure(), _figure()
    assert first.svg == second.svg
    assert first.pdf == second.pdf


def test_latex_labels_print_verbatim_in_latex_and_markdown():
    from bnproof.report._document import Math

    label = Symbol(r"\langle w, \nabla_w L \rangle")
    assert Math(Eq(label, 0)).tex() == r"\langle w, \nabla_w L \rangle = 0"
    # Plain names still go through SymPy's printer.
    assert Math(Eq(Symbol("mu_R"), 0)).tex() == r"\mu_{R} = 0"


def test_contents_link_every_section_and_claim():
    page = render_html(sample_data())
    anchors = set(re.findall(r' id="([^"]+)"', page))
    links = re.findall(r'<a href="#([^"]+)"', page)
    assert links, "no contents"
    assert set(links) <= anchors, set(links) - anchors
    for cid in ("bias-cancels-train", "rms-bias-survives"):
        assert f"claim-{cid}" in links
    assert {"question", "claims", "cross-check", "accuracy", "drift", "provenance"} <= set(links)


def test_latex_cross_references_resolve(tmp_path):
    tex = write_latex(sample_data(), tmp_path).read_text(encoding="utf-8")
    labels = set(re.findall(r"\\label\{([^}]+)\}", tex))
    refs = set(re.findall(r"\\ref\{([^}]+)\}", tex))
    assert refs and refs <= labels, refs - labels


def test_answer_is_flagged_when_a_claim_it_rests_on_fails():
    import dataclasses

    data = sample_data()
    train = data.claims[0]
    unproved = dataclasses.replace(train, proof=dataclasses.replace(
        train.proof, verdict="unproved", reason="SymPy did not reduce it"))
    flagged = render_html(dataclasses.replace(data, claims=(unproved, data.claims[1])))
    assert "This answer rests on claims that did not reach their expected verdict" in flagged
    assert "rests on claims" not in render_html(data)


def test_every_markdown_link_has_its_anchor():
    # the claims table links [claim](#claim-id): each target must exist in
    # the Markdown itself, whatever slugs a viewer derives from headings
    import re

    from bnproof.report._markdown import render_markdown

    page = render_markdown(sample_data())
    links = set(re.findall(r"\]\(#([^)]+)\)", page))
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', page))
    assert links, "the claims table links to the derivations"
    assert links <= anchors, sorted(links - anchors)


def test_an_identity_of_two_long_sides_is_broken_with_shared_names():
    from bnproof.report._latex import LINE_CHARS, _expr_lines, _width

    k, m = sympy.symbols("k m", integer=True)
    n, c, p = sympy.symbols("N c p", integer=True, positive=True)
    a, s = sympy.IndexedBase("a"), sympy.Symbol("s", positive=True)
    gamma, beta, eps = sympy.IndexedBase("gamma"), sympy.IndexedBase("beta"), sympy.Symbol("eps")
    mean = sympy.Sum(a[k, c, p], (k, 1, n)) / n
    var = sympy.Sum((a[m, c, p] - mean) ** 2, (m, 1, n)) / n
    moved = sympy.Sum(s * a[k, c, p], (k, 1, n)) / n
    left = gamma[c] * (s * a[1, c, p] - moved) / sympy.sqrt(
        sympy.Sum((s * a[m, c, p] - moved) ** 2, (m, 1, n)) / n + eps) + beta[c]
    right = gamma[c] * (a[1, c, p] - mean) / sympy.sqrt(var + eps) + beta[c]
    lines = _expr_lines(sympy.Eq(left, right, evaluate=False))
    assert all(_width(line) <= LINE_CHARS for line in lines), lines
    assert lines[1].startswith(r"\qquad =") and r"\text{where}" in lines
    where = lines[lines.index(r"\text{where}") + 1:]
    # the mean over k is named once and used on both sides; every root is used
    assert sum(r"\sum_{k=1}^{N} {a}_{k,c,p}" in line for line in where) == 1
    body = "".join(lines[:lines.index(r"\text{where}")])
    for line in where:
        name = line.split(" = ")[0]
        assert name in body or any(name in other for other in where if other != line), name
