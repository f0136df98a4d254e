"""The kernels accept what PyTorch's CPU batch norm accepts, with its results.

Momentum outside [0, 1], empty batches, a bias without a weight, a channel
that starts with +-inf, and float64 variances when the first value (the
shift of the one-pass algorithm) is far from the mean. No PyTorch needed:
the expected values are PyTorch's documented behaviour, written out.
"""

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

#: float64 variance, relative: a few float64 rounding units (PyTorch's own
#: two-pass kernel was measured 6e-15 off on the same data; the one-pass
#: threshold meant for float32 let 3e-13 through).
VAR_RTOL64 = 3e-15

LAYOUTS = [((64, 3), 1), ((8, 3, 40, 40), 1), ((8, 3, 5, 5), 1), ((8, 5, 5, 3), -1),
           ((4, 20, 33, 33), 1), ((40, 12), 1)]


# --------------------------------------------------------------------------- #
# momentum: any real number (PyTorch does not check it)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("momentum", [1.5, -0.5, 7.0])
def test_training_momentum_outside_unit_interval_extrapolates(rng, momentum):
    x = rng.standard_normal((32, 4))
    rm, rv = rng.standard_normal(4), rng.uniform(0.5, 2.0, 4)
    rm0, rv0 = rm.copy(), rv.copy()
    batch_norm_forward(x, running_mean=rm, running_var=rv, momentum=momentum)
    np.testing.assert_allclose(rm, (1 - momentum) * rm0 + momentum * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(rv, (1 - momentum) * rv0 + momentum * x.var(0, ddof=1),
                               rtol=1e-12)


@pytest.mark.parametrize("momentum", [-3.0, 2.0, math.inf, math.nan, 10**400])
def test_inference_ignores_momentum(rng, momentum):
    x = rng.standard_normal((8, 3))
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    y, _, _ = batch_norm_forward(x, running_mean=rm, running_var=rv, training=False,
                                 momentum=momentum)
    want, _, _ = batch_norm_forward(x, running_mean=rm, running_var=rv, training=False)
    np.testing.assert_array_equal(y, want)


def test_non_finite_training_momentum_gives_nan_buffers_as_pytorch():
    x = np.arange(12.0).reshape(4, 3)
    rm, rv = np.zeros(3), np.ones(3)
    y, _, _ = batch_norm_forward(x, running_mean=rm, running_var=rv, momentum=math.nan)
    assert np.isnan(rm).all() and np.isnan(rv).all() and np.isfinite(y).all()


# --------------------------------------------------------------------------- #
# empty batches: empty output, buffers untouched
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 4, 4), (2, 3, 0), (0, 3, 0)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_batch_gives_empty_output_and_keeps_buffers(shape, training, dtype):
    x = np.empty(shape, dtype)
    w, b = np.full(3, 2.0, dtype), np.full(3, 0.5, dtype)
    rm, rv = np.array([0.5, -1.0, 2.0], dtype), np.array([1.5, 2.0, 0.25], dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, mean, invstd = batch_norm_forward(x, w, b, rm, rv, training=training)
    assert y.shape == shape and y.dtype == dtype
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    dx, dw, db = batch_norm_backward(np.empty(shape, dtype), x, w, mean, invstd,
                                     training=training)
    assert dx.shape == shape and dx.dtype == dtype
    # PyTorch: weight.grad and bias.grad are zeros (sums over no values)
    np.testing.assert_array_equal(dw, np.zeros(3, dtype))
    np.testing.assert_array_equal(db, np.zeros(3, dtype))


def test_zero_channels_and_channels_last_empty():
    y, mean, invstd = batch_norm_forward(np.empty((4, 0)), running_mean=np.empty(0),
                                         running_var=np.empty(0))
    assert y.shape == (4, 0) and mean.shape == (0,) and invstd.shape == (0,)
    y, _, _ = batch_norm_forward(np.empty((0, 4, 4, 3), np.float32), channel_axis=-1)
    assert y.shape == (0, 4, 4, 3)


def test_empty_moments_merge_as_nothing(rng):
    x = rng.standard_normal((10, 3))
    empty = batch_norm_moments(np.empty((0, 3)))
    assert empty.count == 0 and empty.mean.shape == (3,)
    whole = batch_norm_moments(x)
    merged = merge_moments(empty, whole)
    np.testing.assert_array_equal(merged.mean, whole.mean)
    np.testing.assert_array_equal(merged.m2, whole.m2)
    assert isinstance(merged, Moments)


def test_one_value_per_channel_still_rejected_in_training():
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        batch_norm_forward(np.ones((1, 3)))


# --------------------------------------------------------------------------- #
# a bias without a weight
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(("shape", "axis"), LAYOUTS[:4])
def test_backward_returns_dbias_for_a_bias_without_weight(rng, training, shape, axis):
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    c = shape[axis]
    b = rng.standard_normal(c)
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    _, mean, invstd = batch_norm_forward(x, None, b, rm, rv, training=training,
                                         channel_axis=axis)
    dx, dw, db = batch_norm_backward(dy, x, None, mean, invstd, training=training,
                                     channel_axis=axis, bias=b)
    assert dw is None
    reduce = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    np.testing.assert_allclose(db, dy.sum(axis=reduce), rtol=1e-12, atol=1e-12)
    # dx does not depend on whether the bias is there
    dx0, dw0, db0 = batch_norm_backward(dy, x, None, mean, invstd, training=training,
                                        channel_axis=axis)
    np.testing.assert_array_equal(dx, dx0)
    assert dw0 is None and db0 is None  # no affine step: as before


def test_backward_checks_the_bias_shape():
    x = np.arange(12.0).reshape(4, 3)
    with pytest.raises(ValueError, match="bias has shape"):
        batch_norm_backward(x, x, None, np.zeros(3), np.ones(3), bias=np.zeros(2))


# --------------------------------------------------------------------------- #
# a channel that starts with +-inf
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "axis"), LAYOUTS)
def test_first_value_infinite_gives_infinite_mean_like_pytorch(rng, sign, dtype, shape, axis):
    x = rng.standard_normal(shape).astype(dtype)
    xm = np.moveaxis(x, axis, -1)
    xm[(0,) * (xm.ndim - 1) + (1,)] = sign * np.inf
    c = shape[axis]
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    y, mean, invstd = batch_norm_forward(x, running_mean=rm, running_var=rv,
                                         channel_axis=axis)
    # PyTorch: mean +-inf, variance NaN (inf - inf), running mean +-inf
    assert mean[1] == sign * np.inf and rm[1] == sign * np.inf
    assert np.isnan(invstd[1]) and np.isnan(rv[1])
    assert np.isnan(np.moveaxis(y, axis, -1)[..., 1]).all()
    assert np.isfinite(np.delete(mean, 1)).all() and np.isfinite(np.delete(rm, 1)).all()
    assert batch_norm_moments(x, channel_axis=axis).mean[1] == sign * np.inf


def test_first_value_nan_still_gives_nan_mean():
    x = np.arange(12.0).reshape(4, 3)
    x[0, 2] = np.nan
    _, mean, _ = batch_norm_forward(x)
    assert np.isnan(mean[2]) and np.isfinite(mean[:2]).all()


# --------------------------------------------------------------------------- #
# float64 variance when the first value is far from the mean
# --------------------------------------------------------------------------- #


def _exact_m2(values: np.ndarray) -> float:
    """Sum of squared deviations with exactly rounded sums (math.fsum)."""
    mu = math.fsum(values) / values.size
    return math.fsum((values - mu) ** 2)


@pytest.mark.parametrize("z", [1.0, 1.5, 3.0, 10.0, 30.0])
@pytest.mark.parametrize(("shape", "axis"), [((200_000, 2), 1), ((50, 2, 64, 64), 1),
                                             ((400, 2, 20, 25), 1), ((200, 50, 20, 2), -1),
                                             ((20, 20, 64, 64), 1)])
def test_float64_variance_with_an_outlying_first_value(rng, z, shape, axis):
    x = rng.standard_normal(shape) + 5.0
    xm = np.moveaxis(x, axis, -1)
    xm[(0,) * (xm.ndim - 1) + (0,)] = 5.0 + z  # z standard deviations from the mean
    m = batch_norm_moments(x, channel_axis=axis)
    values = np.moveaxis(x, axis, 0)[0].ravel()
    want = _exact_m2(values)
    assert abs(m.m2[0] - want) / want <= VAR_RTOL64, (z, m.m2[0], want)
    _, _, invstd = batch_norm_forward(x, channel_axis=axis, eps=0.0)
    assert abs(invstd[0] ** -2 * values.size - want) / want <= VAR_RTOL64 + 1e-15
