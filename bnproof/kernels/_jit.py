"""The batch-normalization kernels: layouts, algorithm, and which kernel runs.

The jitted bodies (which trust their inputs) live in :mod:`._jit_rc` (rows
x channels), :mod:`._jit_ncm` (channels-first) and :mod:`._jit_parts` (sizes and
helpers shared by both); this module chooses between them.

Two memory layouts cover every public layout (see :mod:`._reference`):

rows x channels ``(R, C)``
    ``(N, C)`` and channels-last ``(N, *spatial, C)``. Work is split into
    tiles of ``rows x channels``; each tile reduces along its rows with the
    channels in SIMD lanes, writes its partial result to its own slot, and
    the slots are merged in row-block order.
channels-first ``(A, C, B)``
    ``(N, C, *spatial)``: channel ``c`` is ``A`` contiguous runs of ``B``
    values. Each channel is cut into *units* of about :data:`UNIT` values
    (whole runs, or pieces of one run when runs are long), small enough
    that a unit's second pass (when one is needed) reads from the L1 cache;
    unit results are combined in unit order. With at least :data:`FUSED_MIN_CHANNELS`
    channels, one thread handles one channel at a time, statistics and then
    output, so the channel's slice is still in cache for the second pass.
    Short runs (``B <`` :data:`SHORT_RUN`) are read in memory order
    instead: tiles of whole samples reduce run by run into per-channel
    slots, merged in tile order, and the output is written run after run.

Unit and tile sizes depend on the shape only, never on the number of
threads, and merges run in a fixed order: results are bit-identical for any
thread count.

Inner loops index with unsigned integers (``_u``): Numba then knows the
index is not negative, skips its wrap-around check, and LLVM vectorizes the
loop (with signed loop bounds other than ``range(n)`` the loops ran about
four times slower).

Notes
-----
Ioffe & Szegedy (2015), Algorithm 1 and the backward pass of section 3.
Statistics are taken about a shift ``K``, the channel's first value (0
when that is inf or NaN; the shifted-data algorithm): one pass sums ``x - K`` and ``(x - K)^2`` in
float64 per unit, units are added in order, and ``m2 = S2 - S1^2 / n``.
Since ``|mu - K|`` is of the order of the spread for almost any data, this
does not cancel; where it would (``m2 <= ONE_PASS_MIN_RATIO * S2``, a
tighter bound for float64: an outlying first value, a constant channel,
NaN), the channel is recomputed
with two passes per unit (``d_u = sum(x - K) / n_u``, then ``m2_u =
sum((x - K - d_u)^2)``) merged with Chan, Golub & LeVeque's rule. Every
unit of a channel shares ``K``, so merged quantities are of the size of the
spread, not of the mean, and float32 inputs make ``x - K`` exact in
float64. A constant channel gives ``mu = K`` and ``m2 = 0`` exactly.
"""

from __future__ import annotations

import numpy as np

# The names below are this module's interface to the kernels (tests and
# warm_up read them here).
from ._jit_ncm import (  # noqa: F401
    backward_dx_ncm,
    backward_ncm_fused,
    backward_sums_ncm,
    backward_sums_ncm_rows,
    forward_ncm_fused,
    moments_ncm,
    moments_ncm_rows,
    normalize_ncm,
)
from ._jit_parts import (  # noqa: F401
    FUSED_MIN_CHANNELS,
    SHORT_RUN,
    STREAM_MIN_BYTES,
    _dx_coefficients,
    _two_sum,
)
from ._jit_rc import backward_dx_rc, backward_sums_rc, moments_rc, normalize_rc  # noqa: F401
from ._stream import LINE

# --------------------------------------------------------------------------- #
# dispatch (plain Python): the interface shared with ._reference, except
# that moments() also returns the mean's low part mu_lo
# --------------------------------------------------------------------------- #


def _streams(out) -> bool:
    """Whether ``out`` is written with streaming stores.

    Large, C-contiguous and starting on a 64-byte line (the public functions'
    outputs always do, see :mod:`._buffers`): runs and tiles are cut on
    lines from the start of ``out``, and a line written partly by streaming
    and partly by ordinary stores is slow (a (262144, 64) normalize into a
    misaligned output took 10 ms instead of 4). Never with
    ``NUMBA_DISABLE_JIT=1``: the store intrinsics exist only in compiled code.
    """
    from numba.core import config

    return (
        out.nbytes >= STREAM_MIN_BYTES
        and out.flags.c_contiguous
        and out.ctypes.data % LINE == 0
        and not config.DISABLE_JIT
    )


def _short_runs(x) -> bool:
    """Whether a channels-first array is processed in memory order (``B < SHORT_RUN``)."""
    return x.shape[2] < SHORT_RUN


def _fused(x) -> bool:
    """Whether a channels-first array runs one channel per thread (see FUSED_MIN_CHANNELS)."""
    return x.ndim == 3 and x.shape[1] >= FUSED_MIN_CHANNELS and not _short_runs(x)


def moments(x):
    """Per-channel ``(mu, m2, mu_lo)`` of an ``(R, C)`` or ``(A, C, B)`` array.

    ``mu`` is the float64 mean and ``mu_lo`` its rounding error (see
    :func:`_two_sum`): ``mu + mu_lo`` is the mean up to the float64 rounding
    of its offset from the channel's first value, not of the mean itself.
    """
    if x.ndim == 2:
        return moments_rc(x)
    return moments_ncm_rows(x) if _short_runs(x) else moments_ncm(x)


def normalize(x, mu, scale, beta, out):
    """Write ``(x - mu) * scale + beta`` into ``out``."""
    if x.ndim == 2:
        normalize_rc(x, mu, scale, beta, out, _streams(out))
    else:
        normalize_ncm(x, mu, scale, beta, out, _streams(out))


def forward_train(x, gamma, beta, eps, out):
    """Training forward; returns float64 ``(mu, m2, invstd)``."""
    if _fused(x):
        return forward_ncm_fused(x, gamma, beta, eps, out, _streams(out))
    mu, m2, mu_lo = moments(x)
    count = x.size // x.shape[1]
    invstd = 1.0 / np.sqrt(m2 / count + eps)
    scale = gamma * invstd
    normalize(x, mu, scale, beta - mu_lo * scale, out)  # the mean's low part via the shift
    return mu, m2, invstd


def backward_sums(dy, x, mu):
    """Per-channel float64 ``(sum(dy), sum(dy (x - mu)))``."""
    if x.ndim == 2:
        return backward_sums_rc(dy, x, mu)
    return backward_sums_ncm_rows(dy, x, mu) if _short_runs(x) else backward_sums_ncm(dy, x, mu)


def backward_train(dy, x, mu, invstd, gamma, out):
    """Training backward; writes ``dx`` into ``out``, returns ``(sum_dy, sum_dy_xmu)``."""
    if _fused(x):
        return backward_ncm_fused(dy, x, mu, invstd, gamma, out, _streams(out))
    s_dy, s_dyx = backward_sums(dy, x, mu)
    count = x.size // x.shape[1]
    scale = gamma * invstd
    mean_dy = s_dy / count
    k = invstd * invstd * s_dyx / count
    a_dy, b_x, c0 = _dx_coefficients(scale, mean_dy, k)
    if x.ndim == 2:
        backward_dx_rc(dy, x, mu, a_dy, b_x, c0, out, _streams(out))
    else:
        backward_dx_ncm(dy, x, mu, a_dy, b_x, c0, out, _streams(out))
    return s_dy, s_dyx
