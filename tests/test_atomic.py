"""The output folder is replaced whole or not at all."""

import os

import pytest

from bnproof._atomic import MARKER, OutputDirError, atomic_output_dir, check_output_dir


def _write(path, text):
    """An earlier bnproof output at ``path`` holding ``result.txt``."""
    with atomic_output_dir(path) as tmp:
        (tmp / "result.txt").write_text(text)
    return path


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_writes_new_folder_with_marker(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        assert tmp != out
        (tmp / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "new"
    assert (out / MARKER).exists()
    assert _siblings(out) == ["out"]


def test_replaces_previous_output(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "old.txt").write_text("old")
    with atomic_output_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]
    assert _siblings(out) == ["out"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_error_leaves_previous_output_intact(tmp_path, exc):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "keep.txt").write_text("keep")
    with pytest.raises(type(exc)):
        with atomic_output_dir(out) as tmp:
            (tmp / "half.txt").write_text("half")
            raise exc
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "keep.txt"]
    assert _siblings(out) == ["out"], "the temporary folder must be removed"


def test_error_on_first_run_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out):
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_empty_existing_folder_is_accepted(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with atomic_output_dir(out) as tmp:
        (tmp / "x").write_text("x")
    assert (out / "x").exists()


def test_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("precious")
    with pytest.raises(OutputDirError, match="is a file"):
        check_output_dir(f)
    assert f.read_text() == "precious"


def test_foreign_folder_is_refused(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(OutputDirError, match="not written by bnproof"):
        with atomic_output_dir(out):
            pytest.fail("the block must not run")
    assert (out / "thesis.tex").read_text() == "precious"


def test_missing_parent_is_refused(tmp_path):
    with pytest.raises(OutputDirError, match="does not exist"):
        check_output_dir(tmp_path / "no" / "such" / "out")


def test_unwritable_system_folder_is_refused():
    # /sys refuses new entries even for root, so this runs in CI as root too.
    with pytest.raises(OutputDirError, match="cannot be written"):
        check_output_dir("/sys/bnproof-out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores write permissions")
def test_unwritable_parent_is_refused(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(OutputDirError, match="cannot be written"):
            check_output_dir(parent / "out")
    finally:
        parent.chmod(0o700)


def test_ctrl_c_while_the_old_folder_is_removed_finishes_the_removal(tmp_path, monkeypatch):
    # the new folder is already in place: an interrupt must not leave a
    # half-removed `.out.old-*` beside it, nor claim that nothing was written
    import shutil

    from bnproof import _atomic

    out = _write(tmp_path / "out", "old")
    calls = []
    real_rmtree = shutil.rmtree

    def interrupted_once(path, *args, **kwargs):
        calls.append(path)
        if ".old-" in str(path) and len(calls) == 1:
            raise KeyboardInterrupt
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(_atomic.shutil, "rmtree", interrupted_once)
    with atomic_output_dir(out) as tmp:
        (tmp / "result.txt").write_text("new")
    assert (out / "result.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert len(calls) == 2  # interrupted, then finished


def test_a_link_to_an_earlier_output_has_that_output_replaced(tmp_path):
    real = _write(tmp_path / "real", "old")
    link = tmp_path / "out"
    link.symlink_to(real)
    with atomic_output_dir(link) as tmp:
        (tmp / "result.txt").write_text("new")
    assert link.is_symlink() and (link / "result.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "real"]


def test_the_current_folder_and_its_parents_are_refused(tmp_path, monkeypatch):
    inner = _write(tmp_path / "out", "old") / "sub"
    inner.mkdir()
    monkeypatch.chdir(inner)
    for path in (".", "..", str(tmp_path / "out")):
        with pytest.raises(OutputDirError, match="current folder or contains it"):
            check_output_dir(path)


def _busy_rename(monkeypatch, busy):
    """Make ``os.rename`` of the folders in ``busy`` fail as a mount point's does."""
    import errno

    from bnproof import _atomic

    real = os.rename

    def rename(src, dst, *args, **kwargs):
        if os.fspath(src) in {os.fspath(p) for p in busy}:
            raise OSError(errno.EBUSY, "Device or resource busy", os.fspath(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(_atomic.os, "rename", rename)


def test_a_folder_that_cannot_be_renamed_is_written_in_place(tmp_path, monkeypatch):
    # a mount point (a container volume) refuses rename with EBUSY; the
    # report used to fail there with a traceback after all the work
    out = _write(tmp_path / "out", "old")
    (out / "stale.txt").write_text("from the earlier run")
    inode = out.stat().st_ino
    _busy_rename(monkeypatch, [out])
    with atomic_output_dir(out) as tmp:
        (tmp / "result.txt").write_text("new")
    assert out.stat().st_ino == inode, "the folder itself stays (it is a mount point)"
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "result.txt"]
    assert (out / "result.txt").read_text() == "new"
    assert _siblings(out) == ["out"]


def test_in_place_failure_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    out = _write(tmp_path / "out", "old")
    _busy_rename(monkeypatch, [out])
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "result.txt"]
    assert (out / "result.txt").read_text() == "old"


def test_mount_point_is_written_in_place(tmp_path, monkeypatch):
    # the same decision made up front: a mount point is staged inside itself
    from bnproof import _atomic

    out = tmp_path / "vol"
    out.mkdir()
    real_ismount = os.path.ismount
    monkeypatch.setattr(_atomic.os.path, "ismount", lambda p: os.fspath(p) == os.fspath(out)
                        or real_ismount(p))
    with atomic_output_dir(out) as tmp:
        assert tmp.parent == out
        (tmp / "result.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "result.txt"]
    assert _siblings(out) == ["vol"]


def test_real_tmpfs_mount_point(tmp_path):
    import subprocess

    out = tmp_path / "m"
    out.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(out)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        for text in ("first", "second"):
            with atomic_output_dir(out) as tmp:
                (tmp / "result.txt").write_text(text)
        assert sorted(p.name for p in out.iterdir()) == [MARKER, "result.txt"]
        assert (out / "result.txt").read_text() == "second"
    finally:
        subprocess.run(["umount", str(out)], check=True)


def test_folders_and_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        out = _write(tmp_path / "out", "x")
    finally:
        os.umask(old)
    # mkdtemp made 0700 folders, unreadable to a web server or a colleague
    assert out.stat().st_mode & 0o777 == 0o755
    assert (out / "result.txt").stat().st_mode & 0o777 == 0o644


def test_leftovers_of_a_killed_in_place_run_are_ours(tmp_path, monkeypatch):
    from bnproof import _atomic

    out = tmp_path / "out"
    out.mkdir()
    (out / ".bnproof-new-dead").mkdir()
    (out / ".bnproof-old-dead").mkdir()
    (out / ".bnproof-old-dead" / "result.txt").write_text("older")
    assert check_output_dir(out) == out  # hidden folders of bnproof's are not foreign
    real_ismount = os.path.ismount
    monkeypatch.setattr(_atomic.os.path, "ismount", lambda p: os.fspath(p) == os.fspath(out)
                        or real_ismount(p))
    with atomic_output_dir(out) as tmp:
        (tmp / "result.txt").write_text("new")
    # written in place, the swap removes them once the new entries are in
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "result.txt"]
    assert (out / "result.txt").read_text() == "new"
