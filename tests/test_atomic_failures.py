"""Output folders: the failure paths (a rename or a removal that fails) and the messages."""

import errno
import os
import re

import pytest

from bnproof import _atomic
from bnproof._atomic import MARKER, OutputDirError, atomic_output_dir, check_output_dir


def _write(path, text):
    with atomic_output_dir(path) as tmp:
        (tmp / "result.txt").write_text(text)
    return path


def _failing_rename(monkeypatch, marker):
    """Make ``os.rename`` fail (as on a full or read-only disk) when its source has ``marker``."""
    real = os.rename
    calls = []

    def rename(src, dst):
        calls.append((str(src), str(dst)))
        if marker in os.path.basename(src):
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(_atomic.os, "rename", rename)
    return calls


def test_a_failed_final_rename_puts_the_previous_folder_back(tmp_path, monkeypatch):
    out = _write(tmp_path / "out", "old")
    calls = _failing_rename(monkeypatch, ".new-")
    with pytest.raises(OSError, match="Input/output error"):
        with atomic_output_dir(out) as tmp:
            (tmp / "result.txt").write_text("new")
    assert (out / "result.txt").read_text() == "old"
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "result.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .new-/.old- left
    # aside, the failed rename, and back
    assert [(os.path.basename(s)[:9], os.path.basename(d)[:9]) for s, d in calls] == [
        ("out", ".out.old-"), (".out.new-", "out"), (".out.old-", "out")]


def test_a_failed_final_rename_on_a_first_run_leaves_nothing(tmp_path, monkeypatch):
    calls = _failing_rename(monkeypatch, ".new-")
    with pytest.raises(OSError):
        with atomic_output_dir(tmp_path / "out") as tmp:
            (tmp / "result.txt").write_text("new")
    assert list(tmp_path.iterdir()) == []
    assert len(calls) == 1  # nothing to put back


def test_a_failed_move_aside_leaves_the_previous_folder(tmp_path, monkeypatch):
    out = _write(tmp_path / "out", "old")
    _failing_rename(monkeypatch, "out")
    with pytest.raises(OSError):
        with atomic_output_dir(out) as tmp:
            (tmp / "result.txt").write_text("new")
    assert (out / "result.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_replaced_folder_that_cannot_be_removed_does_not_fail_the_run(tmp_path, monkeypatch):
    # the new folder is in place: the run is complete even if the old one stays
    out = _write(tmp_path / "out", "old")
    real = os.rmdir
    seen = set()

    def rmdir(path, *args, **kwargs):
        name = os.path.basename(path)
        if ".old-" in name and name in seen:  # the first rmdir only reserves the name
            raise OSError(errno.EBUSY, "Device or resource busy")
        seen.add(name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "rmdir", rmdir)
    with atomic_output_dir(out) as tmp:
        (tmp / "result.txt").write_text("new")
    assert (out / "result.txt").read_text() == "new"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left[-1] == "out" and all(name.startswith(".out.old-") for name in left[:-1])


def test_the_marker_says_what_wrote_the_folder(tmp_path):
    out = _write(tmp_path / "out", "x")
    assert (out / MARKER).read_text(encoding="utf-8") == "written by bnproof; safe to replace\n"


def test_a_temporary_folder_that_cannot_be_made_is_an_output_dir_error(tmp_path, monkeypatch):
    real = _atomic._mkdir_unique

    def mkdir_unique(parent, prefix):
        if ".new-" in prefix:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(parent, prefix)

    monkeypatch.setattr(_atomic, "_mkdir_unique", mkdir_unique)
    target = tmp_path / "out"
    with pytest.raises(OutputDirError, match=re.escape(
            f"output folder {str(target)!r} cannot be written (No space left on device); "
            "pass a writable folder with --out")):
        with atomic_output_dir(target):
            pytest.fail("the block must not run")
    assert list(tmp_path.iterdir()) == []


def test_checking_leaves_no_probe_behind(tmp_path):
    assert check_output_dir(tmp_path / "out") == tmp_path / "out"
    assert list(tmp_path.iterdir()) == []


def test_every_refusal_names_the_folder_and_the_fix(tmp_path, monkeypatch):
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(OutputDirError, match=re.escape(
            f"output folder {str(file)!r} is a file; choose another --out")):
        check_output_dir(file)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    with pytest.raises(OutputDirError, match=re.escape(
            f"output folder {str(foreign)!r} exists, is not empty and was not written by "
            "bnproof; choose another --out (e.g. a new folder inside it) or remove it")):
        check_output_dir(foreign)
    missing = tmp_path / "no" / "out"
    with pytest.raises(OutputDirError, match=re.escape(
            f"parent folder {str(missing.parent)!r} of the output folder does not exist; "
            "create it first")):
        check_output_dir(missing)
    with pytest.raises(OutputDirError, match=re.escape(
            "output folder '/sys/bnproof-out' cannot be written (") + r".+" + re.escape(
            " in '/sys'); pass a writable folder with --out")):
        check_output_dir("/sys/bnproof-out")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputDirError, match=re.escape(
            f"output folder {str(tmp_path)!r} is the current folder or contains it, and "
            "replacing it would pull the folder from under this shell; choose another --out")):
        check_output_dir(tmp_path)
