"""``bnproof report --quick`` end to end: real proofs, experiments and figures.

One run of the command (in a subprocess, as a user runs it) is shared by the
tests of this module: the files exist, every claim of the registry is there,
the LaTeX compiles when a TeX installation is present, and Chromium lays out
the real derivations' MathML without fetching anything.
"""

import re
import shutil
import subprocess
import sys
import xml.dom.minidom

import pytest

from bnproof.report import STAGES

pytestmark = pytest.mark.slow

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

#: Seconds the quick report may take here before the test gives up (the
#: machine may be shared; a hang must still end).
TIMEOUT = 600


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "bnproof-report"
    proc = subprocess.run(
        [sys.executable, "-m", "bnproof", "report", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, proc


def test_command_writes_every_format_with_progress(quick_report):
    out, proc = quick_report
    for name in ("index.html", "report.md", "report.tex", ".bnproof-output"):
        assert (out / name).is_file(), name
    for stage in (*STAGES, "write"):
        assert re.search(rf"\] {stage} \d+/\d+", proc.stderr), stage
    assert "report written to" in proc.stdout


def test_every_claim_of_the_registry_is_reported(quick_report):
    from bnproof.symbolic import CLAIMS

    out, _ = quick_report
    page = (out / "index.html").read_text(encoding="utf-8")
    markdown = (out / "report.md").read_text(encoding="utf-8")
    for claim_id in CLAIMS:
        assert f'id="claim-{claim_id}"' in page, claim_id
        assert f"### {claim_id}" in markdown.replace("\\", ""), claim_id
    assert f"All {len(CLAIMS)} claims reached the expected verdict" in page


def test_math_is_valid_mathml_without_sympy_fallbacks(quick_report):
    out, _ = quick_report
    page = (out / "index.html").read_text(encoding="utf-8")
    fragments = re.findall(r"<math .*?</math>", page, flags=re.S)
    assert len(fragments) >= 10
    for fragment in fragments:
        xml.dom.minidom.parseString(fragment)
    lowered = page.lower()
    assert "<script" not in lowered and "<link" not in lowered and "<img" not in lowered
    for fallback in ("<mi>kroneckerdelta</mi>", "<mi>piecewise</mi>", "<mi>indexed</mi>",
                     "<mi>sum</mi>", "<mi>derivative</mi>"):
        assert fallback not in lowered


def test_figures_are_embedded_and_written_beside(quick_report):
    out, _ = quick_report
    page = (out / "index.html").read_text(encoding="utf-8")
    svgs = sorted(p.stem for p in (out / "figures").glob("*.svg"))
    pdfs = sorted(p.stem for p in (out / "figures").glob("*.pdf"))
    assert svgs and svgs == pdfs
    assert page.count("<svg") == len(svgs)
    markdown = (out / "report.md").read_text(encoding="utf-8")
    for name in svgs:
        assert f"](figures/{name}.svg)" in markdown
        assert f'id="figure-{name}"' in page


#: Smallest scale a formula or table may be shrunk to in the PDF (0.8 of 11 pt
#: is 8.8 pt, a footnote's size; the raw derivation steps were once shrunk to
#: a sliver of 0.3).
MIN_PDF_SCALE = 0.8


def test_latex_compiles_and_nothing_is_shrunk_below_readable(quick_report, tmp_path):
    import os

    if shutil.which("pdflatex") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdflatex is missing; .ci/run installs Debian's texlive-latex-base")
        pytest.skip("no TeX installation (CI installs one)")
    out, _ = quick_report
    shutil.copytree(out, tmp_path / "tex")
    for _ in range(2):  # twice, for the cross-references
        proc = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
             "report.tex"],
            cwd=tmp_path / "tex", capture_output=True, text=True, timeout=240,
        )
        assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "tex" / "report.pdf").read_bytes().startswith(b"%PDF")
    log = (tmp_path / "tex" / "report.log").read_text(encoding="latin-1")
    scales = [float(line) / float(box) for line, box in
              re.findall(r"bnproof-fitbox ([0-9.]+)pt ([0-9.]+)pt", log)]
    assert all(s >= MIN_PDF_SCALE for s in scales), scales
    assert "undefined references" not in log


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from test_browser import devtools_session

    yield from devtools_session(tmp_path_factory)


@pytest.mark.browser
def test_real_report_in_chromium(quick_report, browser, tmp_path):
    from test_browser import render

    out, _ = quick_report
    page = out / "index.html"
    shot = tmp_path / "report.png"
    layout, urls = render(browser, page, screenshot=shot)
    assert len(layout["maths"]) == page.read_text(encoding="utf-8").count("<math ")
    assert all(w > 0 and h > 0 for w, h in layout["maths"])
    assert all(layout["fracs"]) and all(layout["roots"])
    assert [u for u in urls if not u.startswith(("file:", "data:", "about:"))] == []


#: Where the first figure may start, as a fraction of the page's height: the
#: answer, the reason and the verdicts come first, then the measurements, and
#: only then the long derivations (the figures once started at 33,000 of
#: 43,000 px).
FIRST_FIGURE_BY = 1 / 3
#: Height of the first screen in CSS pixels (the browser window of test_browser).
FIRST_SCREEN_PX = 900

FIRST_SCREEN = """(() => {
  const top = e => e ? e.getBoundingClientRect().top + window.scrollY : null;
  const bottom = e => e ? e.getBoundingClientRect().bottom + window.scrollY : null;
  const answer = document.querySelector('#answer');
  return JSON.stringify({
    height: document.documentElement.scrollHeight,
    figure: top(document.querySelector('figure')),
    answer_end: answer ? bottom(answer.nextElementSibling) : null,
    reason: top(document.querySelector('#reason')),
  });
})()"""


@pytest.mark.browser
def test_first_screen_answers_and_figures_come_early(quick_report, browser, tmp_path):
    import json

    out, _ = quick_report
    page = out / "index.html"
    target = browser.send("Target.createTarget", url="about:blank")["targetId"]
    session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    try:
        browser.send("Page.enable", session)
        browser.send("Page.navigate", session, url=page.as_uri())
        browser.wait_for("Page.loadEventFired", session)
        reply = browser.send("Runtime.evaluate", session, expression=FIRST_SCREEN,
                             returnByValue=True)
        at = json.loads(reply["result"]["value"])
    finally:
        browser.send("Target.closeTarget", targetId=target)
    assert at["answer_end"] is not None and at["answer_end"] <= FIRST_SCREEN_PX, at
    assert at["reason"] is not None and at["reason"] <= FIRST_SCREEN_PX, at
    assert at["figure"] is not None and at["figure"] <= FIRST_FIGURE_BY * at["height"], at
