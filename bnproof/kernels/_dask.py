"""Per-channel moments of a Dask array: a tree reduction over mergeable records.

Dask is optional (``pip install "bnproof[dask]"``) and imported only when
:func:`dask_moments` is called.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._batch_norm import batch_norm_moments
from ._moments import Moments, merge_moments

__all__ = ["dask_moments"]

#: The fields of one channel's record in the reduction's output.
_RECORD = np.dtype(
    [("count", np.float64), ("mean", np.float64), ("mean_lo", np.float64), ("m2", np.float64)]
)


def _chunk_moments(block: np.ndarray, axis: int) -> Moments:
    """Moments of one block, its channel axis at ``axis`` (an empty block counts 0)."""
    channels = block.shape[axis]
    if block.size == 0:
        zeros = np.zeros(channels)
        return Moments(0, zeros, zeros.copy(), mean_lo=zeros.copy())
    if axis == block.ndim - 1:
        return batch_norm_moments(block, channel_axis=-1)
    if axis != 1:
        block = np.moveaxis(block, axis, 1)
    return batch_norm_moments(block, channel_axis=1)


def _merge_nested(parts) -> Moments:
    """Merge a nested list of records in order (depth-first, left to right)."""
    if isinstance(parts, Moments):
        return parts
    merged = None
    for part in parts:
        record = _merge_nested(part)
        merged = record if merged is None else merge_moments(merged, record)
    return merged


def dask_moments(x, channel_axis=1) -> Moments:
    """Per-channel count, mean and sum of squared deviations of a Dask array.

    Parameters
    ----------
    x : dask.array.Array
        float32 or float64 array ``(N, C)``, ``(N, C, *spatial)`` or, with
        ``channel_axis=-1``, channels-last ``(N, *spatial, C)``, in any
        chunking (the channel axis may be chunked too).
    channel_axis : int, default 1
        Axis of the channels; every other axis is reduced.

    Returns
    -------
    Moments
        ``(count, mean, m2)`` with float64 ``mean`` and ``m2`` of shape
        ``(C,)`` and ``mean_lo``, as :func:`batch_norm_moments` returns for
        the whole array in memory (equal to float64 rounding).

    Raises
    ------
    TypeError
        If ``x`` is not a Dask array of float32/float64 values, or
        ``channel_axis`` is not an int.
    ValueError
        If ``x`` has fewer than 2 axes, is empty, or ``channel_axis`` is
        invalid.

    Notes
    -----
    A ``dask.array.reduction``: each block's moments come from
    :func:`batch_norm_moments` (float64, shifted data), and the tree's
    combine and aggregate steps merge the records with Chan, Golub &
    LeVeque's rule (:func:`merge_moments`), always in block order, so the
    result depends on the chunking only through float64 rounding.
    Computing runs on whatever scheduler is active (threads, processes or a
    ``dask.distributed`` cluster).
    """
    try:
        import dask.array as da
    except ImportError as error:  # pragma: no cover - the test extra installs dask
        raise ImportError(
            'dask_moments needs dask (pip install "bnproof[dask]")'
        ) from error
    if not isinstance(x, da.Array):
        raise TypeError(
            f"x must be a dask.array.Array, got {type(x).__name__} "
            "(use batch_norm_moments for arrays in memory)"
        )
    if x.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(
            f"x has dtype {x.dtype}; dask_moments supports float32 and float64 only "
            "(cast with x.astype(np.float64))"
        )
    if x.ndim < 2:
        raise ValueError(
            f"x has ndim {x.ndim} (shape {x.shape}); dask_moments needs (N, C) or "
            "(N, C, *spatial) (add a channel axis, e.g. x.reshape(-1, 1))"
        )
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
        raise TypeError(
            f"channel_axis must be an int, got {channel_axis!r} "
            "(use 1 for (N, C, ...) or -1 for channels-last (N, ..., C))"
        )
    axis = int(channel_axis)
    if not -x.ndim <= axis < x.ndim or axis % x.ndim == 0:
        raise ValueError(
            f"channel_axis={axis} is out of range or the batch axis for x with shape "
            f"{x.shape} (use 1 for (N, C, ...) or -1 for channels-last (N, ..., C))"
        )
    axis %= x.ndim
    if any(s == 0 for s in x.shape) or any(
        isinstance(s, float) and np.isnan(s) for s in x.shape
    ):
        raise ValueError(
            f"x has shape {x.shape}; dask_moments needs a non-empty array of known shape "
            "(call x.compute_chunk_sizes() for unknown sizes)"
        )
    reduced = tuple(i for i in range(x.ndim) if i != axis)

    meta = np.empty((0,), dtype=_RECORD)

    def chunk(block, axis=None, keepdims=None, computing_meta=False):
        if computing_meta:  # dask probes the steps with empty arrays to infer types
            return block
        return {"m": _chunk_moments(block, reduced_axis)}

    def combine(parts, axis=None, keepdims=None, computing_meta=False):
        if computing_meta:
            return parts
        return {"m": _merge_nested(_strip(parts))}

    def aggregate(parts, axis=None, keepdims=None, computing_meta=False):
        if computing_meta:
            return meta
        m = _merge_nested(_strip(parts))
        out = np.empty(m.mean.shape[0], dtype=_RECORD)
        out["count"] = m.count
        out["mean"] = m.mean
        out["mean_lo"] = np.zeros_like(m.mean) if m.mean_lo is None else m.mean_lo
        out["m2"] = m.m2
        return out

    reduced_axis = axis
    result = da.reduction(
        x,
        chunk,
        aggregate,
        combine=combine,
        axis=reduced,
        keepdims=False,
        dtype=_RECORD,
        concatenate=False,
        meta=meta,
    ).compute()
    counts = result["count"]
    return Moments(
        int(counts[0]),
        np.ascontiguousarray(result["mean"]),
        np.ascontiguousarray(result["m2"]),
        mean_lo=np.ascontiguousarray(result["mean_lo"]),
    )


def _strip(parts):
    """Replace the ``{"m": record}`` wrappers of a nested list by the records."""
    if isinstance(parts, dict):
        return parts["m"]
    return [_strip(p) for p in parts]
