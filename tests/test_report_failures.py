"""A report whose cross-check has a failing row: the failure list, the tally, the exit code."""

import dataclasses

import pytest

import bnproof.report
from bnproof.cli import main
from bnproof.report._html import render_html
from bnproof.report._markdown import render_markdown

pytest.importorskip("matplotlib")


def _with_failing_row(data):
    rows = [dict(r) for r in data.crosscheck["rows"]]
    rows[1]["passed"] = False
    rows[1]["max_abs_err_symbolic"] = 3.5e-9
    return dataclasses.replace(data, crosscheck={**data.crosscheck, "rows": rows})


def test_a_failing_row_is_a_failure():
    from test_report import sample_data

    data = _with_failing_row(sample_data())
    assert data.failures == ["cross-check n=3 dbias: failed"]
    missing = dataclasses.replace(sample_data(), crosscheck={"rows": [{"n": 4, "quantity": "dx"}]})
    assert missing.failures == ["cross-check n=4 dx: failed"]  # no verdict is no pass


def test_the_tally_counts_the_failing_row():
    from test_report import sample_data

    good = render_html(sample_data())
    bad = render_html(_with_failing_row(sample_data()))
    assert '<p class="ok">2 of 2 rows passed.</p>' in good
    assert '<p class="fail">1 of 2 rows passed.</p>' in bad
    assert "3.5e-09" in bad
    assert "1 of 2 rows passed." in render_markdown(_with_failing_row(sample_data()))


def test_no_rows_is_not_a_pass():
    from test_report import sample_data

    page = render_html(dataclasses.replace(sample_data(), crosscheck={"rows": []}))
    assert '<p class="fail">0 of 0 rows passed.</p>' in page


def test_the_command_exits_1_and_names_the_row(tmp_path, monkeypatch, capsys):
    from test_report import sample_data

    monkeypatch.setattr(bnproof.report, "collect",
                        lambda **kw: _with_failing_row(sample_data()))
    out = tmp_path / "rep"
    assert main(["report", "--out", str(out)]) == 1
    assert (out / "index.html").is_file()  # written either way
    err = capsys.readouterr().err
    assert "bnproof report: cross-check n=3 dbias: failed" in err
    assert "1 of 2 rows passed." in (out / "report.md").read_text(encoding="utf-8")
