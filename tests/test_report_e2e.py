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


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX installation")
def test_latex_compiles(quick_report, tmp_path):
    out, _ = quick_report
    shutil.copytree(out, tmp_path / "tex")
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
         "report.tex"],
        cwd=tmp_path / "tex", capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "tex" / "report.pdf").read_bytes().startswith(b"%PDF")


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
