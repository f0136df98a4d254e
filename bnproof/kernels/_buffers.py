"""Recycled output arrays for large tensors.

A fresh array above glibc's mmap threshold (32 MiB at most) gets new pages
from the operating system on every call, and the kernel zero-fills each page
on first touch: for a 64 MiB output that costs about as much as copying the
tensor (measured on a 2-core machine: a copy into a new array took 1.5 to 3
times as long as ``np.copyto`` into an existing one). Batch normalization is
memory bound, so that alone would halve its speed.

:func:`empty` therefore hands out large outputs backed by recycled memory:
the returned array's base is a small owner object, and when the last array
or view referring to it is gone, its memory goes back to a pool for the next
call of the same size. A block is never handed out while any array still
refers to it (reference counting decides, not the caller), and the kernels
write every element of their output, so nothing of a previous result can
show through. At most :data:`MAX_FREE_BYTES` of free blocks are kept.

Recycled arrays start on a cache-line boundary (:data:`ALIGN`): streaming
stores (see :mod:`._stream`) write whole aligned lines, and a row that
starts mid-line costs two partial lines written the ordinary way (measured:
the (256, 64, 32, 32) float32 forward ran about 8 % faster into an aligned
output than into one 16 bytes past a line).
"""

from __future__ import annotations

import math
import threading

import numpy as np

#: Outputs at least this large are recycled; smaller ones come from
#: ``np.empty`` (glibc keeps and reuses blocks below its mmap threshold).
MIN_BYTES = 32 << 20

#: Alignment in bytes of recycled arrays (one cache line).
ALIGN = 64

#: Largest total size of free blocks kept for reuse (released ones beyond it
#: are returned to the operating system).
MAX_FREE_BYTES = 256 << 20

_lock = threading.RLock()  # re-entrant: a release may run inside an allocation (GC)
_free: dict[int, list[np.ndarray]] = {}
_free_bytes = 0


class _Owner:
    """Owner of one recycled block; its memory returns to the pool when it dies."""

    __slots__ = ("__array_interface__", "_raw")

    def __init__(self, raw: np.ndarray, shape: tuple[int, ...], dtype: np.dtype):
        self._raw = raw  # ALIGN bytes longer than the array, for the alignment
        start = raw.ctypes.data
        self.__array_interface__ = {
            "shape": shape,
            "typestr": dtype.str,
            "data": (start + (-start) % ALIGN, False),
            "version": 3,
        }

    def __del__(self):
        _release(self._raw)


def _release(raw: np.ndarray) -> None:
    global _free_bytes
    nbytes = raw.nbytes - ALIGN  # the size of the arrays it can hold
    with _lock:
        if _free_bytes + nbytes <= MAX_FREE_BYTES:
            _free.setdefault(nbytes, []).append(raw)
            _free_bytes += nbytes


def _take(nbytes: int) -> np.ndarray | None:
    global _free_bytes
    with _lock:
        blocks = _free.get(nbytes)
        if not blocks:
            return None
        _free_bytes -= nbytes
        return blocks.pop()


def empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Return an uninitialized C-contiguous array, recycled when it is large.

    Parameters
    ----------
    shape : tuple of int
        Shape of the array.
    dtype : numpy.dtype
        float32 or float64.

    Returns
    -------
    numpy.ndarray
        Writeable and C-contiguous. Arrays of at least :data:`MIN_BYTES`
        are views of a recycled block (``base`` is the block's owner) and
        start on an :data:`ALIGN`-byte boundary.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES:
        return np.empty(shape, dtype=dtype)
    raw = _take(nbytes)
    if raw is None:
        raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    return np.asarray(_Owner(raw, tuple(shape), dtype))


def free_bytes() -> int:
    """Return the total size of the free blocks kept for reuse."""
    with _lock:
        return _free_bytes


def clear() -> None:
    """Return every free block to the operating system."""
    global _free_bytes
    with _lock:
        _free.clear()
        _free_bytes = 0
