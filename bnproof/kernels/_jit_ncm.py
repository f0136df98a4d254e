"""Jitted kernels of the channels-first layout ``(A, C, B)``: ``(N, C, *spatial)``.

See :mod:`._jit` for the layouts and the algorithm.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from . import _config, _jit_parts, _jit_rc, _stream
from ._config import jit
from ._jit_parts import (
    RC_TILE_VALUES,
    SEGMENT,
    UNIT,
    _dx_coefficients,
    _min_ratio,
    _ncm_channel_dx,
    _ncm_channel_moments,
    _ncm_channel_normalize,
    _ncm_channel_stats,
    _ncm_channel_sums,
    _ncm_unit_bounds,
    _ncm_unit_power_sums,
    _ncm_unit_sums,
    _ncm_units,
    _one_pass_ok,
    _shift,
    _two_sum,
    _u,
)
from ._jit_rc import _runs_per_line_block
from ._stream import flush_row, store_fence

# --------------------------------------------------------------------------- #
# channels-first (A, C, B)
# --------------------------------------------------------------------------- #


@jit(parallel=True)
def _ncm_finish_moments(x, part_s1, part_s2):
    """``(mu, m2, mu_lo)`` from per-channel partial power sums ``part[c, k]``.

    The sums are about ``K = x[0, c, 0]`` and are added in ``k`` order; a
    channel where that cancels is recomputed with two passes.
    """
    a_len, channels, b_len = x.shape
    mu = np.empty(channels)
    m2 = np.empty(channels)
    lo = np.empty(channels)
    for c in prange(channels):
        cu = _u(c)
        s1 = 0.0
        s2 = 0.0
        for k in range(part_s1.shape[1]):
            s1 += part_s1[cu, _u(k)]
            s2 += part_s2[cu, _u(k)]
        ok, d, q = _one_pass_ok(s1, s2, a_len * b_len, _min_ratio(x))
        if ok:
            mu[c], lo[c] = _two_sum(_shift(x[0, cu, 0]), d)
            m2[c] = q
        else:
            runs, pieces, n_units = _ncm_units(a_len, b_len)
            mu[c], m2[c], lo[c] = _ncm_channel_moments(x, c, runs, pieces, n_units)
    return mu, m2, lo


@jit(parallel=True)
def _sum_parts(part_a, part_b):
    """Per-channel sums of ``part[c, k]`` over ``k``, in order."""
    channels, n_parts = part_a.shape
    sa = np.empty(channels)
    sb = np.empty(channels)
    for c in prange(channels):
        cu = _u(c)
        s1 = 0.0
        s2 = 0.0
        for k in range(n_parts):
            s1 += part_a[cu, _u(k)]
            s2 += part_b[cu, _u(k)]
        sa[c] = s1
        sb[c] = s2
    return sa, sb


@jit(parallel=True)
def moments_ncm(x):
    """Per-channel ``(mu, m2, mu_lo)`` of an ``(A, C, B)`` array, parallel over units.

    The same arithmetic in the same order as ``_ncm_channel_stats``, so both
    give bit-identical results.
    """
    a_len, channels, b_len = x.shape
    runs, pieces, n_units = _ncm_units(a_len, b_len)
    part_s1 = np.empty((channels, n_units))
    part_s2 = np.empty((channels, n_units))
    for t in prange(channels * n_units):
        c = t // n_units
        k = t % n_units
        a0, a1, b0, b1 = _ncm_unit_bounds(k, a_len, b_len, runs, pieces)
        p1, p2 = _ncm_unit_power_sums(x, c, _shift(x[0, _u(c), 0]), a0, a1, b0, b1)
        part_s1[c, k] = p1
        part_s2[c, k] = p2
    return _ncm_finish_moments(x, part_s1, part_s2)


@jit()
def _ncm_row_tiling(a_len, channels, b_len):
    """Tiles of a short-run ``(A, C, B)`` array: ``(ab, cb, n_ab, n_cb)``.

    A tile is ``ab`` whole samples (``cb = C``) or, when one sample has
    more than ``RC_TILE_VALUES`` values, ``cb`` channels of one sample.
    """
    per_sample = channels * b_len
    if per_sample <= RC_TILE_VALUES:
        ab = RC_TILE_VALUES // per_sample
        cb = channels
    else:
        ab = 1
        cb = max(1, RC_TILE_VALUES // b_len)
    return ab, cb, (a_len + ab - 1) // ab, (channels + cb - 1) // cb


@jit(parallel=True)
def moments_ncm_rows(x):
    """Per-channel ``(mu, m2, mu_lo)`` of a short-run ``(A, C, B)`` array, in memory order.

    Each tile (see :func:`_ncm_row_tiling`) adds the power sums of its runs
    about ``K``, run by run in sample order, into its own slot; slots are
    added in tile order. For inputs with ``B < SHORT_RUN``.
    """
    a_len, channels, b_len = x.shape
    ab, cb, n_ab, n_cb = _ncm_row_tiling(a_len, channels, b_len)
    part_s1 = np.zeros((channels, n_ab))
    part_s2 = np.zeros((channels, n_ab))
    for t in prange(n_ab * n_cb):
        i = _u(t // n_cb)
        c0 = (t % n_cb) * cb
        for a in range(i * ab, min(a_len, (i + 1) * ab)):
            for c in range(c0, min(channels, c0 + cb)):
                cu = _u(c)
                p1, p2 = _ncm_unit_power_sums(x, c, _shift(x[0, cu, 0]), a, a + 1, 0, b_len)
                part_s1[cu, i] += p1
                part_s2[cu, i] += p2
    return _ncm_finish_moments(x, part_s1, part_s2)


@jit()
def _ncm_task_groups(a_len, channels, b_len, itemsize):
    """``(pieces per run, tasks per group, tasks, groups)`` of an ``(A, C, B)`` array.

    A task is one piece (at most ``UNIT`` values) of one run ``[a, c, :]``;
    a group is about ``UNIT`` values of consecutive tasks, so that short
    runs do not cost a parallel task each. When runs are not cut
    (``B <= UNIT``) a group is one flat stretch of memory, and its length is
    a whole number of 64-byte lines (so streamed groups never share one).
    """
    pieces = (b_len + UNIT - 1) // UNIT
    per = max(1, UNIT // min(b_len, UNIT))
    if pieces == 1:
        aligned = _runs_per_line_block(b_len, itemsize)
        per = (per + aligned - 1) // aligned * aligned
    n_tasks = a_len * channels * pieces
    return pieces, per, n_tasks, (n_tasks + per - 1) // per


@jit()
def _ncm_task(t, pieces, channels, b_len):
    """Run ``(a, c)`` (unsigned) and value range ``[b0, b1)`` of task ``t``."""
    ac = t // pieces
    b0 = (t % pieces) * UNIT
    return _u(ac // channels), _u(ac % channels), b0, min(b_len, b0 + UNIT)


@jit(parallel=True, elementwise=True)
def normalize_ncm(x, mu, scale, beta, out, stream):
    """``out = (x - mu) * scale + beta`` per channel of ``(A, C, B)`` arrays.

    ``stream``: write ``out`` (C-contiguous) with streaming stores (see
    :mod:`._stream`); groups of whole runs are one flat stretch, filled
    ``SEGMENT`` values at a time across run boundaries.
    """
    a_len, channels, b_len = x.shape
    pieces, per, n_tasks, n_groups = _ncm_task_groups(a_len, channels, b_len, out.itemsize)
    flat = out.reshape(-1)
    for grp in prange(n_groups):
        buf = np.empty(SEGMENT if stream else 0, out.dtype)
        t0 = grp * per
        pos = 0
        start = t0 * b_len
        for t in range(t0, min(n_tasks, t0 + per)):
            au, cu, b0, b1 = _ncm_task(t, pieces, channels, b_len)
            m = mu[cu]
            sc = scale[cu]
            sh = beta[cu]
            if not stream:
                for j in range(b0, b1):
                    ju = _u(j)
                    out[au, cu, ju] = (np.float64(x[au, cu, ju]) - m) * sc + sh
            elif pieces == 1:
                j = 0
                while j < b_len:
                    n = min(b_len - j, SEGMENT - pos)
                    for jj in range(n):
                        buf[_u(pos + jj)] = (np.float64(x[au, cu, _u(j + jj)]) - m) * sc + sh
                    pos += n
                    j += n
                    if pos == SEGMENT:
                        flush_row(flat[start:start + SEGMENT], buf, SEGMENT)
                        start += SEGMENT
                        pos = 0
            else:
                for s0 in range(b0, b1, SEGMENT):
                    n = min(SEGMENT, b1 - s0)
                    for jj in range(n):
                        buf[_u(jj)] = (np.float64(x[au, cu, _u(s0 + jj)]) - m) * sc + sh
                    flush_row(out[au, cu, s0:s0 + n], buf, n)
        if stream:
            if pos > 0:
                flush_row(flat[start:start + pos], buf, pos)
            store_fence()


@jit(parallel=True)
def forward_ncm_fused(x, gamma, beta, eps, out, stream):
    """Training forward, one channel per thread at a time: ``(mu, m2, invstd)``.

    ``stream``: write ``out`` with streaming stores (see :mod:`._stream`).
    """
    a_len, channels, b_len = x.shape
    runs, pieces, n_units = _ncm_units(a_len, b_len)
    count = a_len * b_len
    mu = np.empty(channels)
    m2 = np.empty(channels)
    invstd = np.empty(channels)
    for c in prange(channels):
        buf = np.empty(SEGMENT if stream else 0, out.dtype)
        m, s2, lo = _ncm_channel_stats(x, c, runs, pieces, n_units)
        inv = 1.0 / np.sqrt(s2 / count + eps)
        mu[c] = m
        m2[c] = s2
        invstd[c] = inv
        scale = gamma[c] * inv
        # (x - m) * scale + beta - lo * scale: the mean's low part through the shift
        _ncm_channel_normalize(x, c, m, scale, beta[c] - lo * scale, out, buf, stream)
        if stream:
            store_fence()
    return mu, m2, invstd


@jit(parallel=True)
def backward_sums_ncm(dy, x, mu):
    """Per-channel ``sum(dy)`` and ``sum(dy (x - mu))``, parallel over units."""
    a_len, channels, b_len = x.shape
    runs, pieces, n_units = _ncm_units(a_len, b_len)
    part_dy = np.empty((channels, n_units))
    part_dyx = np.empty((channels, n_units))
    for t in prange(channels * n_units):
        c = t // n_units
        k = t % n_units
        a0, a1, b0, b1 = _ncm_unit_bounds(k, a_len, b_len, runs, pieces)
        p1, p2 = _ncm_unit_sums(dy, x, c, mu[c], a0, a1, b0, b1)
        part_dy[c, k] = p1
        part_dyx[c, k] = p2
    return _sum_parts(part_dy, part_dyx)


@jit(parallel=True)
def backward_sums_ncm_rows(dy, x, mu):
    """``sum(dy)`` and ``sum(dy (x - mu))`` of a short-run ``(A, C, B)`` array.

    Tiles and order as in :func:`moments_ncm_rows`.
    """
    a_len, channels, b_len = x.shape
    ab, cb, n_ab, n_cb = _ncm_row_tiling(a_len, channels, b_len)
    part_dy = np.zeros((channels, n_ab))
    part_dyx = np.zeros((channels, n_ab))
    for t in prange(n_ab * n_cb):
        i = _u(t // n_cb)
        c0 = (t % n_cb) * cb
        for a in range(i * ab, min(a_len, (i + 1) * ab)):
            for c in range(c0, min(channels, c0 + cb)):
                cu = _u(c)
                p1, p2 = _ncm_unit_sums(dy, x, c, mu[cu], a, a + 1, 0, b_len)
                part_dy[cu, i] += p1
                part_dyx[cu, i] += p2
    return _sum_parts(part_dy, part_dyx)


@jit(parallel=True, elementwise=True)
def backward_dx_ncm(dy, x, mu, a_dy, b_x, c0, out, stream):
    """``out = a_dy dy + (b_x (x - mu) + c0)`` per channel of ``(A, C, B)`` (the input gradient).

    Task groups and ``stream`` as in :func:`normalize_ncm`.
    """
    a_len, channels, b_len = x.shape
    pieces, per, n_tasks, n_groups = _ncm_task_groups(a_len, channels, b_len, out.itemsize)
    flat = out.reshape(-1)
    for grp in prange(n_groups):
        buf = np.empty(SEGMENT if stream else 0, out.dtype)
        t0 = grp * per
        pos = 0
        start = t0 * b_len
        for t in range(t0, min(n_tasks, t0 + per)):
            au, cu, b0, b1 = _ncm_task(t, pieces, channels, b_len)
            cm = mu[cu]
            ca = a_dy[cu]
            cb = b_x[cu]
            cc = c0[cu]
            if not stream:
                for j in range(b0, b1):
                    ju = _u(j)
                    out[au, cu, ju] = ca * np.float64(dy[au, cu, ju]) + (
                        cb * (np.float64(x[au, cu, ju]) - cm) + cc)
            elif pieces == 1:
                j = 0
                while j < b_len:
                    n = min(b_len - j, SEGMENT - pos)
                    for jj in range(n):
                        ju = _u(j + jj)
                        buf[_u(pos + jj)] = ca * np.float64(dy[au, cu, ju]) + (
                            cb * (np.float64(x[au, cu, ju]) - cm) + cc)
                    pos += n
                    j += n
                    if pos == SEGMENT:
                        flush_row(flat[start:start + SEGMENT], buf, SEGMENT)
                        start += SEGMENT
                        pos = 0
            else:
                for s0 in range(b0, b1, SEGMENT):
                    n = min(SEGMENT, b1 - s0)
                    for jj in range(n):
                        ju = _u(s0 + jj)
                        buf[_u(jj)] = ca * np.float64(dy[au, cu, ju]) + (
                            cb * (np.float64(x[au, cu, ju]) - cm) + cc)
                    flush_row(out[au, cu, s0:s0 + n], buf, n)
        if stream:
            if pos > 0:
                flush_row(flat[start:start + pos], buf, pos)
            store_fence()


@jit(parallel=True)
def backward_ncm_fused(dy, x, mu, invstd, gamma, out, stream):
    """Training backward, one channel per thread at a time: ``(sum_dy, sum_dy_xmu)``.

    ``stream``: write ``out`` with streaming stores (see :mod:`._stream`).
    """
    a_len, channels, b_len = x.shape
    runs, pieces, n_units = _ncm_units(a_len, b_len)
    count = a_len * b_len
    s_dy = np.empty(channels)
    s_dyx = np.empty(channels)
    for c in prange(channels):
        buf = np.empty(SEGMENT if stream else 0, out.dtype)
        m = mu[c]
        p1, p2 = _ncm_channel_sums(dy, x, c, m, runs, pieces, n_units)
        s_dy[c] = p1
        s_dyx[c] = p2
        inv = invstd[c]
        a_dy, b_x, c0 = _dx_coefficients(gamma[c] * inv, p1 / count, inv * inv * p2 / count)
        _ncm_channel_dx(dy, x, c, m, a_dy, b_x, c0, out, buf, stream)
        if stream:
            store_fence()
    return s_dy, s_dyx


# kernels above inline _stream's functions, _config's options and the shared
# pieces of _jit_parts and _jit_rc (see _config)
_config.drop_stale_caches(globals(), [_config, _jit_parts, _jit_rc, _stream])
