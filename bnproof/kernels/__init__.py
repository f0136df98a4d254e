"""Fast, accurate batch-normalization kernels (forward, backward, moments).

Importing this package compiles nothing and does not import Numba; the
kernels compile (or load from Numba's on-disk cache) on their first call.
Calls are serialized by a lock (safe from several Python threads under any
Numba threading layer); inputs below 131072 values run on one thread.
Outputs of 1 MiB or more reuse the memory of earlier outputs that are no
longer referenced, which spares the operating system's zero-filling of
fresh pages (about as costly as the whole kernel at that size), and start
half a page away from their inputs (see ``_buffers``); on x86-64, outputs
of 32 MiB or more are written with streaming stores (see ``_stream``).

Functions
---------
batch_norm_forward
    Training or inference forward pass, PyTorch's semantics, running
    buffers updated in place.
batch_norm_backward
    Gradients with respect to the input, ``weight`` and ``bias``.
batch_norm_moments
    Per-channel ``(count, mean, m2)`` of a batch.
dask_moments
    Per-channel moments of a Dask array (a tree reduction of merged records;
    needs the ``dask`` extra).
merge_moments
    Exact merge of two :class:`Moments` records (Chan, Golub & LeVeque).
kernels_cached
    Whether the kernels are in Numba's disk cache (``False``: the next
    calls compile, about a minute on a first run).
warm_up
    Compile (or load) the kernels of two-axis batches now, not on first use.
"""

from ._batch_norm import batch_norm_backward as batch_norm_backward
from ._batch_norm import batch_norm_forward as batch_norm_forward
from ._batch_norm import batch_norm_moments as batch_norm_moments
from ._dask import dask_moments as dask_moments
from ._moments import Moments as Moments
from ._moments import merge_moments as merge_moments
from ._warm import kernels_cached as kernels_cached
from ._warm import warm_up as warm_up

__all__ = [
    "Moments",
    "batch_norm_backward",
    "batch_norm_forward",
    "batch_norm_moments",
    "dask_moments",
    "kernels_cached",
    "merge_moments",
    "warm_up",
]
