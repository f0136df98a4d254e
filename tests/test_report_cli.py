"""``bnproof report``: output folder handling, exit codes, progress (results stubbed)."""

from pathlib import Path

import pytest

import bnproof.report
from bnproof.cli import main

pytest.importorskip("matplotlib")


@pytest.fixture
def stub_collect(monkeypatch):
    """Replace the (slow) gathering of results by hand-made ones; record the calls."""
    from test_report import sample_data

    calls = []

    def fake(*, quick, seed, progress):
        calls.append({"quick": quick, "seed": seed})
        progress("proofs", 0, 2, "")
        progress("proofs", 2, 2, "rms-bias-survives")
        return sample_data()

    monkeypatch.setattr(bnproof.report, "collect", fake)
    return calls


def test_writes_all_formats_and_reports_progress(tmp_path, stub_collect, capsys):
    out = tmp_path / "rep"
    assert main(["report", "--out", str(out), "--quick", "--seed", "3"]) == 0
    assert stub_collect == [{"quick": True, "seed": 3}]
    for name in ("index.html", "report.md", "report.tex", "figures/bias-drift.svg",
                 "figures/bias-drift.pdf"):
        assert (out / name).is_file(), name
    captured = capsys.readouterr()
    assert "proofs 2/2 rms-bias-survives" in captured.err
    assert "write 1/1" in captured.err
    assert f"report written to {out}" in captured.out


def test_replaces_a_previous_report(tmp_path, stub_collect):
    out = tmp_path / "rep"
    assert main(["report", "--out", str(out)]) == 0
    (out / "stale.txt").write_text("old", encoding="utf-8")
    assert main(["report", "--out", str(out)]) == 0
    assert not (out / "stale.txt").exists()
    assert (out / "index.html").is_file()


def test_failed_claim_still_writes_the_report_and_exits_1(tmp_path, monkeypatch, capsys):
    from test_report import sample_data

    monkeypatch.setattr(bnproof.report, "collect", lambda **kw: sample_data(failing=True))
    out = tmp_path / "rep"
    assert main(["report", "--out", str(out)]) == 1
    assert (out / "index.html").is_file()
    assert "rms-bias-survives: verdict proved, expected refuted" in capsys.readouterr().err


def test_out_is_a_file_is_a_usage_error(tmp_path, stub_collect, capsys):
    target = tmp_path / "file.txt"
    target.write_text("keep me", encoding="utf-8")
    assert main(["report", "--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert target.read_text(encoding="utf-8") == "keep me"
    assert stub_collect == [], "a bad --out is refused before any work"


def test_unwritable_out_is_a_usage_error(tmp_path, stub_collect, capsys):
    assert main(["report", "--out", str(tmp_path / "missing" / "rep")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert stub_collect == []


def test_unwritable_parent_is_a_usage_error(tmp_path, stub_collect, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        if _can_write(parent):
            # Root writes through permission bits; /proc refuses everyone.
            if not Path("/proc/self").is_dir():
                pytest.skip("no read-only folder available to this user")
            parent = Path("/proc/self")
        assert main(["report", "--out", str(parent / "rep")]) == 2
        assert "cannot be written" in capsys.readouterr().err
    finally:
        (tmp_path / "ro").chmod(0o700)
    assert stub_collect == []


def _can_write(folder):
    try:
        (folder / "probe").write_text("", encoding="utf-8")
    except OSError:
        return False
    (folder / "probe").unlink()
    return True


def test_foreign_folder_is_not_replaced(tmp_path, stub_collect, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious", encoding="utf-8")
    assert main(["report", "--out", str(out)]) == 2
    assert "not written by bnproof" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text(encoding="utf-8") == "precious"


def test_error_while_writing_keeps_the_previous_report(tmp_path, stub_collect, monkeypatch):
    out = tmp_path / "rep"
    assert main(["report", "--out", str(out)]) == 0
    before = (out / "index.html").read_bytes()

    def broken(data, folder):
        (folder / "index.html").write_text("half", encoding="utf-8")
        raise RuntimeError("disk full")

    monkeypatch.setattr(bnproof.report, "write_report", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        main(["report", "--out", str(out)])
    assert (out / "index.html").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"], "no temporary folder left"


def test_interrupt_keeps_the_previous_report(tmp_path, stub_collect, monkeypatch, capsys):
    out = tmp_path / "rep"
    assert main(["report", "--out", str(out)]) == 0
    before = (out / "report.md").read_bytes()

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bnproof.report, "collect", interrupted)
    assert main(["report", "--out", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert (out / "report.md").read_bytes() == before


def test_negative_seed_is_a_usage_error(tmp_path, stub_collect, capsys):
    assert main(["report", "--out", str(tmp_path / "rep"), "--seed", "-1"]) == 2
    assert "--seed -1" in capsys.readouterr().err


def test_open_uses_the_web_browser(tmp_path, stub_collect, monkeypatch):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    out = tmp_path / "rep"
    assert main(["report", "--out", str(out), "--open"]) == 0
    assert opened == [(out / "index.html").as_uri()]
