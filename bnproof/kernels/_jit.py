"""Jitted bodies of the batch-normalization kernels (trust their inputs).

Two memory layouts cover every public layout (see :mod:`._reference`):

rows x channels ``(R, C)``
    ``(N, C)`` and channels-last ``(N, *spatial, C)``. Work is split into
    tiles of ``rows x channels``; each tile reduces along its rows with the
    channels in SIMD lanes, writes its partial result to its own slot, and
    the slots are merged in row-block order.
channels-first ``(A, C, B)``
    ``(N, C, *spatial)``: channel ``c`` is ``A`` contiguous runs of ``B``
    values. Each channel is cut into blocks of about :data:`BLOCK` values
    (whole runs, or pieces of one run when runs are long); block partials
    are merged in block order. With at least :data:`FUSED_MIN_CHANNELS`
    channels, one thread handles one channel at a time, statistics and then
    output, so the channel's slice is still in cache for the second pass.

Block and tile sizes depend on the shape only, never on the number of
threads, and merges run in a fixed order: results are bit-identical for any
thread count.

Notes
-----
Ioffe & Szegedy (2015), Algorithm 1 and the backward pass of section 3.
Block statistics use a two-pass algorithm shifted by the block's first value
``K``: ``mu_b = K + sum(x - K) / n_b``, ``m2_b = sum((x - mu_b)^2)``, all in
float64. A constant block gives ``mu_b = K`` and ``m2_b = 0`` exactly. Blocks
merge with Chan, Golub & LeVeque's rule.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._config import jit

#: Values per statistics block (64 KiB of float32): a block is read twice,
#: the second time from the core's L2 cache.
BLOCK = 16384

#: Channels per tile in the rows x channels layout (SIMD lanes, L1 accumulators).
CHANNEL_TILE = 256

#: Channels-first inputs with at least this many channels run statistics and
#: output of one channel on one thread (cache-resident second pass); fewer
#: channels are split into blocks so that every thread has work.
FUSED_MIN_CHANNELS = 16


# --------------------------------------------------------------------------- #
# helpers (inlined into the parallel kernels)
# --------------------------------------------------------------------------- #


@jit()
def _rc_tiling(rows, channels):
    """Tile sizes and counts for an ``(R, C)`` array: ``(rb, cb, n_rb, n_cb)``."""
    cb = min(channels, CHANNEL_TILE)
    rb = max(1, BLOCK // cb)
    return rb, cb, (rows + rb - 1) // rb, (channels + cb - 1) // cb


@jit()
def _ncm_blocking(a_len, b_len):
    """Blocks of one channel of ``(A, C, B)``: ``(runs per block, pieces per run, n_blocks)``.

    Short runs (``B < BLOCK``) are grouped ``BLOCK // B`` per block; long runs
    are cut into ``ceil(B / BLOCK)`` pieces, one block each.
    """
    if b_len >= BLOCK:
        pieces = (b_len + BLOCK - 1) // BLOCK
        return 1, pieces, a_len * pieces
    runs = BLOCK // b_len
    return runs, 1, (a_len + runs - 1) // runs


@jit()
def _ncm_block_bounds(k, a_len, b_len, runs, pieces):
    """Index ranges ``(a0, a1, b0, b1)`` of block ``k`` of a channel."""
    if pieces > 1:
        a0 = k // pieces
        b0 = (k % pieces) * BLOCK
        return a0, a0 + 1, b0, min(b_len, b0 + BLOCK)
    a0 = k * runs
    return a0, min(a_len, a0 + runs), 0, b_len


@jit()
def _ncm_block_moments(x, c, a0, a1, b0, b1):
    """Shifted two-pass ``(n, mu, m2)`` of ``x[a0:a1, c, b0:b1]`` in float64."""
    shift = np.float64(x[a0, c, b0])
    s = 0.0
    for a in range(a0, a1):
        for j in range(b0, b1):
            s += np.float64(x[a, c, j]) - shift
    n = (a1 - a0) * (b1 - b0)
    mu = shift + s / n
    m2 = 0.0
    for a in range(a0, a1):
        for j in range(b0, b1):
            d = np.float64(x[a, c, j]) - mu
            m2 += d * d
    return n, mu, m2


@jit()
def _chan_merge(n_a, mu_a, m2_a, n_b, mu_b, m2_b):
    """Chan-Golub-LeVeque merge of two ``(n, mu, m2)`` records."""
    n = n_a + n_b
    d = mu_b - mu_a
    w = n_b / n
    return n, mu_a + d * w, m2_a + m2_b + d * d * (n_a * w)


@jit()
def _ncm_channel_moments(x, c, runs, pieces, n_blocks):
    """Moments of channel ``c`` of ``(A, C, B)``, blocks merged in order."""
    a_len, _, b_len = x.shape
    a0, a1, b0, b1 = _ncm_block_bounds(0, a_len, b_len, runs, pieces)
    n, mu, m2 = _ncm_block_moments(x, c, a0, a1, b0, b1)
    for k in range(1, n_blocks):
        a0, a1, b0, b1 = _ncm_block_bounds(k, a_len, b_len, runs, pieces)
        n_b, mu_b, m2_b = _ncm_block_moments(x, c, a0, a1, b0, b1)
        n, mu, m2 = _chan_merge(n, mu, m2, n_b, mu_b, m2_b)
    return mu, m2


@jit()
def _ncm_block_sums(dy, x, c, mu, a0, a1, b0, b1):
    """``sum(dy)`` and ``sum(dy * (x - mu))`` over one block, float64."""
    s_dy = 0.0
    s_dyx = 0.0
    for a in range(a0, a1):
        for j in range(b0, b1):
            g = np.float64(dy[a, c, j])
            s_dy += g
            s_dyx += g * (np.float64(x[a, c, j]) - mu)
    return s_dy, s_dyx


@jit()
def _ncm_channel_sums(dy, x, c, mu, runs, pieces, n_blocks):
    a_len, _, b_len = x.shape
    s_dy = 0.0
    s_dyx = 0.0
    for k in range(n_blocks):
        a0, a1, b0, b1 = _ncm_block_bounds(k, a_len, b_len, runs, pieces)
        p_dy, p_dyx = _ncm_block_sums(dy, x, c, mu, a0, a1, b0, b1)
        s_dy += p_dy
        s_dyx += p_dyx
    return s_dy, s_dyx


# --------------------------------------------------------------------------- #
# rows x channels (R, C)
# --------------------------------------------------------------------------- #


@jit(parallel=True)
def moments_rc(x):
    """Per-channel ``(mu, m2)`` of an ``(R, C)`` array."""
    rows, channels = x.shape
    rb, cb, n_rb, n_cb = _rc_tiling(rows, channels)
    part_mu = np.empty((n_rb, channels))
    part_m2 = np.empty((n_rb, channels))
    for t in prange(n_rb * n_cb):
        i = t // n_cb
        r0 = i * rb
        r1 = min(rows, r0 + rb)
        c0 = (t % n_cb) * cb
        c1 = min(channels, c0 + cb)
        pm = part_mu[i]
        pm2 = part_m2[i]
        for c in range(c0, c1):
            pm[c] = 0.0
        for r in range(r0, r1):
            for c in range(c0, c1):
                pm[c] += np.float64(x[r, c]) - np.float64(x[r0, c])
        inv_n = 1.0 / (r1 - r0)
        for c in range(c0, c1):
            pm[c] = np.float64(x[r0, c]) + pm[c] * inv_n
            pm2[c] = 0.0
        for r in range(r0, r1):
            for c in range(c0, c1):
                d = np.float64(x[r, c]) - pm[c]
                pm2[c] += d * d
    mu = part_mu[0].copy()
    m2 = part_m2[0].copy()
    n_a = min(rows, rb)
    for i in range(1, n_rb):
        n_b = min(rows, (i + 1) * rb) - i * rb
        n = n_a + n_b
        w = n_b / n
        w2 = n_a * w
        for c in range(channels):
            d = part_mu[i, c] - mu[c]
            mu[c] += d * w
            m2[c] += part_m2[i, c] + d * d * w2
        n_a = n
    return mu, m2


@jit(parallel=True)
def normalize_rc(x, mu, scale, beta, out):
    """``out = (x - mu) * scale + beta`` per channel, float64 then rounded once."""
    rows, channels = x.shape
    rb, cb, n_rb, n_cb = _rc_tiling(rows, channels)
    for t in prange(n_rb * n_cb):
        r0 = (t // n_cb) * rb
        r1 = min(rows, r0 + rb)
        c0 = (t % n_cb) * cb
        c1 = min(channels, c0 + cb)
        for r in range(r0, r1):
            for c in range(c0, c1):
                out[r, c] = (np.float64(x[r, c]) - mu[c]) * scale[c] + beta[c]


@jit(parallel=True)
def backward_sums_rc(dy, x, mu):
    """Per-channel ``sum(dy)`` and ``sum(dy (x - mu))`` of ``(R, C)`` arrays."""
    rows, channels = x.shape
    rb, cb, n_rb, n_cb = _rc_tiling(rows, channels)
    part_dy = np.empty((n_rb, channels))
    part_dyx = np.empty((n_rb, channels))
    for t in prange(n_rb * n_cb):
        i = t // n_cb
        r0 = i * rb
        r1 = min(rows, r0 + rb)
        c0 = (t % n_cb) * cb
        c1 = min(channels, c0 + cb)
        p1 = part_dy[i]
        p2 = part_dyx[i]
        for c in range(c0, c1):
            p1[c] = 0.0
            p2[c] = 0.0
        for r in range(r0, r1):
            for c in range(c0, c1):
                g = np.float64(dy[r, c])
                p1[c] += g
                p2[c] += g * (np.float64(x[r, c]) - mu[c])
    s_dy = part_dy[0].copy()
    s_dyx = part_dyx[0].copy()
    for i in range(1, n_rb):
        for c in range(channels):
            s_dy[c] += part_dy[i, c]
            s_dyx[c] += part_dyx[i, c]
    return s_dy, s_dyx


@jit(parallel=True)
def backward_dx_rc(dy, x, mu, scale, mean_dy, k, out):
    """``out = scale (dy - mean_dy - (x - mu) k)`` per channel."""
    rows, channels = x.shape
    rb, cb, n_rb, n_cb = _rc_tiling(rows, channels)
    for t in prange(n_rb * n_cb):
        r0 = (t // n_cb) * rb
        r1 = min(rows, r0 + rb)
        c0 = (t % n_cb) * cb
        c1 = min(channels, c0 + cb)
        for r in range(r0, r1):
            for c in range(c0, c1):
                out[r, c] = scale[c] * (
                    np.float64(dy[r, c]) - mean_dy[c] - (np.float64(x[r, c]) - mu[c]) * k[c]
                )


# --------------------------------------------------------------------------- #
# channels-first (A, C, B)
# --------------------------------------------------------------------------- #


@jit(parallel=True)
def moments_ncm(x):
    """Per-channel ``(mu, m2)`` of an ``(A, C, B)`` array, parallel over blocks."""
    a_len, channels, b_len = x.shape
    runs, pieces, n_blocks = _ncm_blocking(a_len, b_len)
    part_n = np.empty((channels, n_blocks), dtype=np.int64)
    part_mu = np.empty((channels, n_blocks))
    part_m2 = np.empty((channels, n_blocks))
    for t in prange(channels * n_blocks):
        c = t // n_blocks
        k = t % n_blocks
        a0, a1, b0, b1 = _ncm_block_bounds(k, a_len, b_len, runs, pieces)
        n, m, s2 = _ncm_block_moments(x, c, a0, a1, b0, b1)
        part_n[c, k] = n
        part_mu[c, k] = m
        part_m2[c, k] = s2
    mu = np.empty(channels)
    m2 = np.empty(channels)
    for c in prange(channels):
        n = part_n[c, 0]
        m = part_mu[c, 0]
        s2 = part_m2[c, 0]
        for k in range(1, n_blocks):
            n, m, s2 = _chan_merge(n, m, s2, part_n[c, k], part_mu[c, k], part_m2[c, k])
        mu[c] = m
        m2[c] = s2
    return mu, m2


@jit(parallel=True)
def normalize_ncm(x, mu, scale, beta, out):
    """``out = (x - mu) * scale + beta`` per channel of ``(A, C, B)`` arrays."""
    a_len, channels, b_len = x.shape
    pieces = (b_len + BLOCK - 1) // BLOCK
    for t in prange(a_len * channels * pieces):
        p = t % pieces
        ac = t // pieces
        c = ac % channels
        a = ac // channels
        b0 = p * BLOCK
        b1 = min(b_len, b0 + BLOCK)
        m = mu[c]
        s = scale[c]
        sh = beta[c]
        for j in range(b0, b1):
            out[a, c, j] = (np.float64(x[a, c, j]) - m) * s + sh


@jit(parallel=True)
def forward_ncm_fused(x, gamma, beta, eps, out):
    """Training forward, one channel per thread at a time: ``(mu, m2, invstd)``."""
    a_len, channels, b_len = x.shape
    runs, pieces, n_blocks = _ncm_blocking(a_len, b_len)
    count = a_len * b_len
    mu = np.empty(channels)
    m2 = np.empty(channels)
    invstd = np.empty(channels)
    for c in prange(channels):
        m, s2 = _ncm_channel_moments(x, c, runs, pieces, n_blocks)
        inv = 1.0 / np.sqrt(s2 / count + eps)
        mu[c] = m
        m2[c] = s2
        invstd[c] = inv
        s = gamma[c] * inv
        sh = beta[c]
        for a in range(a_len):
            for j in range(b_len):
                out[a, c, j] = (np.float64(x[a, c, j]) - m) * s + sh
    return mu, m2, invstd


@jit(parallel=True)
def backward_sums_ncm(dy, x, mu):
    """Per-channel ``sum(dy)`` and ``sum(dy (x - mu))``, parallel over blocks."""
    a_len, channels, b_len = x.shape
    runs, pieces, n_blocks = _ncm_blocking(a_len, b_len)
    part_dy = np.empty((channels, n_blocks))
    part_dyx = np.empty((channels, n_blocks))
    for t in prange(channels * n_blocks):
        c = t // n_blocks
        k = t % n_blocks
        a0, a1, b0, b1 = _ncm_block_bounds(k, a_len, b_len, runs, pieces)
        p1, p2 = _ncm_block_sums(dy, x, c, mu[c], a0, a1, b0, b1)
        part_dy[c, k] = p1
        part_dyx[c, k] = p2
    s_dy = np.empty(channels)
    s_dyx = np.empty(channels)
    for c in prange(channels):
        s1 = 0.0
        s2 = 0.0
        for k in range(n_blocks):
            s1 += part_dy[c, k]
            s2 += part_dyx[c, k]
        s_dy[c] = s1
        s_dyx[c] = s2
    return s_dy, s_dyx


@jit(parallel=True)
def backward_dx_ncm(dy, x, mu, scale, mean_dy, k, out):
    """``out = scale (dy - mean_dy - (x - mu) k)`` per channel of ``(A, C, B)``."""
    a_len, channels, b_len = x.shape
    pieces = (b_len + BLOCK - 1) // BLOCK
    for t in prange(a_len * channels * pieces):
        p = t % pieces
        ac = t // pieces
        c = ac % channels
        a = ac // channels
        b0 = p * BLOCK
        b1 = min(b_len, b0 + BLOCK)
        m = mu[c]
        s = scale[c]
        md = mean_dy[c]
        kc = k[c]
        for j in range(b0, b1):
            out[a, c, j] = s * (np.float64(dy[a, c, j]) - md - (np.float64(x[a, c, j]) - m) * kc)


@jit(parallel=True)
def backward_ncm_fused(dy, x, mu, invstd, gamma, out):
    """Training backward, one channel per thread at a time: ``(sum_dy, sum_dy_xmu)``."""
    a_len, channels, b_len = x.shape
    runs, pieces, n_blocks = _ncm_blocking(a_len, b_len)
    count = a_len * b_len
    s_dy = np.empty(channels)
    s_dyx = np.empty(channels)
    for c in prange(channels):
        m = mu[c]
        p1, p2 = _ncm_channel_sums(dy, x, c, m, runs, pieces, n_blocks)
        s_dy[c] = p1
        s_dyx[c] = p2
        inv = invstd[c]
        s = gamma[c] * inv
        md = p1 / count
        kc = inv * inv * p2 / count
        for a in range(a_len):
            for j in range(b_len):
                xm = np.float64(x[a, c, j]) - m
                out[a, c, j] = s * (np.float64(dy[a, c, j]) - md - xm * kc)
    return s_dy, s_dyx


# --------------------------------------------------------------------------- #
# dispatch (plain Python): the interface shared with ._reference
# --------------------------------------------------------------------------- #


def moments(x):
    """Per-channel ``(mu, m2)`` of an ``(R, C)`` or ``(A, C, B)`` array."""
    return moments_rc(x) if x.ndim == 2 else moments_ncm(x)


def normalize(x, mu, scale, beta, out):
    """Write ``(x - mu) * scale + beta`` into ``out``."""
    if x.ndim == 2:
        normalize_rc(x, mu, scale, beta, out)
    else:
        normalize_ncm(x, mu, scale, beta, out)


def forward_train(x, gamma, beta, eps, out):
    """Training forward; returns float64 ``(mu, m2, invstd)``."""
    if x.ndim == 3 and x.shape[1] >= FUSED_MIN_CHANNELS:
        return forward_ncm_fused(x, gamma, beta, eps, out)
    mu, m2 = moments(x)
    count = x.size // x.shape[1]
    invstd = 1.0 / np.sqrt(m2 / count + eps)
    normalize(x, mu, gamma * invstd, beta, out)
    return mu, m2, invstd


def backward_sums(dy, x, mu):
    """Per-channel float64 ``(sum(dy), sum(dy (x - mu)))``."""
    return backward_sums_rc(dy, x, mu) if x.ndim == 2 else backward_sums_ncm(dy, x, mu)


def backward_train(dy, x, mu, invstd, gamma, out):
    """Training backward; writes ``dx`` into ``out``, returns ``(sum_dy, sum_dy_xmu)``."""
    if x.ndim == 3 and x.shape[1] >= FUSED_MIN_CHANNELS:
        return backward_ncm_fused(dy, x, mu, invstd, gamma, out)
    s_dy, s_dyx = backward_sums(dy, x, mu)
    count = x.size // x.shape[1]
    scale = gamma * invstd
    mean_dy = s_dy / count
    k = invstd * invstd * s_dyx / count
    if x.ndim == 2:
        backward_dx_rc(dy, x, mu, scale, mean_dy, k, out)
    else:
        backward_dx_ncm(dy, x, mu, scale, mean_dy, k, out)
    return s_dy, s_dyx
