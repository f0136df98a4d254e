"""A small on-disk cache of deterministic results, keyed by what determines them.

A result is stored under a key: the SHA-256 digest of everything it depends
on (source files, library versions, settings, the contents of input files).
Change any of them and the key changes, so a stale result is never found.
Reading fails soft: a missing, unreadable, corrupt or foreign file is a miss
(the caller recomputes), and a folder that cannot be written means nothing
is stored; neither raises.

The folder is ``$BNPROOF_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/bnproof``,
else ``~/.cache/bnproof``. Entries are pickles: like Numba's own cache, the
folder must be writable only by its owner.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import pickle
import secrets
from collections.abc import Iterable
from pathlib import Path

__all__ = ["cache_dir", "digest", "exists", "load", "store"]

#: Format of the stored entries; bump it when :func:`store` changes.
_FORMAT = 1


def cache_dir() -> Path:
    """Return the cache folder (it may not exist yet)."""
    env = os.environ.get("BNPROOF_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bnproof"


def digest(files: Iterable[str | Path] = (), values: Iterable[object] = ()) -> str:
    """Return the hex SHA-256 of the files' contents and the values' ``repr``.

    Parameters
    ----------
    files : iterable of paths
        Read in the order given; a file that cannot be read contributes its
        name and the word "missing", so its later appearance changes the key.
    values : iterable
        Plain values (strings, numbers, tuples) that determine the result.
    """
    h = hashlib.sha256(f"bnproof-cache-{_FORMAT}".encode())
    for path in files:
        path = Path(path)
        h.update(b"\0file\0" + path.name.encode())
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"\0missing")
    for value in values:
        h.update(b"\0value\0" + repr(value).encode())
    return h.hexdigest()


def _path(name: str, key: str) -> Path:
    return cache_dir() / f"{name}-{key[:32]}.pickle"


def exists(name: str, key: str) -> bool:
    """Return whether an entry ``name`` is stored under ``key`` (it may still be unreadable)."""
    try:
        return _path(name, key).is_file()
    except OSError:
        return False


def load(name: str, key: str) -> tuple[object, str] | None:
    """Return ``(value, stored_at)`` of the entry ``name`` under ``key``, or ``None``.

    ``stored_at`` is the UTC time the value was stored (ISO 8601, to the
    second). Any problem reading the entry is a miss.
    """
    try:
        with open(_path(name, key), "rb") as fh:
            entry = pickle.load(fh)
        if (not isinstance(entry, dict) or entry.get("format") != _FORMAT
                or entry.get("key") != key or "value" not in entry):
            return None
        return entry["value"], str(entry.get("stored_at", "an earlier run"))
    except Exception:  # corrupt, truncated, foreign or unreadable: recompute
        return None


def store(name: str, key: str, value: object, dumps=None) -> bool:
    """Store ``value`` as the entry ``name`` under ``key``; return whether it was stored.

    The file is written under a temporary name and renamed into place, so a
    reader never sees half an entry. An unwritable folder stores nothing.
    ``dumps`` turns the entry into bytes that :func:`pickle.load` reads
    (default :func:`pickle.dumps`; e.g. :func:`bnproof.symbolic.to_bytes`).
    """
    target = _path(name, key)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stored_at = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        entry = {"format": _FORMAT, "key": key, "stored_at": stored_at, "value": value}
        data = (dumps or (lambda obj: pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)))(entry)
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
        return True
    except Exception:  # read-only folder, full disk, unpicklable value: not cached
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        return False
