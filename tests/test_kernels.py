"""bnproof.kernels: results against an independent NumPy reference, semantics, bad input.

The reference here (``naive_*``) is written from Algorithm 1 of Ioffe &
Szegedy (2015) directly, in float64 with ``np.moveaxis``, and shares no code
with the package.
"""

import inspect
import math

import numpy as np
import pytest

from bnproof.kernels import (
    Moments,
    batch_norm_backward,
    batch_norm_forward,
    batch_norm_moments,
    merge_moments,
)

#: float64 results agree with the float64 reference to a few hundred ulp of
#: the largest value (different summation order over up to ~10^4 terms).
RTOL64 = 1e-12
#: float32 outputs are the float64 result rounded once: within 1 ulp of float32
#: (2^-23 relative to the output scale ~1) of the float64 reference, plus the
#: reference's own rounding; 4e-7 allows 3 ulp at |y| < 1.
ATOL32 = 4e-7

#: Layouts covered: (shape, channel_axis).
LAYOUTS = [
    ((7, 5), 1),
    ((4, 3, 5, 6), 1),
    ((4, 5, 6, 3), -1),
    ((3, 4, 10), 1),
    ((2, 3, 4, 5, 6), 1),
    ((5, 2, 3, 4), 3),
    ((30, 20), 1),
    ((50, 300), 1),  # more channels than one tile of the rows x channels kernels
    ((21, 2, 3, 600), -1),
]


def naive_forward(x, w, b, eps, axis):
    """Training forward in float64 from Algorithm 1: (y, mean, biased var)."""
    xm = np.moveaxis(x.astype(np.float64), axis, -1)
    red = tuple(range(xm.ndim - 1))
    mu = xm.mean(axis=red)
    var = ((xm - mu) ** 2).mean(axis=red)
    gamma = np.ones_like(mu) if w is None else w.astype(np.float64)
    beta = np.zeros_like(mu) if b is None else b.astype(np.float64)
    y = gamma * (xm - mu) / np.sqrt(var + eps) + beta
    return np.moveaxis(y, -1, axis), mu, var


def naive_backward(dy, x, w, eps, axis):
    """Training backward in float64, chain rule of section 3 written out."""
    xm = np.moveaxis(x.astype(np.float64), axis, -1)
    g = np.moveaxis(dy.astype(np.float64), axis, -1)
    red = tuple(range(xm.ndim - 1))
    m = xm.size // xm.shape[-1]
    mu = xm.mean(axis=red)
    var = ((xm - mu) ** 2).mean(axis=red)
    gamma = np.ones_like(mu) if w is None else w.astype(np.float64)
    xhat = (xm - mu) / np.sqrt(var + eps)
    dxhat = g * gamma
    dvar = (dxhat * (xm - mu)).sum(axis=red) * -0.5 * (var + eps) ** -1.5
    dmu = -dxhat.sum(axis=red) / np.sqrt(var + eps) + dvar * (-2.0 * (xm - mu)).sum(axis=red) / m
    dx = dxhat / np.sqrt(var + eps) + dvar * 2.0 * (xm - mu) / m + dmu / m
    return np.moveaxis(dx, -1, axis), (g * xhat).sum(axis=red), g.sum(axis=red)


def make(rng, shape, axis, dtype, offset=0.0):
    x = (rng.standard_normal(shape) * 1.5 + offset + rng.normal(0, 1)).astype(dtype)
    c = shape[axis]
    w = rng.normal(1.0, 0.3, c).astype(dtype)
    b = rng.normal(0.0, 0.3, c).astype(dtype)
    return x, w, b


def assert_close(got, want, dtype):
    want = np.asarray(want, dtype=np.float64)
    if np.dtype(dtype) == np.float64:
        tol = RTOL64 * max(1.0, float(np.max(np.abs(want))))
    else:
        tol = ATOL32 * max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)


# --------------------------------------------------------------------------- #
# results against the reference
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "axis"), LAYOUTS)
def test_forward_matches_reference(rng, shape, axis, dtype):
    x, w, b = make(rng, shape, axis, dtype)
    y, mean, invstd = batch_norm_forward(x, w, b, channel_axis=axis)
    y_ref, mu_ref, var_ref = naive_forward(x, w, b, 1e-5, axis)
    assert y.dtype == dtype and y.shape == x.shape and y.flags.c_contiguous
    assert mean.dtype == np.float64 and invstd.dtype == np.float64
    assert_close(y, y_ref, dtype)
    np.testing.assert_allclose(mean, mu_ref, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(var_ref + 1e-5), rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "axis"), LAYOUTS)
def test_backward_matches_reference(rng, shape, axis, dtype):
    x, w, b = make(rng, shape, axis, dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    _, mean, invstd = batch_norm_forward(x, w, b, channel_axis=axis)
    dx, dw, db = batch_norm_backward(dy, x, w, mean, invstd, channel_axis=axis)
    dx_ref, dw_ref, db_ref = naive_backward(dy, x, w, 1e-5, axis)
    assert dx.dtype == dtype and dw.dtype == dtype and db.dtype == dtype
    assert_close(dx, dx_ref, dtype)
    assert_close(dw, dw_ref, dtype)
    assert_close(db, db_ref, dtype)


def test_no_affine_means_unit_weight_and_no_gradients(rng):
    x, _, _ = make(rng, (6, 4, 3), 1, np.float64)
    dy = rng.standard_normal(x.shape)
    y, mean, invstd = batch_norm_forward(x)
    y1, _, _ = batch_norm_forward(x, np.ones(4), np.zeros(4))
    np.testing.assert_array_equal(y, y1)
    dx, dw, db = batch_norm_backward(dy, x, None, mean, invstd)
    assert dw is None and db is None
    np.testing.assert_array_equal(dx, batch_norm_backward(dy, x, np.ones(4), mean, invstd)[0])


def test_large_spatial_runs_and_many_blocks(rng):
    # runs longer than one statistics block, channels split into many blocks,
    # short runs in tiles of samples (several tiles; a sample cut into
    # channel blocks), the fused one-channel-per-thread path, and few
    # channels reduced over flat runs (several row blocks, leftover rows)
    for shape in [(2, 3, 40000), (300, 20, 70), (3, 300, 300), (6, 20, 1100), (40000, 3),
                  (70001, 5)]:
        x, w, b = make(rng, shape, 1, np.float64, offset=50.0)
        y, _, _ = batch_norm_forward(x, w, b)
        assert_close(y, naive_forward(x, w, b, 1e-5, 1)[0], np.float64)


def test_test_shapes_cover_both_channels_first_strategies():
    # the shapes above with 20 channels must keep reaching both code paths
    from bnproof.kernels import _jit

    assert _jit._fused(np.empty((6, 20, 1100))) and _jit._fused(np.empty((4, 20, 1100)))
    assert not _jit._fused(np.empty((40, 20, 300))) and _jit._short_runs(np.empty((40, 20, 300)))
    assert not _jit._fused(np.empty((3, 300, 300)))


def test_non_contiguous_inputs_give_the_same_result(rng):
    base, w, b = make(rng, (6, 8, 5, 4), 1, np.float32)
    x = np.asfortranarray(base)
    strided = np.repeat(base, 2, axis=3)[..., ::2]
    dy = rng.standard_normal(base.shape).astype(np.float32)
    want = batch_norm_forward(base, w, b)
    want_dx = batch_norm_backward(dy, base, w, want[1], want[2])
    for variant in (x, strided):
        got = batch_norm_forward(variant, w, b)
        np.testing.assert_array_equal(got[0], want[0])
        got_dx = batch_norm_backward(np.asfortranarray(dy), variant, w, got[1], got[2])
        np.testing.assert_array_equal(got_dx[0], want_dx[0])
    # a read-only input works and stays untouched
    ro = base.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(batch_norm_forward(ro, w, b)[0], want[0])


def test_inputs_are_not_modified(rng):
    x, w, b = make(rng, (5, 3, 4), 1, np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    copies = [a.copy() for a in (x, w, b, dy)]
    _, mean, invstd = batch_norm_forward(x, w, b)
    batch_norm_backward(dy, x, w, mean, invstd)
    for a, c in zip((x, w, b, dy), copies, strict=True):
        np.testing.assert_array_equal(a, c)


def test_outputs_are_allocated_by_the_wrappers():
    # the jitted bodies trust their shapes: users never pass output buffers
    for func in (batch_norm_forward, batch_norm_backward, batch_norm_moments):
        params = inspect.signature(func).parameters
        assert not any(p in params for p in ("out", "y", "dx")), func.__name__


@pytest.fixture
def small_recycling(monkeypatch):
    """Recycle outputs of any size, with an empty pool before and after."""
    from bnproof.kernels import _buffers

    _buffers.clear()
    monkeypatch.setattr(_buffers, "MIN_BYTES", 1)
    yield _buffers
    _buffers.clear()


def test_recycled_outputs_are_never_shared_while_alive(rng, small_recycling):
    x, w, b = make(rng, (6, 4, 5), 1, np.float32)
    want = batch_norm_forward(x, w, b)[0].copy()
    y1 = batch_norm_forward(x, w, b)[0]
    y2 = batch_norm_forward(x, w, b)[0]
    assert not np.shares_memory(y1, y2)
    view = y1[2:]
    block = y1.base._raw
    del y1
    y3 = batch_norm_forward(x, w, b)[0]  # y1's block is still held by the view
    assert not np.shares_memory(y3, view) and not np.shares_memory(y3, y2)
    del view
    assert small_recycling.free_bytes() == x.nbytes
    dy = rng.standard_normal(x.shape).astype(np.float32)
    stats = batch_norm_forward(x, w, b)[1:]  # its y is dropped: the block is free again
    assert small_recycling.free_bytes() == x.nbytes
    dx = batch_norm_backward(dy, x, w, *stats)[0]
    # the released block is reused, and every element is written again
    assert dx.base._raw is block and small_recycling.free_bytes() == 0
    np.testing.assert_array_equal(y2, want)
    np.testing.assert_array_equal(y3, want)
    small_recycling.clear()  # a fresh block for the reference
    dx_fresh = batch_norm_backward(dy, x, w, *stats)[0]
    assert dx_fresh.base._raw is not block
    np.testing.assert_array_equal(dx, dx_fresh)


def test_recycled_outputs_behave_like_arrays(rng, small_recycling):
    x, w, b = make(rng, (6, 4, 5), 1, np.float64)
    y = batch_norm_forward(x, w, b)[0]
    assert y.flags.c_contiguous and y.flags.writeable and y.dtype == np.float64
    assert y.ctypes.data % small_recycling.ALIGN == 0  # starts on a cache line
    raw = y.base._raw
    assert raw.ctypes.data <= y.ctypes.data
    assert y.ctypes.data + y.nbytes <= raw.ctypes.data + raw.nbytes
    y[...] = 0.0  # the caller owns the result
    np.testing.assert_array_equal(batch_norm_forward(x, w, b)[0] != 0, True)


def test_pool_keeps_at_most_max_free_bytes(rng, small_recycling, monkeypatch):
    monkeypatch.setattr(small_recycling, "MAX_FREE_BYTES", 1000)
    x = rng.standard_normal((10, 20))  # 1600 bytes: never kept
    y = batch_norm_forward(x)[0]
    del y
    assert small_recycling.free_bytes() == 0


# --------------------------------------------------------------------------- #
# running statistics and inference mode (PyTorch's conventions)
# --------------------------------------------------------------------------- #


def test_running_stats_update_in_place_with_unbiased_variance(rng):
    x, w, b = make(rng, (6, 3, 4), 1, np.float64)
    rm = rng.standard_normal(3)
    rv = rng.uniform(0.5, 2.0, 3)
    rm0, rv0 = rm.copy(), rv.copy()
    _, mean, _ = batch_norm_forward(x, w, b, rm, rv, momentum=0.25)
    _, mu_ref, var_ref = naive_forward(x, w, b, 1e-5, 1)
    count = 6 * 4
    np.testing.assert_allclose(rm, 0.75 * rm0 + 0.25 * mu_ref, rtol=1e-14)
    np.testing.assert_allclose(rv, 0.75 * rv0 + 0.25 * var_ref * count / (count - 1), rtol=1e-14)
    np.testing.assert_array_equal(mean, batch_norm_moments(x).mean)


def test_cumulative_average_with_momentum_none(rng):
    batches = [make(rng, (5, 2, 3), 1, np.float64)[0] for _ in range(4)]
    rm, rv = np.zeros(2), np.ones(2)
    for k, x in enumerate(batches):
        batch_norm_forward(x, running_mean=rm, running_var=rv, momentum=None,
                           num_batches_tracked=k)
    means = [naive_forward(x, None, None, 0, 1)[1] for x in batches]
    uvars = [naive_forward(x, None, None, 0, 1)[2] * 15 / 14 for x in batches]
    np.testing.assert_allclose(rm, np.mean(means, axis=0), rtol=1e-14)
    np.testing.assert_allclose(rv, np.mean(uvars, axis=0), rtol=1e-14)


def test_float32_running_buffers_stay_float32(rng):
    x, w, b = make(rng, (8, 3), 1, np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    batch_norm_forward(x, w, b, rm, rv)
    assert rm.dtype == np.float32 and rv.dtype == np.float32
    assert np.all(rm != 0)


def test_momentum_zero_and_one(rng):
    x, _, _ = make(rng, (6, 3), 1, np.float64)
    rm, rv = np.full(3, 7.0), np.full(3, 9.0)
    batch_norm_forward(x, running_mean=rm, running_var=rv, momentum=0.0)
    np.testing.assert_array_equal(rm, 7.0)
    np.testing.assert_array_equal(rv, 9.0)
    batch_norm_forward(x, running_mean=rm, running_var=rv, momentum=1.0)
    m = batch_norm_moments(x)
    np.testing.assert_allclose(rm, m.mean, rtol=1e-15)
    np.testing.assert_allclose(rv, m.unbiased_var, rtol=1e-15)


def test_inference_uses_and_keeps_running_stats(rng):
    x, w, b = make(rng, (4, 3, 5), 1, np.float64)
    rm = rng.standard_normal(3)
    rv = rng.uniform(0.5, 2.0, 3)
    rm0, rv0 = rm.copy(), rv.copy()
    y, mean, invstd = batch_norm_forward(x, w, b, rm, rv, training=False)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    want = w[:, None] * (x - rm[:, None]) / np.sqrt(rv[:, None] + 1e-5) + b[:, None]
    assert_close(y, want, np.float64)
    np.testing.assert_array_equal(mean, rm)
    # inference with read-only buffers is fine: they are only read
    rm.flags.writeable = False
    rv.flags.writeable = False
    np.testing.assert_array_equal(batch_norm_forward(x, w, b, rm, rv, training=False)[0], y)


def test_inference_backward_is_dy_weight_invstd(rng):
    x, w, b = make(rng, (4, 3, 5), 1, np.float64)
    dy = rng.standard_normal(x.shape)
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    _, mean, invstd = batch_norm_forward(x, w, b, rm, rv, training=False)
    dx, dw, db = batch_norm_backward(dy, x, w, mean, invstd, training=False)
    assert_close(dx, dy * (w * invstd)[:, None], np.float64)
    xhat = (x - rm[:, None]) * invstd[:, None]
    assert_close(dw, (dy * xhat).sum(axis=(0, 2)), np.float64)
    assert_close(db, dy.sum(axis=(0, 2)), np.float64)


def test_inference_accepts_one_value_per_channel(rng):
    x = rng.standard_normal((1, 3))
    y, _, _ = batch_norm_forward(x, running_mean=np.zeros(3), running_var=np.ones(3),
                                 training=False, eps=0.0)
    np.testing.assert_array_equal(y, x)


# --------------------------------------------------------------------------- #
# numerics
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "axis"), [((50, 4), 1), ((3, 4, 7, 7), 1), ((3, 7, 7, 4), -1)])
def test_constant_channel_gives_exactly_bias(shape, axis, dtype):
    x = np.full(shape, 123.456, dtype=dtype)
    b = np.arange(4, dtype=dtype) - 1.5
    w = np.full(4, 2.0, dtype=dtype)
    y, mean, invstd = batch_norm_forward(x, w, b, channel_axis=axis)
    ym = np.moveaxis(y, axis, -1)
    np.testing.assert_array_equal(ym, np.broadcast_to(b, ym.shape))
    np.testing.assert_array_equal(mean, np.float64(dtype(123.456)))
    dx, dw, db = batch_norm_backward(np.ones_like(x), x, w, mean, invstd, channel_axis=axis)
    assert np.all(np.isfinite(dx)) and np.all(dw == 0)


def test_variance_is_never_negative_at_large_offsets(rng):
    for offset in (1e4, 1e6, 1e7):
        x = (offset + rng.standard_normal((4096, 3))).astype(np.float32)
        m = batch_norm_moments(x)
        assert np.all(m.m2 > 0)
        ref = naive_forward(x, None, None, 1e-5, 1)[2]
        np.testing.assert_allclose(m.var, ref, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("shape", "axis"), [((5000, 3), 1), ((40, 20, 300), 1), ((4, 20, 1100), 1), ((3, 4, 9000), 1)]
)
def test_outlier_first_value_keeps_full_accuracy(rng, shape, axis, dtype):
    # statistics are taken about each channel's first value K; when K is an
    # outlier (|K - mu| >> std) the one-pass sums cancel and the kernels must
    # fall back to two passes
    x = rng.standard_normal(shape).astype(dtype)
    xm = np.moveaxis(x, axis, -1)
    first = (0,) * (xm.ndim - 1)
    xm[first] = 5e3  # K for every channel
    xm[..., 1] += 1e4  # one channel with a large offset as well
    # exactly rounded mean (math.fsum), then the mean squared deviation
    cols = np.moveaxis(x.astype(np.float64), axis, -1).reshape(-1, shape[axis])
    mu = np.array([math.fsum(col) / col.size for col in cols.T])
    var = np.array([math.fsum((c - m) ** 2) / c.size for c, m in zip(cols.T, mu, strict=True)])
    # above the one-pass threshold (2**10) by a margin
    assert np.all((cols[0] - mu) ** 2 / var > 2048)
    m = batch_norm_moments(x, channel_axis=axis)
    np.testing.assert_allclose(m.mean, mu, rtol=0, atol=4 * np.finfo(np.float64).eps * 1.5e4)
    np.testing.assert_allclose(m.var, var, rtol=1e-12)
    y, mean, invstd = batch_norm_forward(x, channel_axis=axis)
    np.testing.assert_array_equal(mean, m.mean)
    assert_close(y, naive_forward(x, None, None, 1e-5, axis)[0], dtype)


@pytest.mark.parametrize("offset", [0.0, 1e3, 1e6])
@pytest.mark.parametrize(
    ("shape", "axis"),
    [((4000, 3), 1), ((40, 20, 300), 1), ((6, 20, 1100), 1), ((8, 9, 9, 20), -1)],
)
def test_float32_backward_stays_at_the_rounding_floor(rng, shape, axis, offset):
    # issue: backward within the same order as the float64 reference; each dx
    # is evaluated in float64 from the float32 inputs and rounded once
    x, w, b = make(rng, shape, axis, np.float32, offset=offset)
    dy = rng.standard_normal(shape).astype(np.float32)
    _, mean, invstd = batch_norm_forward(x, w, b, channel_axis=axis)
    dx, dw, db = batch_norm_backward(dy, x, w, mean, invstd, channel_axis=axis)
    dx_ref, dw_ref, db_ref = naive_backward(dy, x, w, 1e-5, axis)
    ulp = np.spacing(np.abs(dx_ref).astype(np.float32)).astype(np.float64)
    # 1 ulp of rounding, no absolute allowance: measured at most 0.52 ulp
    # (the allowance of 1e-6 of the largest |dx| was many ulps for small ones)
    assert np.all(np.abs(dx - dx_ref) <= ulp)
    # one float32 ulp relative (2**-23): measured at most 5.5e-8, the rounding
    # of the float32 result (was rtol 4e-7 plus 1e-6 of the largest value)
    np.testing.assert_allclose(dw, dw_ref, rtol=2.0**-23, atol=0)
    np.testing.assert_allclose(db, db_ref, rtol=2.0**-23, atol=0)


def test_float32_near_max_does_not_overflow():
    big = np.float32(3.0e38)
    x = np.array([[big, -big], [big * 0.5, -big * 0.25], [big * 0.25, -big]], dtype=np.float32)
    y, mean, invstd = batch_norm_forward(x)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(mean))
    want = naive_forward(x, None, None, 1e-5, 1)[0]
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=ATOL32)
    dx, _, _ = batch_norm_backward(np.ones_like(x), x, None, mean, invstd)
    assert np.all(np.isfinite(dx))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(("shape", "axis"), [((6, 3), 1), ((2, 3, 4, 5), 1), ((2, 4, 5, 3), -1)])
def test_nan_and_inf_poison_only_their_channel(rng, bad, shape, axis):
    x, w, b = make(rng, shape, axis, np.float32)
    xm = np.moveaxis(x, axis, -1)
    xm[(0,) * (xm.ndim - 1) + (1,)] = bad
    y, mean, invstd = batch_norm_forward(x, w, b, channel_axis=axis)
    ym = np.moveaxis(y, axis, -1)
    assert np.all(np.isnan(ym[..., 1]))
    assert np.all(np.isfinite(ym[..., [0, 2]]))
    assert np.isnan(invstd[1]) and not np.isfinite(mean[1])
    clean = batch_norm_forward(np.delete(x, 1, axis=axis), np.delete(w, 1), np.delete(b, 1),
                               channel_axis=axis)[0]
    np.testing.assert_array_equal(np.delete(y, 1, axis=axis), clean)


def test_zero_eps_constant_channel_is_nan_as_documented():
    x = np.ones((4, 2))
    x[:, 1] = [1.0, 2.0, 3.0, 4.0]
    with np.errstate(divide="ignore"):
        y, _, _ = batch_norm_forward(x, eps=0.0)
    assert np.all(np.isnan(y[:, 0])) and np.all(np.isfinite(y[:, 1]))


def test_forward_output_is_shift_invariant(rng):
    # paper, section 2/3: a bias added before the normalization cancels
    x = rng.standard_normal((64, 4))
    y0 = batch_norm_forward(x)[0]
    y1 = batch_norm_forward(x + 1000.0)[0]
    np.testing.assert_allclose(y1, y0, atol=1e-10)
    dy = rng.standard_normal(x.shape)
    _, mean, invstd = batch_norm_forward(x)
    dx = batch_norm_backward(dy, x, None, mean, invstd)[0]
    # dL/db = sum_i dL/dx_i = 0 in training mode
    np.testing.assert_allclose(dx.sum(axis=0), 0.0, atol=1e-12)


# --------------------------------------------------------------------------- #
# mergeable moments
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("shape", "axis"), [((40, 3), 1), ((6, 3, 5, 5), 1), ((6, 5, 5, 3), -1)])
def test_moments_merge_into_population_statistics(rng, shape, axis):
    x = rng.standard_normal(shape) * 3 + 1e4
    parts = np.array_split(x, [1, 4, 5], axis=0)
    merged = batch_norm_moments(parts[0], channel_axis=axis)
    for p in parts[1:]:
        merged = merge_moments(merged, batch_norm_moments(p, channel_axis=axis))
    whole = batch_norm_moments(x, channel_axis=axis)
    assert merged.count == whole.count == x.size // 3
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-15)
    np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-14)
    _, mu, var = naive_forward(x, None, None, 0.0, axis)
    np.testing.assert_allclose(whole.mean, mu, rtol=1e-15)
    np.testing.assert_allclose(whole.var, var, rtol=1e-11)


def test_merge_with_empty_record_is_identity(rng):
    m = batch_norm_moments(rng.standard_normal((5, 2)))
    empty = Moments(0, np.zeros(2), np.zeros(2))
    for merged in (merge_moments(m, empty), merge_moments(empty, m)):
        assert merged.count == m.count
        np.testing.assert_array_equal(merged.mean, m.mean)
        np.testing.assert_array_equal(merged.m2, m.m2)


def _exact_m2(column):
    from fractions import Fraction

    values = [Fraction(float(v)) for v in column]
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values)


@pytest.mark.parametrize(("offset", "dtype"), [(1e6, np.float64), (1e9, np.float64),
                                               (1e6, np.float32)])
def test_merged_m2_is_as_accurate_as_the_whole_batch_far_from_zero(rng, offset, dtype):
    from fractions import Fraction

    a = (offset + rng.standard_normal((100, 2))).astype(dtype)
    b = (offset + 1 + rng.standard_normal((100, 2))).astype(dtype)  # means a std apart
    ma, mb = batch_norm_moments(a), batch_norm_moments(b)
    merged = merge_moments(ma, mb)
    # negative control: the same records without the means' low parts
    rounded = merge_moments(Moments(ma.count, ma.mean, ma.m2), Moments(mb.count, mb.mean, mb.m2))
    whole = np.concatenate([a, b])
    for c in range(2):
        exact = _exact_m2(whole[:, c])

        def rel(m2, exact=exact):
            return float(abs(Fraction(float(m2)) - exact) / exact)

        assert rel(merged.m2[c]) < 5e-15  # a few float64 roundings, as the whole batch's
        assert rel(rounded.m2[c]) > 1e-12  # what mean_lo removes
    np.testing.assert_allclose(merged.mean, batch_norm_moments(whole).mean, rtol=1e-16)


def test_moments_record_is_a_three_field_tuple_with_the_low_part_beside(rng):
    import pickle

    m = batch_norm_moments(rng.standard_normal((7, 3)) + 1e3)
    count, mean, m2 = m  # mean_lo is not a field
    assert count == 7 and len(m) == 3 and m.mean_lo.shape == (3,)
    back = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(back.mean_lo, m.mean_lo)
    assert Moments(count, mean, m2).mean_lo is None
    assert m._replace(m2=m2 * 2).mean_lo is None  # a changed record drops it
    with pytest.raises(ValueError, match="mean_lo has shape"):
        merge_moments(m, Moments(count, mean, m2, mean_lo=np.zeros(2)))
    with pytest.raises(TypeError, match="mean_lo has dtype"):
        merge_moments(m, Moments(count, mean, m2, mean_lo=np.zeros(3, dtype=complex)))


def test_merge_moments_rejects_bad_records():
    m = Moments(3, np.zeros(2), np.zeros(2))
    with pytest.raises(TypeError, match="Moments record"):
        merge_moments(m, (3, np.zeros(2), np.zeros(2)))
    with pytest.raises(ValueError, match="2 channels but b has 3"):
        merge_moments(m, Moments(3, np.zeros(3), np.zeros(3)))
    with pytest.raises(ValueError, match="count must be an int >= 0"):
        merge_moments(m, Moments(-1, np.zeros(2), np.zeros(2)))
    with pytest.raises(ValueError, match="m2 must be a 1-D"):
        merge_moments(m, Moments(3, np.zeros(2), 0.0))
    with pytest.raises(TypeError, match="count must be an int"):
        merge_moments(m, Moments(3.0, np.zeros(2), np.zeros(2)))
    with pytest.raises(TypeError, match=r"mean has dtype complex128.*astype\(np.float64\)"):
        merge_moments(m, Moments(3, np.zeros(2) + 1j, np.zeros(2)))
    with pytest.raises(TypeError, match="masked array"):
        merge_moments(m, Moments(3, np.ma.masked_array(np.zeros(2)), np.zeros(2)))
    with pytest.raises(ValueError, match="m2 has negative values"):
        merge_moments(m, Moments(3, np.zeros(2), np.array([1.0, -1.0])))


# --------------------------------------------------------------------------- #
# bad input: checked before any kernel runs, buffers untouched
# --------------------------------------------------------------------------- #


def _fwd_cases():
    x = np.ones((4, 3, 2))
    x[1] = 2.0
    v = np.ones(3)
    rm, rv = np.zeros(3), np.ones(3)
    return [
        ("x list", dict(x=[[1.0, 2.0]]), TypeError, "must be a NumPy array"),
        ("x int", dict(x=np.ones((4, 3), dtype=np.int64)), TypeError, r"astype\(np.float64\)"),
        ("x f16", dict(x=np.ones((4, 3), dtype=np.float16)), TypeError, r"astype\(np.float32\)"),
        ("x 1d", dict(x=np.ones(5)), ValueError, "ndim 1"),
        ("one value", dict(x=np.ones((1, 3))), ValueError,
         "Expected more than 1 value per channel when training"),
        ("axis 0", dict(x=x, channel_axis=0), ValueError, "batch axis"),
        ("axis range", dict(x=x, channel_axis=3), ValueError, "out of range"),
        ("axis float", dict(x=x, channel_axis=1.0), TypeError, "channel_axis must be an int"),
        ("weight C", dict(x=x, weight=np.ones(4)), ValueError, "weight has shape"),
        ("bias C", dict(x=x, bias=np.ones((3, 1))), ValueError, "bias has shape"),
        ("mixed", dict(x=x, weight=v.astype(np.float32)), TypeError, "one dtype"),
        ("rm C", dict(x=x, running_mean=np.zeros(2), running_var=np.ones(2)), ValueError,
         "running_mean has shape"),
        ("rv only", dict(x=x, running_var=rv), ValueError, "only running_var"),
        ("eps<0", dict(x=x, eps=-1e-5), ValueError, "eps=-1e-05"),
        ("eps nan", dict(x=x, eps=float("nan")), ValueError, "finite and >= 0"),
        ("eps str", dict(x=x, eps="1e-5"), TypeError, "eps must be a real number"),
        ("momentum str", dict(x=x, momentum="0.1"), TypeError, "momentum must be"),
        ("cumulative", dict(x=x, running_mean=rm, running_var=rv, momentum=None), ValueError,
         "num_batches_tracked"),
        ("nbt", dict(x=x, running_mean=rm, running_var=rv, momentum=None,
                     num_batches_tracked=-1), ValueError, "num_batches_tracked must be"),
        ("nbt float", dict(x=x, running_mean=rm, running_var=rv, momentum=None,
                           num_batches_tracked=1.0), TypeError, "num_batches_tracked must be"),
        ("nbt huge", dict(x=x, running_mean=rm, running_var=rv, momentum=None,
                          num_batches_tracked=10**400), ValueError, r"\[0, 2\*\*63\)"),
        ("eps huge int", dict(x=x, eps=10**400), ValueError, "finite and >= 0"),
        ("x masked", dict(x=np.ma.masked_array(x)), TypeError, r"masked array.*getdata"),
        ("weight masked", dict(x=x, weight=np.ma.masked_array(v)), TypeError, "masked array"),
        ("x big-endian", dict(x=x.astype(">f4")), TypeError, r"x.astype\(np.float32\)"),
        ("weight int, x float32", dict(x=x.astype(np.float32), weight=np.ones(3, int)),
         TypeError, r"weight.astype\(np.float32\)"),
        ("buffer stride 0", dict(x=x, running_mean=np.lib.stride_tricks.as_strided(
            np.zeros(1), shape=(3,), strides=(0,)), running_var=rv), ValueError,
         "running_mean has stride 0"),
        ("inference no stats", dict(x=x, training=False), ValueError, "pass running_mean"),
        ("training str", dict(x=x, training="yes"), TypeError, "training must be True or False"),
        ("shared", dict(x=x, running_mean=rm, running_var=rm), ValueError, "share memory"),
    ]


@pytest.mark.parametrize(("kwargs", "exc", "match"),
                         [c[1:] for c in _fwd_cases()], ids=[c[0] for c in _fwd_cases()])
def test_forward_rejects_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        batch_norm_forward(**kwargs)


def test_read_only_running_buffers_are_rejected_and_untouched():
    x = np.arange(12.0).reshape(4, 3)
    rm, rv = np.zeros(3), np.ones(3)
    rv.flags.writeable = False
    with pytest.raises(ValueError, match="running_var is read-only"):
        batch_norm_forward(x, running_mean=rm, running_var=rv)
    np.testing.assert_array_equal(rm, 0.0)


@pytest.mark.parametrize(("kwargs", "exc", "match"),
                         [c[1:] for c in _fwd_cases()], ids=[c[0] for c in _fwd_cases()])
def test_errors_leave_running_buffers_exactly_as_before(kwargs, exc, match):
    rm = np.array([0.5, -1.0, 2.0])
    rv = np.array([1.5, 2.0, 0.25])
    kwargs = dict(kwargs)
    given = "running_mean" in kwargs or "running_var" in kwargs
    if not given and kwargs.get("training", True) is True:
        kwargs.update(running_mean=rm, running_var=rv)
    buffers = [kwargs[k] for k in ("running_mean", "running_var") if k in kwargs]
    before = [a.copy() for a in buffers]
    with pytest.raises(exc, match=match):
        batch_norm_forward(**kwargs)
    for a, c in zip(buffers, before, strict=True):
        np.testing.assert_array_equal(a, c)


def _bwd_cases():
    x = np.arange(24.0).reshape(4, 3, 2)
    dy = np.ones_like(x)
    m, s = np.zeros(3), np.ones(3)
    return [
        ("dy shape", dict(dy=dy[:3], x=x, weight=None, mean=m, invstd=s), ValueError,
         "dy has shape"),
        ("dy dtype", dict(dy=dy.astype(np.float32), x=x, weight=None, mean=m, invstd=s),
         TypeError, "dy has dtype float32"),
        ("dy list", dict(dy=dy.tolist(), x=x, weight=None, mean=m, invstd=s), TypeError,
         "dy must be a NumPy array"),
        ("mean C", dict(dy=dy, x=x, weight=None, mean=np.zeros(2), invstd=s), ValueError,
         "mean has shape"),
        # float32 passes the generic dtype check (float16 would stop there) and
        # reaches the statistics' own rule: float64 or x's dtype
        ("invstd dtype", dict(dy=dy, x=x, weight=None, mean=m, invstd=s.astype(np.float32)),
         TypeError, r"invstd has dtype float32; pass float64 \(as batch_norm_forward returns\)"),
        ("weight C", dict(dy=dy, x=x, weight=np.ones(2), mean=m, invstd=s), ValueError,
         "weight has shape"),
        ("one value", dict(dy=dy[:1, :, :1], x=x[:1, :, :1], weight=None, mean=m, invstd=s),
         ValueError, "Expected more than 1 value per channel"),
        ("x 1d", dict(dy=dy.ravel(), x=x.ravel(), weight=None, mean=m, invstd=s), ValueError,
         "ndim 1"),
        ("training", dict(dy=dy, x=x, weight=None, mean=m, invstd=s, training=1), TypeError,
         "training must be True or False"),
    ]


@pytest.mark.parametrize(("kwargs", "exc", "match"),
                         [c[1:] for c in _bwd_cases()], ids=[c[0] for c in _bwd_cases()])
def test_backward_rejects_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        batch_norm_backward(**kwargs)


def test_moments_reject_bad_input():
    with pytest.raises(TypeError, match="float32 and float64"):
        batch_norm_moments(np.ones((3, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="ndim 1"):
        batch_norm_moments(np.ones(3))
