"""Whether the kernels' on-disk cache is warm (so the next call compiles nothing)."""

from __future__ import annotations

import os

__all__ = ["kernels_cached", "warm_up"]


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


#: The float types :func:`warm_up` accepts.
_WARM_DTYPES = ("float32", "float64")


def warm_up(dtypes=("float32", "float64")) -> float:
    """Compile (or load from the disk cache) the kernels of ``(N, C)`` batches now.

    Parameters
    ----------
    dtypes : sequence of {"float32", "float64"}, default both
        The input float types to prepare.

    Returns
    -------
    float
        Seconds taken: about a minute on two cores on a first run, well
        under a second once the kernels are cached.

    Raises
    ------
    TypeError, ValueError
        If ``dtypes`` is not a sequence of the names above.

    Notes
    -----
    Runs :func:`~bnproof.kernels.batch_norm_forward` (training and
    inference), :func:`~bnproof.kernels.batch_norm_backward` and
    :func:`~bnproof.kernels.batch_norm_moments` once on a small ``(N, C)``
    batch of each type, so later calls on two-axis batches of any size
    compile nothing. Inputs with spatial axes use further kernels, which
    compile on their first call. A program that starts a second process can
    call this there while its own process compiles the other type.
    """
    import time

    if isinstance(dtypes, str) or not hasattr(dtypes, "__iter__"):
        raise TypeError(f"dtypes must be a list of names such as ['float32'], got {dtypes!r}")
    names = [str(getattr(d, "name", d)) for d in dtypes]
    unknown = [n for n in names if n not in _WARM_DTYPES]
    if unknown:
        raise ValueError(f"dtypes {unknown} are not float32 or float64; pass a list of those")
    import numpy as np

    from ._batch_norm import batch_norm_backward, batch_norm_forward, batch_norm_moments

    start = time.perf_counter()
    for name in names:
        x = np.linspace(-1.0, 1.0, 24, dtype=name).reshape(8, 3)
        running_mean, running_var = np.zeros(3, dtype=name), np.ones(3, dtype=name)
        weight, bias = np.ones(3, dtype=name), np.zeros(3, dtype=name)
        y, mean, invstd = batch_norm_forward(x, weight, bias, running_mean, running_var)
        batch_norm_backward(np.ones_like(x), x, weight, mean, invstd)
        batch_norm_forward(x, weight, bias, running_mean, running_var, training=False)
        batch_norm_moments(x)
    return time.perf_counter() - start
