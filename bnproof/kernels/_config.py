"""Numba options for every kernel of :mod:`bnproof.kernels`, in one place.

Every jitted body in this package is decorated with :data:`JIT_OPTIONS`
(through :func:`jit`); a test checks that no kernel sets flags of its own.

Notes
-----
``FASTMATH`` lists LLVM fast-math flags one by one instead of ``fastmath=True``
so that ``nnan`` and ``ninf`` stay off: NaN and inf in the input must still
propagate to the affected channel (as in PyTorch), and the compiler may not
assume they are absent. The flags that are on:

``reassoc``
    Lets LLVM vectorize float64 reductions along contiguous rows. Every
    reduction still runs in an order fixed at compile time, so results do
    not depend on the number of threads.
``contract``
    Fused multiply-add where it helps (one rounding instead of two).
``nsz``
    Ignore the sign of zero (``x - mu`` may be ``+0`` or ``-0``).
``arcp``
    Division by a loop invariant may become multiplication by its reciprocal.

``afn`` (approximate ``sqrt`` and friends) stays off: the inverse standard
deviation is computed once per channel and must be correctly rounded.

Elementwise kernels (``jit(elementwise=True)``: normalize, input gradient)
run without ``reassoc`` (:data:`ELEMENTWISE_FASTMATH`). They have no
reduction to vectorize, and ``reassoc`` lets LLVM regroup an expression
differently in two loops that compute it (with the input gradient once
written ``dy - mean_dy - (x - mu) k``, the streamed and the plain output
loop gave float64 results one ulp apart). Without it, every loop evaluates
``(x - mu) scale + beta`` and ``a dy + (b (x - mu) + c)`` as written,
contracted to the same fused multiply-adds, so all paths give the same
bits; and ``_two_sum`` keeps its error term, which ``reassoc`` folds to 0.

``cache=True`` is on purpose: compiled kernels are written next to the source
(or to Numba's user cache folder when that is read-only), so a new process
loads them in milliseconds instead of compiling for seconds. Nothing compiles
at import time: kernels are compiled (or loaded) on their first call.

Numba keys a cached kernel on its own source file only, yet a kernel also
contains the code of the jitted functions it calls from other modules and
the options set here. After a ``git pull`` that changes only ``_stream.py``
or this file, the cached kernels of ``_jit_rc.py`` would still run the old
code. :func:`drop_stale_caches` prevents that: each module of kernels
records a digest of the modules it depends on next to its cache and empties
its cache when the digest changes.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from pathlib import Path

#: LLVM fast-math flags for every kernel: no ``nnan``/``ninf``/``afn``.
FASTMATH = frozenset({"reassoc", "contract", "nsz", "arcp"})

#: Fast-math flags of elementwise kernels: :data:`FASTMATH` without ``reassoc``.
ELEMENTWISE_FASTMATH = FASTMATH - {"reassoc"}

#: Keyword arguments of :func:`numba.njit` for every kernel.
JIT_OPTIONS = {
    "fastmath": set(FASTMATH),
    "cache": True,
    "nogil": True,
    "error_model": "numpy",
    "boundscheck": False,
}

#: Names of the kernels compiled without a disk cache (see :func:`jit`).
_UNCACHED: list[str] = []

#: Keyword arguments for kernels that run a ``prange`` loop.
PARALLEL_JIT_OPTIONS = {**JIT_OPTIONS, "parallel": True}


def jit(*, parallel: bool = False, elementwise: bool = False):
    """Return the :func:`numba.njit` decorator with this package's options.

    Parameters
    ----------
    parallel : bool, default False
        Compile ``prange`` loops to run on Numba's thread pool.
    elementwise : bool, default False
        The kernel has no reduction: use :data:`ELEMENTWISE_FASTMATH`.

    Returns
    -------
    callable
        A decorator. Numba is imported here, never at ``import bnproof``.
        Where Numba finds no folder to cache in (a read-only installation
        and no writable user cache folder), the kernel is compiled without
        a disk cache, with a warning, instead of failing.
    """
    import numba

    options = dict(PARALLEL_JIT_OPTIONS if parallel else JIT_OPTIONS)
    if elementwise:
        options["fastmath"] = ELEMENTWISE_FASTMATH
    options = {k: (set(v) if isinstance(v, frozenset | set) else v) for k, v in options.items()}

    def decorate(fn):
        try:
            return numba.njit(**options)(fn)
        except RuntimeError as exc:
            if "no locator available" not in str(exc):
                raise
            if not _UNCACHED:  # one warning per process, not one per kernel
                warnings.warn(
                    f"Numba finds no folder to cache bnproof's kernels in ({exc}); they are "
                    "compiled in every new process. Set NUMBA_CACHE_DIR to a writable "
                    "folder to cache them.",
                    RuntimeWarning, stacklevel=2,
                )
            _UNCACHED.append(fn.__name__)
            return numba.njit(**{**options, "cache": False})(fn)

    return decorate


def drop_stale_caches(namespace: dict, dependencies) -> int:
    """Empty the on-disk cache of a module's kernels when a dependency changed.

    Parameters
    ----------
    namespace : dict
        The module's ``globals()``. Its own kernels are the Numba dispatchers
        defined in it (not the ones it imports).
    dependencies : iterable of module
        The modules whose code or options end up inside those kernels.

    Returns
    -------
    int
        The number of kernel caches emptied (0 when the recorded digest of
        the dependencies is current, or when caching is off).

    Notes
    -----
    The digest is a SHA-256 of the dependencies' source files, recorded in
    ``<module>.deps-sha256`` in the cache folder. Two processes that find
    it stale at the same time both empty the cache, which only costs a
    recompilation. Nothing is compiled here.

    A process keeps the code it imported. If a newer process has recorded
    another digest since (the files changed under a running notebook), the
    kernels this process compiles afterwards are not saved: each kernel's
    cache re-reads the recorded digest before it saves and skips the save
    unless it is this process's. A cache file that cannot be unpickled
    (truncated by a full disk or a killed process) is emptied with a
    warning and the kernel compiled, instead of failing every call.
    """
    from numba.core.registry import CPUDispatcher

    module = namespace["__name__"]
    caches = [
        value._cache for value in namespace.values()
        if isinstance(value, CPUDispatcher) and value.py_func.__module__ == module
        and getattr(value._cache, "cache_path", None)
    ]
    if not caches:  # NUMBA_DISABLE_JIT, or no kernel with cache=True
        return 0
    digest = hashlib.sha256()
    for dep in sorted(dependencies, key=lambda m: m.__name__):
        digest.update(dep.__name__.encode() + b"\0" + Path(dep.__file__).read_bytes())
    digest = digest.hexdigest()
    emptied = 0
    for folder in sorted({cache.cache_path for cache in caches}):
        stamp = Path(folder, f"{module.rpartition('.')[2]}.deps-sha256")
        try:
            for cache in caches:
                if cache.cache_path == folder:
                    _save_only_while_current(cache, stamp, digest)
                    _recompile_when_unreadable(cache)
            if stamp.is_file() and stamp.read_bytes().strip() == digest.encode():
                continue
            for cache in caches:
                if cache.cache_path == folder:
                    cache.flush()
                    emptied += 1
            tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
            tmp.write_text(digest + "\n")
            os.replace(tmp, stamp)
        except OSError as exc:
            warnings.warn(
                f"bnproof could not check the kernel cache in {folder} against its "
                f"dependencies ({exc}); if kernels misbehave after an update, delete "
                f"the *.nbi and *.nbc files of {module} there.",
                RuntimeWarning, stacklevel=2,
            )
    return emptied


def _save_only_while_current(cache, stamp: Path, digest: str) -> None:
    """Make ``cache`` save a compiled kernel only while ``stamp`` records ``digest``."""
    save = cache.save_overload

    def save_overload(sig, data):
        try:
            current = stamp.read_bytes().strip() == digest.encode()
        except OSError:
            current = False
        if current:
            save(sig, data)

    cache.save_overload = save_overload


def _recompile_when_unreadable(cache) -> None:
    """Make ``cache`` treat a damaged cache file as a miss (emptied, with a warning)."""
    load = cache.load_overload

    def load_overload(sig, target_context):
        try:
            return load(sig, target_context)
        except (pickle.UnpicklingError, EOFError) as exc:
            warnings.warn(
                f"bnproof's kernel cache in {cache.cache_path} is damaged ({exc}); "
                "it is emptied and the kernel compiled again.",
                RuntimeWarning, stacklevel=2,
            )
            cache.flush()
            return None

    cache.load_overload = load_overload
