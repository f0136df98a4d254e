"""Write an output folder completely or not at all.

The drift experiment and the report both write a folder of files. A run that
fails or is interrupted must leave the previous folder exactly as it was, so
everything is written into a temporary folder first. Normally that folder is
a sibling of the target and replaces it with two renames. A folder that
cannot be renamed (a mount point, such as a container volume, or a folder in
a parent that cannot be written) is written in place instead: the new files
are written into a hidden folder inside it, and only once they are all there
are the old entries set aside and the new ones moved in.

Folders and files are created with the permissions the umask gives (like
``mkdir`` and ``open``), not the owner-only 0700 of :func:`tempfile.mkdtemp`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

#: File that marks a folder as written by bnproof, so that only such folders
#: (or empty ones) are ever replaced.
MARKER = ".bnproof-output"
#: Prefixes of the hidden folders written inside an output folder that is
#: written in place; left over by a killed run, they are bnproof's own.
_INSIDE_NEW, _INSIDE_OLD = ".bnproof-new-", ".bnproof-old-"
#: Errors of ``rename`` that mean "this folder cannot be renamed" (busy mount
#: point, another file system, not permitted), as opposed to a failed write.
_CANNOT_RENAME = {errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES, errno.EINVAL,
                  errno.EROFS}


class OutputDirError(ValueError):
    """The output folder cannot be used; the message says why and what to do."""


def _mkdir_unique(parent: Path, prefix: str) -> Path:
    """Create a new folder ``parent/<prefix><random>`` with the umask's permissions."""
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            os.mkdir(path, 0o777)  # the umask applies, as for mkdir(1)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(parent))


def _can_create_in(folder: Path) -> OSError | None:
    """Try to create and remove a folder in ``folder``; return the error, if any."""
    # Root passes every os.access test, so try for real.
    try:
        os.rmdir(_mkdir_unique(folder, ".bnproof-probe-"))
    except OSError as exc:
        return exc
    return None


def _ours(entry: Path) -> bool:
    return entry.name.startswith((_INSIDE_NEW, _INSIDE_OLD))


def _in_place(target: Path) -> bool:
    """Whether ``target`` is written in place (it exists and cannot be renamed)."""
    if not target.is_dir():
        return False
    return os.path.ismount(target) or _can_create_in(target.parent) is not None


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` can be (re)written as an output folder.

    Parameters
    ----------
    path : path-like
        The folder to be written.

    Returns
    -------
    pathlib.Path
        The absolute path.

    Raises
    ------
    OutputDirError
        If ``path`` is a file, a non-empty folder not written by bnproof,
        the current folder or one that contains it, or it cannot be written
        (its parent folder does not exist or is not writable and it is not
        an existing writable folder).

    Notes
    -----
    Symbolic links are resolved: a link to an earlier output folder has
    that folder replaced, and the link keeps pointing at it. A mount point
    or a folder whose parent is read-only is accepted when it can itself be
    written: it is then written in place (see :func:`atomic_output_dir`).
    """
    target = Path(path).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if cwd == target or target in cwd.parents:
        raise OutputDirError(
            f"output folder {str(target)!r} is the current folder or contains it, and "
            "replacing it would pull the folder from under this shell; choose another --out"
        )
    if target.exists() and not target.is_dir():
        raise OutputDirError(f"output folder {str(target)!r} is a file; choose another --out")
    if target.is_dir():
        foreign = [e for e in target.iterdir() if not _ours(e)]
        if foreign and not (target / MARKER).exists():
            raise OutputDirError(
                f"output folder {str(target)!r} exists, is not empty and was not written by "
                "bnproof; choose another --out (e.g. a new folder inside it) or remove it"
            )
    parent = target.parent
    if not parent.is_dir():
        raise OutputDirError(
            f"parent folder {str(parent)!r} of the output folder does not exist; create it first"
        )
    if _in_place(target):
        error = _can_create_in(target)
        where = target
    else:
        error = _can_create_in(parent)
        where = parent
    if error is not None:
        raise OutputDirError(
            f"output folder {str(target)!r} cannot be written ({error.strerror} in "
            f"{str(where)!r}); pass a writable folder with --out"
        )
    return target


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` only if the block succeeds.

    Parameters
    ----------
    path : path-like
        The folder to write. An existing folder written by bnproof (or an
        empty one) is replaced; anything else is refused.

    Yields
    ------
    pathlib.Path
        A fresh, empty folder. Write everything there.

    Raises
    ------
    OutputDirError
        From :func:`check_output_dir`, before anything is written.

    Notes
    -----
    On any exception, ``KeyboardInterrupt`` included, the temporary folder is
    removed and ``path`` is left untouched. On success the old folder is
    renamed aside, the new one renamed into place, and the old one removed.
    A folder that cannot be renamed (a mount point, a read-only parent, or a
    rename refused with e.g. ``EBUSY``) is written in place: its old entries
    are moved aside inside it and the new ones moved in, so the folder is
    again complete or unchanged, never half written (a crash in that short
    swap is the one exception, and leaves the old entries in a hidden
    ``.bnproof-old-*`` folder). Once the new content is in place the run is
    complete: a Ctrl-C while the old content is being removed waits until it
    is gone and is then ignored.
    """
    target = check_output_dir(path)
    in_place = _in_place(target)
    try:
        tmp = _mkdir_unique(target if in_place else target.parent,
                            _INSIDE_NEW if in_place else f".{target.name}.new-")
    except OSError as exc:
        raise OutputDirError(
            f"output folder {str(target)!r} cannot be written ({exc.strerror}); "
            "pass a writable folder with --out"
        ) from None
    try:
        yield tmp
        (tmp / MARKER).write_text("written by bnproof; safe to replace\n", encoding="utf-8")
        if in_place:
            _commit_in_place(tmp, target)
        else:
            _commit_by_rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _commit_by_rename(tmp: Path, target: Path) -> None:
    """Put ``tmp`` in place of ``target`` with two renames (in place if refused)."""
    old = None
    if target.exists():
        old = _mkdir_unique(target.parent, f".{target.name}.old-")
        os.rmdir(old)
        try:
            os.rename(target, old)
        except OSError as exc:
            if exc.errno not in _CANNOT_RENAME:
                raise
            _commit_in_place(tmp, target)
            return
    try:
        os.rename(tmp, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        _remove_committed(old)


def _move(src: Path, dst: Path) -> None:
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(src, dst)  # another file system: copy, then remove


def _commit_in_place(tmp: Path, target: Path) -> None:
    """Replace the entries of ``target`` by those of ``tmp``, keeping ``target`` itself."""
    old = _mkdir_unique(target, _INSIDE_OLD)
    moved_aside: list[str] = []
    moved_in: list[str] = []
    try:
        for entry in list(target.iterdir()):
            if entry in (tmp, old):
                continue
            os.rename(entry, old / entry.name)
            moved_aside.append(entry.name)
        for entry in list(tmp.iterdir()):
            # named before the move: across file systems a move is a copy, and
            # one that fails half way (a full disk) leaves part of the entry
            moved_in.append(entry.name)
            _move(entry, target / entry.name)
    except BaseException:
        # put everything back as it was; the caller removes tmp
        for name in moved_in:
            _remove_path(target / name)
        for name in moved_aside:
            os.rename(old / name, target / name)
        os.rmdir(old)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    _remove_committed(old)
    for leftover in target.iterdir():  # hidden folders of an earlier, killed run
        if _ours(leftover):
            _remove_committed(leftover)


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_committed(old: Path) -> None:
    """Remove the replaced folder ``old``, finishing even through Ctrl-C."""
    while True:
        try:
            shutil.rmtree(old, ignore_errors=True)
            return
        except KeyboardInterrupt:  # the new folder is in place: finish the cleanup
            continue
