"""Whether the kernels' on-disk cache is warm (so the next call compiles nothing)."""

from __future__ import annotations

import os

__all__ = ["kernels_cached"]


def kernels_cached() -> bool:
    """Return whether most kernels of :mod:`bnproof.kernels` have a cache on disk.

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
        index = getattr(getattr(getattr(value, "_cache", None), "_cache_file", None),
                        "_index_path", None)
        if index is None:
            continue
        total += 1
        found += os.path.exists(index)
    return total == 0 or 2 * found >= total
