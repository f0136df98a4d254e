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


# --- the helpers one by one, and the in-place swap when it fails half way


def test_a_taken_temporary_name_is_skipped(tmp_path, monkeypatch):
    (tmp_path / ".p-aaaaaaaa").mkdir()
    names = iter(["aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(_atomic.secrets, "token_hex", lambda n: next(names))
    assert _atomic._mkdir_unique(tmp_path, ".p-") == tmp_path / ".p-bbbbbbbb"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".p-aaaaaaaa", ".p-bbbbbbbb"]


def test_temporary_names_are_the_prefix_and_8_hex_digits(tmp_path):
    # 4 random bytes: short names, and a clash is one in four billion
    path = _atomic._mkdir_unique(tmp_path, ".p-")
    assert re.fullmatch(r"\.p-[0-9a-f]{8}", path.name) and path.is_dir()


def test_no_free_temporary_name_is_an_error_that_says_so(tmp_path, monkeypatch):
    (tmp_path / ".p-aaaaaaaa").mkdir()
    sizes = []
    monkeypatch.setattr(_atomic.secrets, "token_hex", lambda n: sizes.append(n) or "aaaaaaaa")
    with pytest.raises(FileExistsError) as info:
        _atomic._mkdir_unique(tmp_path, ".p-")
    assert (info.value.errno, info.value.strerror, info.value.filename) == (
        errno.EEXIST, "no free temporary name", str(tmp_path))
    assert sizes == [4] * 100  # 100 tries of 4 random bytes each
    (tmp_path / ".out.new-aaaaaaaa").mkdir()  # the probe gets its name, the new folder not
    with pytest.raises(OutputDirError, match=re.escape(
            f"output folder {str(tmp_path / 'out')!r} cannot be written (no free temporary "
            "name); pass a writable folder with --out")):
        with atomic_output_dir(tmp_path / "out"):
            pytest.fail("the block must not run")


def test_the_probe_folder_is_hidden_and_named_after_bnproof(tmp_path, monkeypatch):
    # a run killed between creating and removing it leaves a hidden folder
    # whose name says where it came from
    removed = []
    real = os.rmdir

    def rmdir(path, *args, **kwargs):
        removed.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "rmdir", rmdir)
    check_output_dir(tmp_path / "out")
    assert len(removed) == 1 and re.fullmatch(r"\.bnproof-probe-[0-9a-f]{8}", removed[0])


def _mount_point(monkeypatch, folder):
    """Make ``folder`` look like a mount point (written in place)."""
    real = os.path.ismount
    monkeypatch.setattr(_atomic.os.path, "ismount",
                        lambda p: os.fspath(p) == os.fspath(folder) or real(p))


def test_a_mount_point_that_cannot_be_written_is_refused(tmp_path, monkeypatch):
    # written in place, the folder itself must be writable (its parent does not matter)
    out = _write(tmp_path / "out", "old")
    _mount_point(monkeypatch, out)
    real = os.mkdir

    def mkdir(path, *args, **kwargs):
        if os.path.dirname(os.fspath(path)) == os.fspath(out):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    with pytest.raises(OutputDirError, match=re.escape(
            f"output folder {str(out)!r} cannot be written (Read-only file system in "
            f"{str(out)!r}); pass a writable folder with --out")):
        check_output_dir(out)


def test_a_move_across_file_systems_copies(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")

    def rename(s, d, *args, **kwargs):  # shutil.move tries a rename first too
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "rename", rename)
    _atomic._move(src, tmp_path / "dst")
    assert not src.exists() and (tmp_path / "dst" / "a.txt").read_text() == "a"


def test_a_move_that_fails_otherwise_is_not_retried_as_a_copy(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.write_text("a")

    def rename(s, d, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="Input/output error"):
        _atomic._move(src, tmp_path / "dst")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_remove_path_removes_files_folders_and_links_but_not_what_links_point_to(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x").write_text("x")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "x").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(kept, target_is_directory=True)
    for path in (file, folder, link, tmp_path / "missing"):
        _atomic._remove_path(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert (kept / "x").read_text() == "x"


def test_remove_path_goes_on_when_a_folder_cannot_be_removed(tmp_path, monkeypatch):
    # it undoes a failed swap: a folder that stays must not stop the old entries coming back
    folder = tmp_path / "folder"
    folder.mkdir()
    real = os.rmdir

    def rmdir(path, *args, **kwargs):
        if os.path.basename(path) == "folder":
            raise OSError(errno.EBUSY, "Device or resource busy")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "rmdir", rmdir)
    _atomic._remove_path(folder)
    assert folder.is_dir()


def test_an_in_place_swap_that_fails_puts_the_old_entries_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "result.txt").write_text("old")
        (tmp / "figures").mkdir()
        (tmp / "figures" / "a.svg").write_text("old")
    _mount_point(monkeypatch, out)
    real = _atomic._move
    aside = []

    def move(src, dst):
        if len(list(src.parent.iterdir())) > 1:  # all but the last entry move in
            return real(src, dst)
        # the old entries wait in one hidden folder of bnproof's inside the target
        hidden = [p for p in out.iterdir() if p.name.startswith(".bnproof-old-")]
        aside.extend((p.name, sorted(q.name for q in p.iterdir())) for p in hidden)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_atomic, "_move", move)
    with pytest.raises(OSError, match="No space left on device"):
        with atomic_output_dir(out) as tmp:
            (tmp / "result.txt").write_text("new")
            (tmp / "tables").mkdir()
            (tmp / "tables" / "b.csv").write_text("new")
            (tmp / "notes.txt").write_text("new")
    assert len(aside) == 1 and re.fullmatch(r"\.bnproof-old-[0-9a-f]{8}", aside[0][0])
    assert aside[0][1] == [MARKER, "figures", "result.txt"]
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "figures", "result.txt"]
    assert (out / "result.txt").read_text() == "old"
    assert (out / "figures" / "a.svg").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_copy_that_fails_half_way_is_removed_too(tmp_path, monkeypatch):
    # a folder that cannot be renamed is often another file system, where a
    # move is a copy: a full disk stops it half way, with part of the entry there
    out = _write(tmp_path / "out", "old")
    _mount_point(monkeypatch, out)
    real = _atomic._move

    def move(src, dst):
        if src.name == MARKER:
            return real(src, dst)
        dst.write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_atomic, "_move", move)
    with pytest.raises(OSError, match="No space left on device"):
        with atomic_output_dir(out) as tmp:
            (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "result.txt"]
    assert (out / "result.txt").read_text() == "old"
    assert (out / MARKER).read_text() == "written by bnproof; safe to replace\n"


def test_a_staging_folder_that_cannot_be_removed_does_not_fail_the_run(tmp_path, monkeypatch):
    # the new entries are in place: the run is complete even if the empty staging folder stays
    out = _write(tmp_path / "out", "old")
    _mount_point(monkeypatch, out)
    real = os.rmdir

    def rmdir(path, *args, **kwargs):
        if os.path.basename(path).startswith(".bnproof-new-"):
            raise OSError(errno.EBUSY, "Device or resource busy")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "rmdir", rmdir)
    with atomic_output_dir(out) as tmp:
        (tmp / "result.txt").write_text("new")
    assert (out / "result.txt").read_text() == "new"
    left = sorted(p.name for p in out.iterdir())
    assert left[1:] == [MARKER, "result.txt"] and left[0].startswith(".bnproof-new-")


@pytest.mark.parametrize("prefix", [".bnproof-new-", ".bnproof-old-"])
def test_a_removal_that_fails_once_is_tried_again(tmp_path, monkeypatch, prefix):
    # the swap ends by removing every hidden folder of bnproof's in the target,
    # so a removal refused once (a file still open on a network file system)
    # does not leave the staging or the replaced folder behind
    out = _write(tmp_path / "out", "old")
    _mount_point(monkeypatch, out)
    real = os.rmdir
    refused = []

    def rmdir(path, *args, **kwargs):
        name = os.path.basename(path)
        if name.startswith(prefix) and not refused:
            refused.append(name)
            raise OSError(errno.EBUSY, "Device or resource busy")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "rmdir", rmdir)
    with atomic_output_dir(out) as tmp:
        (tmp / "result.txt").write_text("new")
    assert len(refused) == 1
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "result.txt"]
    assert (out / "result.txt").read_text() == "new"
