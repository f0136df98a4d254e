"""Jitted kernels of the rows x channels layout ``(R, C)``: ``(N, C)`` and channels-last.

See :mod:`._jit` for the layouts and the algorithm.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from . import _config, _jit_parts, _stream
from ._config import jit
from ._jit_parts import (
    CHANNEL_TILE,
    FLAT_MAX_CHANNELS,
    SEGMENT,
    UNIT,
    _min_ratio,
    _one_pass_ok,
    _rc_tiling,
    _shift,
    _two_sum,
    _u,
)
from ._stream import LINE, flush_row, store_fence

# --------------------------------------------------------------------------- #
# rows x channels (R, C)
# --------------------------------------------------------------------------- #


@jit(parallel=True)
def _rc_merge_rows(part_a, part_b):
    """Per-channel sums of ``part[i, c]`` over ``i`` in order, in parallel over channel tiles."""
    n_rb, channels = part_a.shape
    cb = min(channels, CHANNEL_TILE)
    sa = np.empty(channels)
    sb = np.empty(channels)
    for tc in prange((channels + cb - 1) // cb):
        c0 = tc * cb
        nc = min(channels, c0 + cb) - c0
        for cc in range(nc):
            q = _u(c0 + cc)
            sa[q] = part_a[0, q]
            sb[q] = part_b[0, q]
        for i in range(1, n_rb):
            iu = _u(i)
            for cc in range(nc):
                q = _u(c0 + cc)
                sa[q] += part_a[iu, q]
                sb[q] += part_b[iu, q]
    return sa, sb


@jit(parallel=True)
def _rc_power_sums_tiles(x, shift):
    """Partial power sums about ``K = shift[c]``, one row per row block: ``(part_s1, part_s2)``."""
    rows, channels = x.shape
    rb, cb, n_rb, n_cb = _rc_tiling(rows, channels)
    part_s1 = np.empty((n_rb, channels))
    part_s2 = np.empty((n_rb, channels))
    for t in prange(n_rb * n_cb):
        i = t // n_cb
        iu = _u(i)
        r0 = i * rb
        r1 = min(rows, r0 + rb)
        c0 = (t % n_cb) * cb
        nc = min(channels, c0 + cb) - c0
        for cc in range(nc):
            part_s1[iu, _u(c0 + cc)] = 0.0
            part_s2[iu, _u(c0 + cc)] = 0.0
        r4 = r0 + (r1 - r0) // 4 * 4
        for r in range(r0, r4, 4):
            # four rows per sweep: a quarter of the accumulator loads and stores
            ra, rb_, rc, rd = _u(r), _u(r + 1), _u(r + 2), _u(r + 3)
            for cc in range(nc):
                q = _u(c0 + cc)
                k = shift[q]
                d0 = np.float64(x[ra, q]) - k
                d1 = np.float64(x[rb_, q]) - k
                d2 = np.float64(x[rc, q]) - k
                d3 = np.float64(x[rd, q]) - k
                part_s1[iu, q] += (d0 + d1) + (d2 + d3)
                part_s2[iu, q] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
        for r in range(r4, r1):
            ru = _u(r)
            for cc in range(nc):
                q = _u(c0 + cc)
                d = np.float64(x[ru, q]) - shift[q]
                part_s1[iu, q] += d
                part_s2[iu, q] += d * d
    return part_s1, part_s2


@jit(parallel=True)
def _rc_flat_sums(u, w, u_center, w_center):
    """Partial sums of ``u - u_center`` and ``(u - u_center) (w - w_center)``.

    One row of partial sums per row block, for ``(R, C)`` arrays with few
    channels. A run of :func:`_rc_group` rows is one flat stretch of ``P`` values; each
    row block adds its runs into ``P`` accumulators (the inner loop is ``P``
    long, not ``C``), folded into channels, in row order, at the block's end.
    Statistics: ``u = w = x`` centred on ``K``; backward: ``u = dy``
    (centre 0), ``w = x`` centred on ``mu``.
    """
    rows, channels = w.shape
    g, rb, n_rb = _rc_run_tiling(rows, channels, w.itemsize)
    n_pos = g * channels
    pu = _rc_pattern(u_center, channels, g)
    pw = _rc_pattern(w_center, channels, g)
    uf = u.reshape(-1)
    wf = w.reshape(-1)
    part_a = np.empty((n_rb, channels))
    part_b = np.empty((n_rb, channels))
    for i in prange(n_rb):
        acc_a = np.zeros(n_pos)
        acc_b = np.zeros(n_pos)
        r0 = i * rb
        r1 = min(rows, r0 + rb)
        whole = r0 + (r1 - r0) // g * g
        for r in range(r0, whole, g):
            base = r * channels
            for j in range(n_pos):
                ju = _u(j)
                v = _u(base + j)
                du = np.float64(uf[v]) - pu[ju]
                acc_a[ju] += du
                acc_b[ju] += du * (np.float64(wf[v]) - pw[ju])
        base = whole * channels
        for j in range((r1 - whole) * channels):  # rows after the last whole run
            ju = _u(j)
            v = _u(base + j)
            du = np.float64(uf[v]) - pu[ju]
            acc_a[ju] += du
            acc_b[ju] += du * (np.float64(wf[v]) - pw[ju])
        for c in range(channels):
            sa = 0.0
            sb = 0.0
            for rr in range(g):
                v = _u(rr * channels + c)
                sa += acc_a[v]
                sb += acc_b[v]
            part_a[i, c] = sa
            part_b[i, c] = sb
    return part_a, part_b


@jit()
def moments_rc(x):
    """Per-channel ``(mu, m2, mu_lo)`` of an ``(R, C)`` array: one pass, two where it cancels."""
    rows, channels = x.shape
    shift = np.empty(channels)
    for c in range(channels):
        shift[c] = _shift(x[0, _u(c)])
    if channels < FLAT_MAX_CHANNELS:
        part_s1, part_s2 = _rc_flat_sums(x, x, shift, shift)
    else:
        part_s1, part_s2 = _rc_power_sums_tiles(x, shift)
    s1, s2 = _rc_merge_rows(part_s1, part_s2)
    mu = np.empty(channels)
    m2 = np.empty(channels)
    lo = np.empty(channels)
    ok = np.empty(channels, dtype=np.bool_)
    for c in range(channels):
        accepted, d, q = _one_pass_ok(s1[c], s2[c], rows, _min_ratio(x))
        ok[c] = accepted
        mu[c], lo[c] = _two_sum(shift[c], d)
        m2[c] = q
    if not ok.all():
        mu2, m22, lo2 = _moments_rc_two_pass(x, shift)
        for c in range(channels):
            if not ok[c]:
                mu[c] = mu2[c]
                m2[c] = m22[c]
                lo[c] = lo2[c]
    return mu, m2, lo


@jit(parallel=True)
def _moments_rc_two_pass(x, shift):
    """Per-channel ``(mu, m2, mu_lo)`` of an ``(R, C)`` array, two passes per tile.

    Tiles of ``UNIT`` values: the second pass reads from L1, and each tile's
    mean is a short sum (this path runs where ``x - K`` cancels, and its
    means are accurate to a few ulp).
    """
    rows, channels = x.shape
    rb, cb, n_rb, n_cb = _rc_tiling(rows, channels, UNIT)
    part_mu = np.empty((n_rb, channels))
    part_m2 = np.empty((n_rb, channels))
    for t in prange(n_rb * n_cb):
        i = t // n_cb
        iu = _u(i)
        r0 = i * rb
        r1 = min(rows, r0 + rb)
        c0 = (t % n_cb) * cb
        nc = min(channels, c0 + cb) - c0
        for cc in range(nc):
            part_mu[iu, _u(c0 + cc)] = 0.0
            part_m2[iu, _u(c0 + cc)] = 0.0
        for r in range(r0, r1):
            ru = _u(r)
            for cc in range(nc):
                q = _u(c0 + cc)
                part_mu[iu, q] += np.float64(x[ru, q]) - shift[q]
        inv_n = 1.0 / (r1 - r0)
        for cc in range(nc):
            q = _u(c0 + cc)
            part_mu[iu, q] *= inv_n
        for r in range(r0, r1):
            ru = _u(r)
            for cc in range(nc):
                q = _u(c0 + cc)
                d = (np.float64(x[ru, q]) - shift[q]) - part_mu[iu, q]
                part_m2[iu, q] += d * d
    mu = np.empty(channels)
    m2 = np.empty(channels)
    lo = np.empty(channels)
    # merge the row blocks in order, in parallel over channel tiles
    for tc in prange(n_cb):
        c0 = tc * cb
        nc = min(channels, c0 + cb) - c0
        for cc in range(nc):
            q = _u(c0 + cc)
            mu[q] = part_mu[0, q]
            m2[q] = part_m2[0, q]
        n_a = min(rows, rb)
        for i in range(1, n_rb):
            iu = _u(i)
            n_b = min(rows, (i + 1) * rb) - i * rb
            n = n_a + n_b
            w = n_b / n
            w2 = n_a * w
            for cc in range(nc):
                q = _u(c0 + cc)
                d = part_mu[iu, q] - mu[q]
                mu[q] += d * w
                m2[q] += part_m2[iu, q] + d * d * w2
            n_a = n
        for cc in range(nc):
            q = _u(c0 + cc)
            mu[q], lo[q] = _two_sum(shift[q], mu[q])
    return mu, m2, lo


@jit()
def _runs_per_line_block(run, itemsize):
    """Fewest runs of ``run`` values whose bytes are a whole number of lines."""
    per_line = LINE // itemsize
    a, b = run, per_line
    while b:
        a, b = b, a % b
    return per_line // a


@jit()
def _rc_group(channels, itemsize):
    """Rows per flat run of an ``(R, C)`` array.

    About ``SEGMENT // C`` rows, rounded to a multiple of the rows after
    which a run ends on a 64-byte line (so that runs of a line-aligned
    output never share a line); one row when ``C >= SEGMENT``.
    """
    if channels >= SEGMENT:
        return 1
    aligned = _runs_per_line_block(channels, itemsize)
    return max(aligned, SEGMENT // channels // aligned * aligned)


@jit()
def _rc_run_tiling(rows, channels, itemsize):
    """``(rows per run, rows per tile, tiles)`` of an elementwise ``(R, C)`` kernel.

    Tiles are whole runs, so on a line-aligned output each tile (thread
    task) starts on a line too.
    """
    g = _rc_group(channels, itemsize)
    rb = (_rc_tiling(rows, channels)[0] + g - 1) // g * g
    return g, rb, (rows + rb - 1) // rb


@jit()
def _rc_pattern(values, channels, group):
    """Per-channel ``values`` repeated for ``group`` rows (flat, float64)."""
    pattern = np.empty(group * channels)
    for rr in range(group):
        for c in range(channels):
            pattern[_u(rr * channels + c)] = values[_u(c)]
    return pattern


@jit(parallel=True, elementwise=True)
def normalize_rc(x, mu, scale, beta, out, stream):
    """``out = (x - mu) * scale + beta`` per channel, float64 then rounded once.

    Rows are C-contiguous, so a group of :func:`_rc_group` rows is one flat
    run, processed ``SEGMENT`` values at a time; the per-channel factors are
    repeated to the run's length, so the inner loop is contiguous whatever
    ``C`` is (a loop over three channels would not vectorize). ``stream``: write ``out`` with
    streaming stores, see :mod:`._stream`.
    """
    rows, channels = x.shape
    g, rb, n_rb = _rc_run_tiling(rows, channels, out.itemsize)
    pm = _rc_pattern(mu, channels, g)
    ps = _rc_pattern(scale, channels, g)
    pb = _rc_pattern(beta, channels, g)
    xf = x.reshape(-1)
    of = out.reshape(-1)
    for i in prange(n_rb):
        buf = np.empty(SEGMENT if stream else 0, out.dtype)
        r0 = i * rb
        r1 = min(rows, r0 + rb)
        for r in range(r0, r1, g):
            base = r * channels
            n_all = min(g, r1 - r) * channels
            if not stream:
                for jj in range(n_all):
                    j = _u(jj)
                    v = _u(base + jj)
                    of[v] = (np.float64(xf[v]) - pm[j]) * ps[j] + pb[j]
                continue
            for j0 in range(0, n_all, SEGMENT):
                n = min(SEGMENT, n_all - j0)
                o = base + j0
                for jj in range(n):
                    j = _u(j0 + jj)
                    buf[_u(jj)] = (np.float64(xf[_u(o + jj)]) - pm[j]) * ps[j] + pb[j]
                flush_row(of[o:o + n], buf, n)
        if stream:
            store_fence()


@jit(parallel=True)
def _rc_backward_sums_tiles(dy, x, mu):
    """Partial ``sum(dy)`` and ``sum(dy (x - mu))``, one row per row block."""
    rows, channels = x.shape
    rb, cb, n_rb, n_cb = _rc_tiling(rows, channels)
    part_dy = np.empty((n_rb, channels))
    part_dyx = np.empty((n_rb, channels))
    for t in prange(n_rb * n_cb):
        i = t // n_cb
        iu = _u(i)
        r0 = i * rb
        r1 = min(rows, r0 + rb)
        c0 = (t % n_cb) * cb
        nc = min(channels, c0 + cb) - c0
        for cc in range(nc):
            part_dy[iu, _u(c0 + cc)] = 0.0
            part_dyx[iu, _u(c0 + cc)] = 0.0
        r4 = r0 + (r1 - r0) // 4 * 4
        for r in range(r0, r4, 4):
            ra, rb_, rc, rd = _u(r), _u(r + 1), _u(r + 2), _u(r + 3)
            for cc in range(nc):
                q = _u(c0 + cc)
                m = mu[q]
                g0 = np.float64(dy[ra, q])
                g1 = np.float64(dy[rb_, q])
                g2 = np.float64(dy[rc, q])
                g3 = np.float64(dy[rd, q])
                part_dy[iu, q] += (g0 + g1) + (g2 + g3)
                part_dyx[iu, q] += (
                    g0 * (np.float64(x[ra, q]) - m) + g1 * (np.float64(x[rb_, q]) - m)
                ) + (g2 * (np.float64(x[rc, q]) - m) + g3 * (np.float64(x[rd, q]) - m))
        for r in range(r4, r1):
            ru = _u(r)
            for cc in range(nc):
                q = _u(c0 + cc)
                g = np.float64(dy[ru, q])
                part_dy[iu, q] += g
                part_dyx[iu, q] += g * (np.float64(x[ru, q]) - mu[q])
    return part_dy, part_dyx


@jit()
def backward_sums_rc(dy, x, mu):
    """Per-channel ``sum(dy)`` and ``sum(dy (x - mu))`` of ``(R, C)`` arrays."""
    if x.shape[1] < FLAT_MAX_CHANNELS:
        part_dy, part_dyx = _rc_flat_sums(dy, x, np.zeros(x.shape[1]), mu)
    else:
        part_dy, part_dyx = _rc_backward_sums_tiles(dy, x, mu)
    return _rc_merge_rows(part_dy, part_dyx)


@jit(parallel=True, elementwise=True)
def backward_dx_rc(dy, x, mu, a_dy, b_x, c0, out, stream):
    """``out = a_dy dy + (b_x (x - mu) + c0)`` per channel (the input gradient).

    Flat runs and ``stream`` as in :func:`normalize_rc`.
    """
    rows, channels = x.shape
    g, rb, n_rb = _rc_run_tiling(rows, channels, out.itemsize)
    pm = _rc_pattern(mu, channels, g)
    pa = _rc_pattern(a_dy, channels, g)
    pb = _rc_pattern(b_x, channels, g)
    pc = _rc_pattern(c0, channels, g)
    xf = x.reshape(-1)
    gf = dy.reshape(-1)
    of = out.reshape(-1)
    for i in prange(n_rb):
        buf = np.empty(SEGMENT if stream else 0, out.dtype)
        r0 = i * rb
        r1 = min(rows, r0 + rb)
        for r in range(r0, r1, g):
            base = r * channels
            n_all = min(g, r1 - r) * channels
            if not stream:
                for jj in range(n_all):
                    j = _u(jj)
                    v = _u(base + jj)
                    of[v] = pa[j] * np.float64(gf[v]) + (
                        pb[j] * (np.float64(xf[v]) - pm[j]) + pc[j])
                continue
            for j0 in range(0, n_all, SEGMENT):
                n = min(SEGMENT, n_all - j0)
                o = base + j0
                for jj in range(n):
                    j = _u(j0 + jj)
                    v = _u(o + jj)
                    buf[_u(jj)] = pa[j] * np.float64(gf[v]) + (
                        pb[j] * (np.float64(xf[v]) - pm[j]) + pc[j])
                flush_row(of[o:o + n], buf, n)
        if stream:
            store_fence()


# kernels above inline _stream's functions, _config's options and the shared
# pieces of _jit_parts (see _config)
_config.drop_stale_caches(globals(), [_config, _jit_parts, _stream])
