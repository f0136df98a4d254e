"""``bnproof drift``: outputs, exit codes, and nothing half-written on errors."""

import json
import os
import re

import pytest

from bnproof.cli import main

pytest.importorskip("sklearn", reason="the drift experiment trains on scikit-learn's digits")
pytest.importorskip("matplotlib", reason="bnproof drift draws figures")

#: A run of a few seconds: two scenarios, three steps, one dtype.
FAST = ["--quick", "--steps", "3", "--dtype", "float64",
        "--scenario", "bias-only", "--scenario", "train-all"]


def _leftovers(parent, name):
    """Temporary siblings that atomic writing could leave behind."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def test_writes_results_and_every_figure_as_png_and_svg(tmp_path, capsys):
    out = tmp_path / "drift"
    assert main(["drift", *FAST, "--seed", "2", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert result["seed"] == 2
    assert result["parameters"]["steps"] == 3
    assert result["parameters"]["dtypes"] == ["float64"]
    assert set(result) >= {"bias-only", "train-all"} and "precision" not in result
    figures = {"bias-only", "train-all-digits-full", "train-all-synthetic-full",
               "train-all-sweep"}
    for name in figures:
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert b"<svg" in (out / f"{name}.svg").read_bytes()[:2000]
    captured = capsys.readouterr()
    assert "results.json" in captured.out and "learning-rate sweep" in captured.out
    # stderr is not a terminal here: progress as plain lines (no bar), and nothing else
    lines = captured.err.splitlines()
    assert lines and "starting 0/" in lines[0]
    assert all(re.match(r"\[ *\d+\.\ds\] \S+ \d+/\d+$", line) for line in lines), lines
    assert _leftovers(tmp_path, "drift") == []


def test_json_flag_prints_the_results(tmp_path, capsys):
    out = tmp_path / "drift"
    args = ["drift", "--quick", "--steps", "2", "--scenario", "bias-only", "--json",
            "--out", str(out)]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert printed["parameters"]["scenarios"] == ["bias-only"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "-3"], "--steps -3 must be between 1 and"),
        (["--steps", "0"], "--steps 0 must be between 1 and"),
        (["--steps", "18446744073709551616"], "must be between 1 and 1000000"),
        (["--scenario", "blow-up"], "unknown scenario 'blow-up'"),
        (["--dtype", "float16"], "unsupported --dtype 'float16'"),
        (["--lr", "-0.5"], "--lr -0.5 must be a number > 0"),
        (["--lr", "inf"], "--lr inf must be a number > 0"),
        (["--lr", "1e300"], "larger rates overflow"),
        (["--seed", "-1"], "--seed -1 must be >= 0"),
    ],
)
def test_bad_values_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "drift"
    assert main(["drift", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "usage: bnproof drift" in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_non_numbers_are_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["drift", "--steps", "many", "--out", str(tmp_path / "drift")])
    assert exc.value.code == 2
    assert "invalid int value: 'many'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_output_that_is_a_file_exits_2_and_is_left_alone(tmp_path, capsys):
    out = tmp_path / "drift"
    out.write_text("keep me", encoding="utf-8")
    assert main(["drift", *FAST, "--out", str(out)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "keep me"
    assert _leftovers(tmp_path, "drift") == []


def test_foreign_folder_exits_2_and_is_left_alone(tmp_path, capsys):
    out = tmp_path / "drift"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["drift", *FAST, "--out", str(out)]) == 2
    assert "not written by bnproof" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_unwritable_location_exits_2(capsys):
    # /proc refuses new folders even to root, unlike a chmod-ed folder.
    assert main(["drift", *FAST, "--out", "/proc/bnproof-drift-test"]) == 2
    assert "cannot be written" in capsys.readouterr().err
    assert not os.path.exists("/proc/bnproof-drift-test")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_read_only_parent_exits_2(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        assert main(["drift", *FAST, "--out", str(parent / "drift")]) == 2
        assert "cannot be written" in capsys.readouterr().err
        assert list(parent.iterdir()) == []
    finally:
        parent.chmod(0o700)


def test_missing_parent_exits_2(tmp_path, capsys):
    assert main(["drift", *FAST, "--out", str(tmp_path / "no" / "drift")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


class _BrokenFigure:
    def savefig(self, *args, **kwargs):
        raise RuntimeError("disk full")


def test_failure_while_writing_keeps_the_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "drift"
    fast = ["drift", "--quick", "--steps", "2", "--scenario", "bias-only", "--out", str(out)]
    assert main(fast) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    import bnproof.plots

    monkeypatch.setattr(bnproof.plots, "drift_figures", lambda result: {"b": _BrokenFigure()})
    with pytest.raises(RuntimeError, match="disk full"):
        main([*fast[:-2], "--seed", "9", "--out", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path, "drift") == []


class _Terminal:
    def __init__(self):
        self.text = []

    def isatty(self):
        return True

    def write(self, text):
        self.text.append(text)

    def flush(self):
        pass


def test_progress_bar_only_on_a_terminal(tmp_path, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    out = tmp_path / "drift"
    assert main(["drift", "--quick", "--steps", "2", "--scenario", "bias-only",
                 "--out", str(out)]) == 0
    shown = "".join(terminal.text)
    assert "\r bias-only [" in shown and shown.endswith("\n")
    assert "12/12" in shown  # the last update reports every run done
