"""Shared pieces of the jitted kernels: tile and unit sizes, and helpers.

See :mod:`._jit` for the layouts and the algorithm. The helpers are compiled
into the kernels of :mod:`._jit_rc` (rows x channels) and :mod:`._jit_ncm`
(channels-first) that call them.
"""

from __future__ import annotations

import numpy as np

from . import _config, _stream
from ._config import jit
from ._stream import flush_row

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


# kernels above inline _stream's functions, _config's options and the shared
# pieces of _jit_parts (see _config)
_config.drop_stale_caches(globals(), [_config, _stream])
