"""Whether the kernels' on-disk cache is warm (so the next call compiles nothing)."""

from __future__ import annotations

import os

__all__ = ["kernels_cached"]


def kernels_cached() -> bool:
    """Return whether the kernels of :mod:`bnproof.kernels` have a cache on disk.

    Returns
    -------
    bool
        ``False`` on a first run (or after an update emptied the cache): the
        kernels will compile, which takes about a minute on two cores, so a
        command can say so. ``True`` when at least half of the kernels have
        an index file in Numba's cache folder.

    Notes
    -----
    Reads Numba's cache layout (each cached dispatcher's index file); if
    that layout is not found, says ``True`` rather than claim a compile
    that may not happen.
    """
    from numba.core.registry import CPUDispatcher

    from . import _jit

    found = total = 0
    for value in vars(_jit).values():
        if not isinstance(value, CPUDispatcher):
            continue
        cache_file = getattr(getattr(value, "_cache", None), "_cache_file", None)
        index = getattr(cache_file, "_index_path", None)
        if index is None:
            continue
        total += 1
        # an emptied cache keeps its index file, with no kernel in it
        try:
            found += os.path.exists(index) and bool(cache_file._load_index())
        except Exception:  # noqa: BLE001 - a layout we do not know: assume warm
            found += 1
    # Helpers called only from other kernels are compiled into them and never
    # cached on their own, so "any kernel cached" is what tells a first run.
    return total == 0 or found > 0
