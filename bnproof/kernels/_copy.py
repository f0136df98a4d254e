"""Multi-threaded copies of a flat array: the memory floor of ``bnproof bench``.

``copy`` uses ordinary stores (each output line is read before it is
written); ``stream_copy`` streaming stores (whole lines written without
reading them, the fastest copy on x86-64; see :mod:`._stream`). Indices are
unsigned so that LLVM vectorizes the loops as it does the kernels' (a
signed-index copy ran at half the speed and made the floor too easy).

They live at module level so that Numba's on-disk cache finds them again:
functions defined inside a function that refer to other kernels get a new
cache key in every process, so they were recompiled (and another cache file
written) on every run.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from . import _config, _stream
from ._config import jit
from ._stream import flush_row, store_fence

#: Values per chunk of the multi-threaded copies (256 KiB of float32).
COPY_CHUNK = 1 << 16


@jit(parallel=True)
def copy(src, dst):
    """Copy the flat array ``src`` into ``dst``, chunks over Numba's threads."""
    n = src.shape[0]
    for c in prange((n + COPY_CHUNK - 1) // COPY_CHUNK):
        start = c * COPY_CHUNK
        for k in range(min(n, start + COPY_CHUNK) - start):
            dst[np.uint64(start + k)] = src[np.uint64(start + k)]


@jit(parallel=True)
def stream_copy(src, dst):
    """:func:`copy` with streaming stores into whole aligned lines of ``dst``."""
    n = src.shape[0]
    for c in prange((n + COPY_CHUNK - 1) // COPY_CHUNK):
        start = c * COPY_CHUNK
        stop = min(n, start + COPY_CHUNK)
        flush_row(dst[start:stop], src[start:stop], stop - start)
        store_fence()


# these inline _stream's functions and _config's options (see _config)
_config.drop_stale_caches(globals(), [_config, _stream])
