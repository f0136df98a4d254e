"""Write an output folder completely or not at all.

The drift experiment and the report both write a folder of files. A run that
fails or is interrupted must leave the previous folder exactly as it was, so
everything is written into a temporary sibling folder which then replaces the
target with two renames.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: File that marks a folder as written by bnproof, so that only such folders
#: (or empty ones) are ever replaced.
MARKER = ".bnproof-output"


class OutputDirError(ValueError):
    """The output folder cannot be used; the message says why and what to do."""


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
        the current folder or one that contains it, or its parent folder
        does not exist or is not writable.

    Notes
    -----
    Symbolic links are resolved: a link to an earlier output folder has
    that folder replaced, and the link keeps pointing at it.
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
    if target.is_dir() and any(target.iterdir()) and not (target / MARKER).exists():
        raise OutputDirError(
            f"output folder {str(target)!r} exists, is not empty and was not written by bnproof; "
            "choose another --out or remove it"
        )
    parent = target.parent
    if not parent.is_dir():
        raise OutputDirError(
            f"parent folder {str(parent)!r} of the output folder does not exist; create it first"
        )
    # Root passes every os.access test, so try for real: make and remove a folder.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{target.name}.probe-", dir=parent))
    except OSError as exc:
        raise OutputDirError(
            f"output folder {str(target)!r} cannot be written ({exc.strerror} in "
            f"{str(parent)!r}); choose another --out"
        ) from None
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
        A fresh, empty folder beside ``path``. Write everything there.

    Raises
    ------
    OutputDirError
        From :func:`check_output_dir`, before anything is written.

    Notes
    -----
    On any exception, ``KeyboardInterrupt`` included, the temporary folder is
    removed and ``path`` is left untouched. On success the old folder is
    renamed aside, the new one renamed into place, and the old one removed.
    Once the new folder is in place the run is complete: a Ctrl-C while the
    old folder is being removed waits until it is gone and is then ignored
    (neither a half-removed folder nor an "interrupted" exit is left).
    """
    target = check_output_dir(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    except OSError as exc:
        raise OutputDirError(
            f"output folder {str(target)!r} cannot be written ({exc.strerror}); "
            "choose another --out"
        ) from None
    try:
        yield tmp
        (tmp / MARKER).write_text("written by bnproof; safe to replace\n", encoding="utf-8")
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rmdir(old)
            os.rename(target, old)
        try:
            os.rename(tmp, target)
        except BaseException:
            if old is not None:
                os.rename(old, target)
            raise
        if old is not None:
            _remove_committed(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_committed(old: Path) -> None:
    """Remove the replaced folder ``old``, finishing even through Ctrl-C."""
    while True:
        try:
            shutil.rmtree(old, ignore_errors=True)
            return
        except KeyboardInterrupt:  # the new folder is in place: finish the cleanup
            continue
