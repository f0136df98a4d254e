"""The report reads as the answer to the reader's question (hand-made results).

The reader asked what b is for and how section 2's maths differs from batch
normalization. The report must answer first (question, short answer, the
reason in three lines of maths, the verdicts), show the measurements next,
check the accepted answer, and keep the derivations readable: the paper's
notation first, the prover's raw steps and checks folded beneath.
"""

import dataclasses
import re
import shutil
import subprocess

import pytest
import sympy
from sympy import Eq, IndexedBase, Sum, Symbol

from bnproof.report import _document as doc
from bnproof.report import latex_mathml, write_latex
from bnproof.report._html import render_html

pytest.importorskip("matplotlib")

from test_report import _claim, sample_data  # noqa: E402


def _blocks(data=None):
    return doc.build(data or sample_data())


def _flat(blocks, depth=0):
    """Every block with lists and folds opened, in reading order, with its fold depth."""
    for block in blocks:
        if isinstance(block, doc.ItemList):
            for item in block.items:
                yield from _flat(item, depth)
        elif isinstance(block, doc.Details):
            yield from _flat(block.blocks, depth + 1)
        else:
            yield block, depth


def _order(blocks):
    return [b for b, _ in _flat(blocks)]


def test_first_the_question_then_the_short_answer_then_three_lines_of_maths():
    flat = _order(_blocks())
    anchors = [b.anchor for b in flat if isinstance(b, doc.Heading)]
    assert anchors[:4] == ["top", "question", "answer", "reason"], anchors
    start = next(i for i, b in enumerate(flat) if getattr(b, "anchor", "") == "reason")
    end = next(i for i, b in enumerate(flat) if getattr(b, "anchor", "") == "claims")
    maths = [b.tex() for b in flat[start:end] if isinstance(b, doc.Math)]
    assert len(maths) == 3, maths
    # the one-line reason, as maths: b leaves with the mean before the variance
    assert r"x_i - \mu" in maths[0] and r"= u_i - \bar{u}" in maths[0]
    assert r"\sigma^2" in maths[1] and r"\frac{\partial y_i}{\partial b} = 0" in maths[1]
    assert r"b_t = b_0 + t\,\Delta b" in maths[2]


def test_verdicts_come_before_the_figures_and_the_figures_before_the_derivations():
    flat = _order(_blocks())
    index = {getattr(b, "anchor", None): i for i, b in enumerate(flat)}
    first_figure = next(i for i, b in enumerate(flat) if isinstance(b, doc.Figure))
    assert index["claims"] < first_figure < index["derivations"]
    assert index["accepted-answer"] < index["derivations"]


def test_claims_table_has_one_linked_row_per_claim():
    data = sample_data()
    table = next(b for b in _order(_blocks(data)) if isinstance(b, doc.Table))
    assert table.headers[:3] == ("claim", "says", "verdict")
    assert [r[0] for r in table.rows] == [c.claim.id for c in data.claims]
    assert table.links == tuple(f"claim-{c.claim.id}" for c in data.claims)
    page = render_html(data)
    assert '<a href="#claim-bias-cancels-train">bias-cancels-train</a>' in page


def test_derivations_show_the_papers_notation_and_fold_the_machines_steps():
    data = sample_data()  # bias-cancels-train has hand-written steps
    blocks = _blocks(data)
    section = next(i for i, b in enumerate(blocks) if getattr(b, "anchor", "") ==
                   "claim-bias-cancels-train")
    claim_blocks = []
    for b in blocks[section + 1:]:
        if isinstance(b, doc.Heading):
            break
        claim_blocks.append(b)
    visible = [b for b, depth in _flat(claim_blocks) if depth == 0]
    folded = [b for b, depth in _flat(claim_blocks) if depth > 0]
    visible_tex = " ".join(b.tex() for b in visible if isinstance(b, doc.Math))
    assert r"\mu" in visible_tex and r"\sigma^2" in visible_tex
    # the raw SymPy steps and the check table are kept, but folded
    steps = [s for s in data.claims[0].proof.steps if s.expr is not None]
    assert sum(isinstance(b, doc.Math) and b.expr is not None for b in folded) == len(steps)
    assert any(isinstance(b, doc.Table) and b.headers[0] == "check" for b in folded)
    assert not any(isinstance(b, doc.Table) for b in visible)
    page = render_html(data)
    assert page.count("<details>") >= 2 and "<summary>" in page


def test_a_claim_without_written_steps_shows_the_provers_steps_unfolded():
    data = sample_data()  # rms-bias-survives has no hand-written steps
    page = render_html(data)
    block = page[page.index('id="claim-rms-bias-survives"'):]
    block = block[:block.index("</details>")] if "</details>" in block else block
    assert "<ol>" in block.split("<details>")[0], "the prover's steps are not shown"


def test_every_written_argument_is_valid_maths_for_a_registered_claim():
    from bnproof.report import _explain
    from bnproof.symbolic import CLAIMS

    assert set(_explain.STEPS) <= set(CLAIMS) and set(_explain.SHORT) <= set(CLAIMS)
    for steps in (_explain.REASON, *_explain.STEPS.values()):
        for sentence, latex in steps:
            assert sentence and latex_mathml(latex).startswith("<math")


def test_the_accepted_answer_is_checked_with_evidence():
    data = sample_data()
    drift = dict(data.drift)
    bias = dict(drift["bias-only"])
    runs = [
        {"norm": "center-scale", "mode": mode, "dtype": "float64",
         "summary": {"b_displacement_final_max_abs": moved, "loss_change_max_abs_nats": loss}}
        for mode, moved, loss in (("exact", 1.4e-16, 0.0), ("outside", 0.181, 0.0),
                                  ("running", 0.188, 0.0736))
    ]
    bias["runs"] = runs
    drift["bias-only"] = bias
    page = render_html(dataclasses.replace(data, drift=drift))
    section = page[page.index('id="accepted-answer"'):page.index('id="derivations"')]
    assert "moving averages" in section and "\u03b3 and \u03b2" in section
    assert "Not the paper's fix" in section and "Half right" in section
    for cid in ("bias-cancels-train", "bias-survives-eval", "rms-bias-cancels"):
        assert f"<code>{cid}</code>" in section, cid
    # the running-mode control's numbers are read from the results
    assert "0.0736 nats" in section and "0.188" in section and "1.4e-16" in section


def test_drift_table_explains_the_straight_line_column_per_mode():
    data = sample_data()
    drift = dict(data.drift)
    bias = dict(drift["bias-only"])
    bias["runs"] = [
        {"norm": "center-scale", "mode": "exact", "dtype": "float64",
         "summary": {"b_displacement_final_max_abs": 1.4e-16,
                     "linear_residual_relative_to_displacement": 0.3375,
                     "linear_residual_in_rounding_units": 2.77}},
        {"norm": "center-scale", "mode": "outside", "dtype": "float64",
         "summary": {"b_displacement_final_max_abs": 0.18,
                     "linear_residual_relative_to_displacement": 3e-15,
                     "linear_residual_in_rounding_units": 1.42}},
    ]
    drift["bias-only"] = bias
    page = render_html(dataclasses.replace(data, drift=drift))
    # a ratio of rounding noise to rounding noise (0.3375 for a b that did not
    # move) is not shown; each mode says what its number means
    assert "0.338" not in page and "residual / displacement" not in page
    assert "does not apply: b moved 1.4e-16 in all, rounding only" in page
    assert "on the line to 1.42 rounding units" in page
    assert "How to read the line column" in page


def test_provenance_says_which_report_ran_without_a_second_quick_flag():
    data = dataclasses.replace(sample_data(), settings={
        "quick": False, "drift": {"plan": "quick", "steps": None}})
    page = render_html(data)
    prov = page[page.index('id="provenance"'):]
    assert "full (bnproof report)" in prov
    assert "quick: True" not in prov and "quick: False" not in prov


def test_collect_records_the_drift_plan_not_a_quick_flag():
    from bnproof.report._collect import _drift_settings

    for quick in (False, True):
        settings = _drift_settings(quick)
        assert "quick" not in settings and settings["plan"] == "quick"


def test_every_figure_is_placed_once_whatever_its_name():
    from matplotlib.figure import Figure

    from bnproof.report import render_figure

    def fig(name):
        f = Figure(figsize=(2, 2))
        f.add_subplot().plot([0, 1])
        return render_figure(f, name, name)

    data = dataclasses.replace(sample_data(), figures=tuple(
        fig(n) for n in ("bias-only", "train-all-sweep", "accuracy", "something-new")))
    page = render_html(data)
    for name in ("bias-only", "train-all-sweep", "accuracy", "something-new"):
        assert page.count(f'id="figure-{name}"') == 1, name


def test_sections_are_a_list_of_builders_that_can_grow():
    data = sample_data()

    def extra(data):
        return [doc.Heading(2, "An extra section", "extra"), doc.text("more")]

    blocks = doc.build(data, sections=[*doc.SECTIONS, extra])
    anchors = [b.anchor for b in blocks if isinstance(b, doc.Heading)]
    assert anchors[-2:] == ["provenance", "extra"]
    contents = next(b for b in blocks if isinstance(b, doc.Para) and b.runs[0][1] == "Contents: ")
    assert ("link:extra", "An extra section") in contents.runs


# --------------------------------------------------------------------------- #
# the PDF: long formulas are broken, not shrunk
# --------------------------------------------------------------------------- #

#: Smallest scale a formula or table may be shrunk to in the PDF: 0.8 of 11 pt
#: (display maths) is 8.8 pt, about the size of a footnote; below that the
#: machine steps (e.g. step 9 of loss-grad-bias-zero, once 0.3) were unreadable.
MIN_SCALE = 0.8


def _long_step():
    """A raw derivation step the size of the prover's (sums, square roots, many terms)."""
    x, g = IndexedBase("x"), IndexedBase("g")
    k, m = sympy.symbols("k m", integer=True)
    N, eps = Symbol("N", positive=True), Symbol("epsilon")
    s1 = Sum(x[k], (k, 1, N))
    s2 = Sum(x[k] ** 2, (k, 1, N))
    root = sympy.sqrt(eps + s2 / N - s1**2 / N**2)
    terms = [(-1) ** t * (t + 2) * N**t * Sum(g[m], (m, 1, N)) * s1 ** (t % 3) * root ** (t % 2)
             / (2 * N**3 * eps * root + 2 * N**2 * s2) for t in range(14)]
    return Eq(Symbol("L"), sympy.Add(*terms), evaluate=False)


def _pdf_scales(tmp_path, data):
    write_latex(data, tmp_path)
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
         "report.tex"], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:]
    log = (tmp_path / "report.log").read_text(encoding="latin-1")
    return [float(line) / float(box) for line, box in
              re.findall(r"bnproof-fitbox ([0-9.]+)pt ([0-9.]+)pt", log)]


def _needs_pdflatex():
    import os

    if shutil.which("pdflatex") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdflatex is missing; .ci/run installs Debian's texlive-latex-base")
        pytest.skip("no TeX installation (CI installs one)")


def _with_step(expr):
    from bnproof.report import ClaimResult
    from bnproof.symbolic._proof import Proof, Step

    data = sample_data()
    claim = ClaimResult(_claim("loss-grad-bias-zero", "dL/db = 0"),
                        Proof("loss-grad-bias-zero", "proved", True, ("symbolic-N",),
                              (Step("Derive", expr),), (), 1.0))
    return dataclasses.replace(data, claims=(*data.claims, claim))


@pytest.mark.slow
def test_pdf_breaks_long_formulas_instead_of_shrinking_them(tmp_path):
    _needs_pdflatex()
    scales = _pdf_scales(tmp_path, _with_step(_long_step()))
    assert all(s >= MIN_SCALE for s in scales), scales
    tex = (tmp_path / "report.tex").read_text(encoding="utf-8")
    assert r"\text{where}" in tex  # the sums and roots were named and the lines broken


@pytest.mark.slow
def test_pdf_scale_check_sees_a_shrunk_formula(tmp_path):
    # Negative control: one unbreakable formula far wider than the line must
    # show up in the log as shrunk below the readable size.
    _needs_pdflatex()
    wide = Symbol("w" * 400)
    scales = _pdf_scales(tmp_path, _with_step(Eq(wide, 0, evaluate=False)))
    assert scales and min(scales) < MIN_SCALE

