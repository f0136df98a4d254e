"""Jitted bodies of the batch-normalization kernels (trust their inputs).

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
from numba import prange

from . import _config, _stream
from ._config import jit
from ._stream import LINE, flush_row, store_fence

#: Values per statistics unit: 16 KiB of float32 or 32 KiB of float64, so the
#: second pass over a unit reads from the L1 cache.
UNIT = 4096

#: Outputs of at least this many bytes are written with streaming
#: (non-temporal) stores, see :mod:`._stream`: they skip reading each output
#: line before writing it. Smaller outputs use ordinary stores, which leave
#: them in cache for whatever reads them next.
STREAM_MIN_BYTES = 32 << 20

#: Values per segment of a streamed output row (computed into a scratch
#: buffer of this many values in L1, then streamed). Short segments let the
#: streaming stores drain while the next segment is computed: on a
#: (256, 64, 32, 32) float32 input, 128 values took the fused backward from
#: 9.2 to 8.8 ms and the forward from 5.0 to 4.85 ms, against 4096 values.
SEGMENT = 128

#: Channels per tile in the rows x channels layout (SIMD lanes, accumulators
#: in L1).
CHANNEL_TILE = 256

#: Values per tile in the rows x channels layout (256 KiB of float32), so a
#: tile has ``RC_TILE_VALUES // CHANNEL_TILE`` rows or more. Each tile writes
#: one row of partial sums, which are merged in order afterwards: with tiles
#: of ``UNIT`` values the partial rows of a (4096, 1024) input took 4 MiB
#: and its float32 backward sums 0.87 ms (0.78 ms now). The accumulators stay in L1
#: whatever the number of rows. The rare two-pass fallback keeps tiles of
#: ``UNIT`` values (short sums for its means, second pass from L1).
RC_TILE_VALUES = 16 * UNIT

#: Rows x channels reductions with fewer channels than this run over flat runs
#: of whole rows (see :func:`_rc_flat_sums`): a loop over three channels
#: does not vectorize. For 64 MiB of float32 with 3 channels the statistics
#: took 3.5 ms instead of 7.0 ms and the backward sums 5.2 instead of 9.9 ms;
#: from 8 channels on, channel tiles are as fast or faster.
FLAT_MAX_CHANNELS = 8

#: Channels-first inputs with at least this many channels run statistics and
#: output of one channel on one thread (cache-resident second pass); fewer
#: channels are split into units so that every thread has work.
FUSED_MIN_CHANNELS = 16

#: Channels-first inputs with runs shorter than this (``B < SHORT_RUN``, e.g.
#: 7 x 7 or 14 x 14 feature maps) are processed in memory order, a tile of
#: whole samples at a time, instead of one channel (``A`` runs scattered
#: ``C * B`` values apart) at a time: on a (256, 512, 7, 7) float32 input
#: the training forward took 2.5 ms instead of 3.3 ms and forward plus
#: backward 7.3 ms instead of 12.5 ms; on (334, 64, 28, 28) 16.6 ms instead
#: of 17.1 ms. From 1024 values per run (32 x 32) the fused per-channel
#: kernels are faster (14.3 against 16.1 ms on (256, 64, 32, 32)).
SHORT_RUN = 1024

#: One-pass statistics about the shift ``K`` are kept for a channel when
#: ``m2 = S2 - S1^2 / n > ONE_PASS_MIN_RATIO * S2``; otherwise (``|mu - K|``
#: above about 32 standard deviations, a constant channel, NaN) the channel is
#: recomputed with two passes. Rounding errors of the sums are relative to
#: ``S2``, so the accepted ``m2`` loses at most a factor 2^10 of their
#: accuracy: far more than float32 outputs need; for float64 inputs the
#: relative error of ``m2`` reached 7e-13 (n = 1e6, |mu - K| just under the
#: threshold), against about 1e-16 for NumPy's two-pass ``var``.
ONE_PASS_MIN_RATIO = 2.0**-10

#: The same for float64 inputs. The accepted ``m2`` has a relative error of
#: about ``1e-16 (S2 / m2) = 1e-16 (1 + ((mu - K) / std)^2)``, so float64
#: needs a tight bound: at ``2^-2`` (``|mu - K|`` below about 1.7 standard
#: deviations; about 8 % of channels of normal data take the second pass)
#: the error stayed within 2.5e-15 for n = 1e6 values, where ``2^-10`` let
#: a first value 31 standard deviations out through with 7e-13 (PyTorch's
#: two-pass kernel: 6e-15).
ONE_PASS_MIN_RATIO_64 = 2.0**-2

_u = np.uint64


# --------------------------------------------------------------------------- #
# helpers (called from the parallel kernels)
# --------------------------------------------------------------------------- #


@jit()
def _rc_tiling(rows, channels, values=RC_TILE_VALUES):
    """Tile sizes and counts for an ``(R, C)`` array: ``(rb, cb, n_rb, n_cb)``.

    A tile has about ``values`` values (at least one row of ``cb`` channels).
    """
    cb = min(channels, CHANNEL_TILE)
    rb = max(1, values // cb)
    return rb, cb, (rows + rb - 1) // rb, (channels + cb - 1) // cb


@jit()
def _ncm_units(a_len, b_len):
    """Units of one channel of ``(A, C, B)``: ``(runs per unit, pieces per run, n_units)``.

    Short runs (``B < UNIT``) are grouped ``UNIT // B`` per unit; long runs
    are cut into ``ceil(B / UNIT)`` pieces, one unit each.
    """
    if b_len >= UNIT:
        pieces = (b_len + UNIT - 1) // UNIT
        return 1, pieces, a_len * pieces
    runs = UNIT // b_len
    return runs, 1, (a_len + runs - 1) // runs


@jit()
def _ncm_unit_bounds(k, a_len, b_len, runs, pieces):
    """Index ranges ``(a0, a1, b0, b1)`` of unit ``k`` of a channel."""
    if pieces > 1:
        a0 = k // pieces
        b0 = (k % pieces) * UNIT
        return a0, a0 + 1, b0, min(b_len, b0 + UNIT)
    a0 = k * runs
    return a0, min(a_len, a0 + runs), 0, b_len


@jit()
def _shift(first):
    """Return the shift ``K`` of a channel: its first value, or 0 when that is inf or NaN.

    An infinite ``K`` would turn every ``x - K`` into inf or NaN (``inf -
    inf``), so a channel starting with +-inf would get a NaN mean where
    PyTorch gives +-inf. About 0 the sums keep the infinity.
    """
    k = np.float64(first)
    return k if np.isfinite(k) else 0.0


@jit()
def _min_ratio(x):
    """Return the one-pass acceptance bound for ``x``'s dtype (see ONE_PASS_MIN_RATIO)."""
    return ONE_PASS_MIN_RATIO if x.itemsize == 4 else ONE_PASS_MIN_RATIO_64


@jit(elementwise=True)
def _two_sum(a, b):
    """``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth's TwoSum).

    The mean is returned as ``K + d`` rounded to float64, and that rounding
    (about ``1e-16 |mean|``) is multiplied by ``weight * invstd`` in the
    output: with a weight of 1e4 at ``|mean| / std = 8e5`` it put float32
    outputs up to 6.6 ulp off. The normalize step adds ``e`` back through its
    shift. Compiled without ``reassoc``, which would simplify ``e`` to 0
    (a test checks that it does not).
    """
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@jit()
def _ncm_unit_moments(x, c, shift, a0, a1, b0, b1):
    """Two-pass ``(n, mu - shift, m2)`` of ``x[a0:a1, c, b0:b1]`` in float64."""
    cu = _u(c)
    nb = b1 - b0
    s = 0.0
    for a in range(a0, a1):
        au = _u(a)
        for jj in range(nb):
            s += np.float64(x[au, cu, _u(b0 + jj)]) - shift
    n = (a1 - a0) * nb
    mu = s / n
    m2 = 0.0
    for a in range(a0, a1):
        au = _u(a)
        for jj in range(nb):
            d = (np.float64(x[au, cu, _u(b0 + jj)]) - shift) - mu
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
def _ncm_channel_moments(x, c, runs, pieces, n_units):
    """``(mu, m2, mu_lo)`` of channel ``c`` of ``(A, C, B)``, units merged in order."""
    a_len, _, b_len = x.shape
    shift = _shift(x[0, _u(c), 0])
    a0, a1, b0, b1 = _ncm_unit_bounds(0, a_len, b_len, runs, pieces)
    n, mu, m2 = _ncm_unit_moments(x, c, shift, a0, a1, b0, b1)
    for k in range(1, n_units):
        a0, a1, b0, b1 = _ncm_unit_bounds(k, a_len, b_len, runs, pieces)
        n_b, mu_b, m2_b = _ncm_unit_moments(x, c, shift, a0, a1, b0, b1)
        n, mu, m2 = _chan_merge(n, mu, m2, n_b, mu_b, m2_b)
    hi, lo = _two_sum(shift, mu)
    return hi, m2, lo


@jit()
def _ncm_unit_power_sums(x, c, shift, a0, a1, b0, b1):
    """``sum(x - K)`` and ``sum((x - K)^2)`` over one unit in float64, one pass."""
    cu = _u(c)
    nb = b1 - b0
    s1 = 0.0
    s2 = 0.0
    for a in range(a0, a1):
        au = _u(a)
        for jj in range(nb):
            d = np.float64(x[au, cu, _u(b0 + jj)]) - shift
            s1 += d
            s2 += d * d
    return s1, s2


@jit()
def _one_pass_ok(s1, s2, n, min_ratio):
    """Return ``(accepted, mu - K, m2)`` from the power sums (see ONE_PASS_MIN_RATIO).

    A channel with inf or NaN (``mu - K`` not finite) is accepted: its ``m2``
    is already NaN, and its mean ``K + d`` is +-inf or NaN as in PyTorch's
    plain sum, where the two passes' merges would turn +-inf into NaN
    (``inf - inf``) when the infinity is not in the last unit.
    """
    d = s1 / n
    m2 = s2 - s1 * d
    return (m2 > min_ratio * s2) or not np.isfinite(d), d, m2


@jit()
def _ncm_channel_stats(x, c, runs, pieces, n_units):
    """``(mu, m2, mu_lo)`` of channel ``c``: one pass about ``K``, two if that cancels.

    ``mu_lo`` is the rounding error of ``mu`` (see :func:`_two_sum`).
    """
    a_len, _, b_len = x.shape
    shift = _shift(x[0, _u(c), 0])
    s1 = 0.0
    s2 = 0.0
    for k in range(n_units):
        a0, a1, b0, b1 = _ncm_unit_bounds(k, a_len, b_len, runs, pieces)
        p1, p2 = _ncm_unit_power_sums(x, c, shift, a0, a1, b0, b1)
        s1 += p1
        s2 += p2
    ok, d, m2 = _one_pass_ok(s1, s2, a_len * b_len, _min_ratio(x))
    if ok:
        hi, lo = _two_sum(shift, d)
        return hi, m2, lo
    return _ncm_channel_moments(x, c, runs, pieces, n_units)


@jit()
def _ncm_unit_sums(dy, x, c, mu, a0, a1, b0, b1):
    """``sum(dy)`` and ``sum(dy * (x - mu))`` over one unit, float64."""
    cu = _u(c)
    nb = b1 - b0
    s_dy = 0.0
    s_dyx = 0.0
    for a in range(a0, a1):
        au = _u(a)
        for jj in range(nb):
            j = _u(b0 + jj)
            g = np.float64(dy[au, cu, j])
            s_dy += g
            s_dyx += g * (np.float64(x[au, cu, j]) - mu)
    return s_dy, s_dyx


@jit()
def _ncm_channel_sums(dy, x, c, mu, runs, pieces, n_units):
    """``sum(dy)`` and ``sum(dy * (x - mu))`` of channel ``c``, units added in order."""
    a_len, _, b_len = x.shape
    s_dy = 0.0
    s_dyx = 0.0
    for k in range(n_units):
        a0, a1, b0, b1 = _ncm_unit_bounds(k, a_len, b_len, runs, pieces)
        p_dy, p_dyx = _ncm_unit_sums(dy, x, c, mu, a0, a1, b0, b1)
        s_dy += p_dy
        s_dyx += p_dyx
    return s_dy, s_dyx


@jit(elementwise=True)
def _ncm_channel_normalize(x, c, mu, scale, beta, out, buf, stream):
    """``out[:, c] = (x[:, c] - mu) * scale + beta``, float64 then rounded once.

    With ``stream``, each run is computed into ``buf`` (``SEGMENT`` values of
    ``out``'s dtype, so the rounding is the same) and streamed to ``out``.
    """
    a_len, _, b_len = x.shape
    cu = _u(c)
    for a in range(a_len):
        au = _u(a)
        if stream:
            for b0 in range(0, b_len, SEGMENT):
                n = min(SEGMENT, b_len - b0)
                for jj in range(n):
                    buf[_u(jj)] = (np.float64(x[au, cu, _u(b0 + jj)]) - mu) * scale + beta
                flush_row(out[au, cu, b0:b0 + n], buf, n)
        else:
            for j in range(b_len):
                ju = _u(j)
                out[au, cu, ju] = (np.float64(x[au, cu, ju]) - mu) * scale + beta


@jit(elementwise=True)
def _ncm_channel_dx(dy, x, c, mu, a_dy, b_x, c0, out, buf, stream):
    """``out[:, c] = a_dy dy + (b_x (x - mu) + c0)``, float64 then rounded once.

    The input gradient ``scale (dy - mean_dy - (x - mu) k)`` with per-channel
    constants (see :func:`_dx_coefficients`). ``buf`` and ``stream`` as in
    :func:`_ncm_channel_normalize`.
    """
    a_len, _, b_len = x.shape
    cu = _u(c)
    for a in range(a_len):
        au = _u(a)
        if stream:
            for b0 in range(0, b_len, SEGMENT):
                n = min(SEGMENT, b_len - b0)
                for jj in range(n):
                    ju = _u(b0 + jj)
                    buf[_u(jj)] = a_dy * np.float64(dy[au, cu, ju]) + (
                        b_x * (np.float64(x[au, cu, ju]) - mu) + c0)
                flush_row(out[au, cu, b0:b0 + n], buf, n)
        else:
            for j in range(b_len):
                ju = _u(j)
                out[au, cu, ju] = a_dy * np.float64(dy[au, cu, ju]) + (
                    b_x * (np.float64(x[au, cu, ju]) - mu) + c0)


@jit(elementwise=True)
def _dx_coefficients(scale, mean_dy, k):
    """Return ``(a, b, c)``: ``scale (dy - mean_dy - (x - mu) k) = a dy + (b (x - mu) + c)``.

    ``x - mu`` is kept rather than folding ``mu`` into ``c`` (``a dy + (b x +
    c')``, one operation fewer per value): ``c'`` carries a rounding error of
    about ``1e-16 |b mu|``, which at ``|mu| / std = 1e6`` put small elements
    of float32 ``dx`` (``|dx| ~ 1e-6``) up to 5 ulp off. As written, the
    float64 result carries only the rounding of its terms (about ``1e-16``
    of ``|a dy|``), so float32 ``dx`` is within half an ulp of the exact
    value for the statistics passed in, except for elements some ``1e-8``
    times smaller than those terms (tests/test_accuracy.py). The extra
    subtraction costs 0-5 % of the backward (measured in one process).
    """
    return scale, -scale * k, -scale * mean_dy


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


# kernels above inline _stream's functions and _config's options (see _config)
_config.drop_stale_caches(globals(), [_config, _stream])
