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
show through. At most :data:`MAX_FREE_BYTES` of free blocks are kept (the
ones released longest ago go back to the operating system first).

Recycled arrays start on a cache-line boundary (:data:`ALIGN`): streaming
stores (see :mod:`._stream`) write whole aligned lines, and a row that
starts mid-line costs two partial lines written the ordinary way (measured:
the (256, 64, 32, 32) float32 forward ran about 8 % faster into an aligned
output than into one 16 bytes past a line).

Recycled outputs are also *placed* away from the arrays the kernel reads
while it writes them (``apart_from``): the output starts about half a page
(:data:`PAGE`) away from each input, counted modulo the page size. An
output that starts a few lines after an input, modulo 1 MiB, makes the
processor take each store for one that may feed a later load of the input
(address aliasing), and the kernel stalls: on (4096, 1024) float32,
``normalize`` took 1.6 ms with the output 16 to 64 bytes past the input
modulo 1 MiB and 0.6 ms elsewhere, the input gradient 1.8 ms against
0.9 ms. glibc puts blocks of one size one after the other, so this is the
common case, not a rare one: the forward of a freshly copied (4096, 1024)
float32 array took 3.5 ms into ``np.empty`` (16 bytes past the input)
and 1.1 ms into a placed output.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import numpy as np

#: Outputs at least this large are recycled and placed; smaller ones come
#: from ``np.empty``. (Placement needs a block a page longer than the array,
#: and glibc does not reliably keep such blocks: with fresh (4096, 1024)
#: float32 blocks each batch-norm step took a thousand page faults and twice
#: as long. Below 1 MiB, where a kernel call takes tens of microseconds,
#: the few microseconds that placing an output costs are not worth it.)
MIN_BYTES = 1 << 20

#: Alignment in bytes of recycled and placed arrays (one cache line).
ALIGN = 64

#: Period of the placement: each output starts about ``PAGE / 2`` bytes away
#: from every input modulo ``PAGE``, hence also modulo every multiple of it.
PAGE = 4096

#: Largest total size of free blocks kept for reuse: beyond it, the blocks
#: released longest ago are returned to the operating system.
MAX_FREE_BYTES = 256 << 20

_lock = threading.RLock()  # re-entrant: a release may run inside an allocation (GC)
_free: dict[int, list[np.ndarray]] = {}  # free blocks by the size of array they hold
_released: OrderedDict[int, int] = OrderedDict()  # id(block) -> size, oldest first
_free_bytes = 0


class _Owner:
    """Owner of one recycled block; its memory returns to the pool when it dies."""

    __slots__ = ("__array_interface__", "_raw")

    def __init__(self, raw: np.ndarray, offset: int, shape: tuple[int, ...], dtype: np.dtype):
        self._raw = raw  # PAGE bytes longer than the array, for the placement
        self.__array_interface__ = {
            "shape": shape,
            "typestr": dtype.str,
            "data": (raw.ctypes.data + offset, False),
            "version": 3,
        }

    def __del__(self):
        _release(self._raw)

    def _refuse(self, *args):
        # a second owner of the block would release it while the first's
        # arrays still use it; arrays themselves copy and pickle as usual
        raise TypeError(
            "a recycled output's memory owner cannot be copied or pickled; copy or "
            "pickle the array itself (e.g. numpy.array(y))"
        )

    __copy__ = __deepcopy__ = __reduce__ = __reduce_ex__ = _refuse


def _release(raw: np.ndarray) -> None:
    global _free_bytes
    nbytes = raw.nbytes - PAGE  # the size of the arrays it can hold
    with _lock:
        if nbytes > MAX_FREE_BYTES:
            return
        _free.setdefault(nbytes, []).append(raw)
        _released[id(raw)] = nbytes
        _free_bytes += nbytes
        while _free_bytes > MAX_FREE_BYTES:  # drop the blocks released longest ago
            old_id, old_bytes = _released.popitem(last=False)
            blocks = _free[old_bytes]
            blocks.pop(next(i for i, b in enumerate(blocks) if id(b) == old_id))
            _free_bytes -= old_bytes


def _take(nbytes: int) -> np.ndarray | None:
    global _free_bytes
    with _lock:
        blocks = _free.get(nbytes)
        if not blocks:
            return None
        _free_bytes -= nbytes
        raw = blocks.pop()  # the one released last: the likeliest to be in cache
        del _released[id(raw)]
        return raw


def _target(apart_from) -> int:
    """Start of the output modulo ``PAGE``: a line in the middle of the widest gap.

    The gap is the widest stretch between the inputs' starts on the circle
    of addresses modulo ``PAGE`` (with one input: everything but that
    point, so the output lands half a page away). With ``k`` inputs the
    output is at least ``PAGE / (2 k)`` minus a line away from each.
    """
    points = sorted({int(a) % PAGE for a in apart_from})
    if not points:
        return 0
    gaps = [((points[(i + 1) % len(points)] - p) % PAGE or PAGE, p)
            for i, p in enumerate(points)]
    width, start = max(gaps)
    return (start + width // 2) // ALIGN * ALIGN % PAGE


def _offset(raw: np.ndarray, target: int) -> int:
    """Offset into ``raw`` of the first address congruent to ``target`` modulo ``PAGE``."""
    return (target - raw.ctypes.data) % PAGE


def empty(shape: tuple[int, ...], dtype: np.dtype, apart_from=()) -> np.ndarray:
    """Return an uninitialized C-contiguous array, placed and recycled when it is large.

    Parameters
    ----------
    shape : tuple of int
        Shape of the array.
    dtype : numpy.dtype
        float32 or float64.
    apart_from : iterable of numpy.ndarray
        The arrays a kernel reads while it writes this one; a recycled
        output starts away from each of them modulo :data:`PAGE` (see the
        module's notes).

    Returns
    -------
    numpy.ndarray
        Writeable and C-contiguous. Arrays of at least :data:`MIN_BYTES`
        are views of a recycled block (``base`` is the block's owner),
        start on an :data:`ALIGN`-byte boundary and are placed.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES:
        return np.empty(shape, dtype=dtype)
    raw = _take(nbytes)
    if raw is None:
        raw = np.empty(nbytes + PAGE, dtype=np.uint8)
    target = _target(a.ctypes.data for a in apart_from)
    return np.asarray(_Owner(raw, _offset(raw, target), tuple(shape), dtype))


def free_bytes() -> int:
    """Return the total size of the free blocks kept for reuse."""
    with _lock:
        return _free_bytes


def clear() -> None:
    """Return every free block to the operating system."""
    global _free_bytes
    with _lock:
        _free.clear()
        _released.clear()
        _free_bytes = 0
