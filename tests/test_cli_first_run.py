"""A new user's first minutes: usage errors at once, progress at once, no silent steps.

Heavy imports (SymPy, Numba, matplotlib, scikit-learn) take seconds; a bad
option must be refused before any of them, and every command must say what
it is doing before it starts one. Subprocess tests read ``python -X
importtime``'s lines, which interleave with the command's own stderr, so the
order is exact whatever the machine's load.
"""

import errno
import os
import subprocess
import sys

import pytest

import bnproof.report
from bnproof.cli import main

pytest.importorskip("matplotlib")

#: Modules that take a second or more to import.
HEAVY = ("sympy", "numba", "matplotlib", "sklearn", "scipy")

#: Seconds a subprocess here may take before the test gives up (a busy machine).
TIMEOUT = 120


def _imported_heavy(argv):
    """Run the CLI with ``argv`` in a fresh interpreter; return (exit code, heavy modules)."""
    code = (
        "import sys\n"
        "from bnproof.cli import main\n"
        f"rc = main({argv!r})\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT)
    return proc.returncode, proc.stdout.strip().splitlines()[-1], proc.stderr


@pytest.mark.parametrize("argv", [
    ["prove", "--claim", "nope"],
    ["prove", "--n-max", "1"],
    ["report", "--seed", "-1"],
    ["drift", "--steps", "0"],
    ["drift", "--scenario", "nope"],
])
def test_usage_errors_come_before_any_heavy_import(argv):
    rc, heavy, err = _imported_heavy(argv)
    assert rc == 2, err
    assert heavy == "[]", f"{argv}: imported {heavy} before refusing"
    assert "error:" in err


def test_a_bad_out_is_refused_before_any_heavy_import(tmp_path):
    (tmp_path / "file").write_text("x")
    for command in ("report", "drift"):
        rc, heavy, err = _imported_heavy([command, "--out", str(tmp_path / "file")])
        assert rc == 2 and heavy == "[]", (command, heavy, err)


def test_the_fast_claim_list_is_the_registry():
    from bnproof.commands.prove import CLAIM_IDS
    from bnproof.symbolic import CLAIMS

    # a claim added to the registry must be added to CLAIM_IDS too (in order)
    assert CLAIM_IDS == tuple(CLAIMS)


def _first_line_precedes_heavy_imports(argv, marker, tmp_path):
    """Start the command; stop at its first progress line; return the stderr read so far."""
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "bnproof", *argv],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=tmp_path,
    )
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if marker in line:
                break
            name = line.rsplit("|", 1)[-1].strip() if line.startswith("import time:") else ""
            if name.split(".")[0] in HEAVY:
                break
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    return seen


@pytest.mark.parametrize("argv, marker", [
    (["prove", "--claim", "bias-cancels-train", "--n-max", "2"], "proving 1 claim"),
    (["report", "--quick", "--out", "out"], "start 0/1"),
    (["drift", "--quick", "--out", "out"], "starting 0/"),
])
def test_progress_comes_before_the_slow_imports(argv, marker, tmp_path):
    seen = _first_line_precedes_heavy_imports(argv, marker, tmp_path)
    assert seen and marker in seen[-1], "".join(seen[-5:])


def test_open_says_when_no_browser_starts(tmp_path, monkeypatch, capsys):
    import webbrowser

    from test_report import sample_data

    monkeypatch.setattr(bnproof.report, "collect", lambda **kw: sample_data())
    monkeypatch.setattr(webbrowser, "open", lambda url: False)
    assert main(["report", "--out", str(tmp_path / "rep"), "--open"]) == 0
    err = capsys.readouterr().err
    assert "could not open a web browser" in err and "index.html" in err


def test_open_is_quiet_when_a_browser_starts(tmp_path, monkeypatch, capsys):
    import webbrowser

    from test_report import sample_data

    monkeypatch.setattr(bnproof.report, "collect", lambda **kw: sample_data())
    monkeypatch.setattr(webbrowser, "open", lambda url: True)
    assert main(["report", "--out", str(tmp_path / "rep"), "--open"]) == 0
    assert "could not open" not in capsys.readouterr().err


def test_report_into_a_folder_that_cannot_be_renamed(tmp_path, monkeypatch, capsys):
    # a container volume: rename(2) of the mount point fails with EBUSY; the
    # report used to end in an OSError traceback after all the work
    from test_report import sample_data

    from bnproof import _atomic

    out = tmp_path / "vol"
    out.mkdir()
    real = os.rename

    def rename(src, dst, *args, **kwargs):
        if os.fspath(src) == os.fspath(out):
            raise OSError(errno.EBUSY, "Device or resource busy", os.fspath(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(_atomic.os, "rename", rename)
    monkeypatch.setattr(bnproof.report, "collect", lambda **kw: sample_data())
    for _ in range(2):  # the first run writes into the empty folder, the second replaces it
        assert main(["report", "--out", str(out)]) == 0
    assert (out / "index.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol"]


def test_heartbeat_repeats_a_long_step(monkeypatch, capsys):
    from bnproof.commands import report as command

    monkeypatch.setattr(command._Progress, "HEARTBEAT_SECONDS", 0.2)
    progress = command._Progress()
    try:
        progress("cross-check", 0, 1, "compiling kernels (first run only)")
        import time

        time.sleep(2.5)
    finally:
        progress.close()
    err = capsys.readouterr().err
    assert "cross-check 0/1 compiling kernels (first run only) (still working)" in err


def test_collect_says_when_the_kernels_compile(monkeypatch):
    import bnproof.kernels

    seen = []
    monkeypatch.setattr(bnproof.kernels, "kernels_cached", lambda: False)
    bnproof.report.collect(quick=True, stages=["cross-check"], parallel=False,
                           progress=lambda *a: seen.append(a))
    assert ("cross-check", 0, 1, "compiling kernels (first run only)") in seen


def test_kernels_cached_tells_a_cold_cache_from_a_warm_one(tmp_path):
    code = "from bnproof.kernels import kernels_cached; print(kernels_cached())"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "empty-cache")}
    cold = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=TIMEOUT)
    assert cold.stdout.strip() == "False", cold.stderr
    # with every index file present the same check says warm
    code = ("from numba.core.caching import IndexDataCacheFile\n"
            "IndexDataCacheFile._load_index = lambda self: {'a kernel': 'file'}\n"
            "from bnproof.kernels import kernels_cached; print(kernels_cached())")
    warm = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=TIMEOUT)
    assert warm.stdout.strip() == "True", warm.stderr


def test_step_prints_in_plain_maths():
    from bnproof.symbolic._claims import _definitions

    for model in ("training", "center-only", "inference", "rms"):
        for step in _definitions(model):
            text = str(step)
            assert "\\" not in text and "Eq(" not in text, text
    mean = str(_definitions("training")[0])
    assert mean.startswith("Batch mean (Algorithm 1): mu = ")
