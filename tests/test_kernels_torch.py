"""bnproof.kernels against PyTorch's CPU batch norm (values, gradients, running stats)."""

import numpy as np
import pytest

from bnproof.kernels import batch_norm_backward, batch_norm_forward

torch = pytest.importorskip("torch")

#: float64 agreement: both compute in float64 with different summation order.
RTOL64 = 1e-12
#: float32: PyTorch evaluates x * alpha + beta in float32 (about 1e-6 relative
#: at offset 0); bnproof is within 1 ulp of the exact result.
ATOL32 = 2e-5

CASES = [((16, 5), 1), ((4, 3, 5, 6), 1), ((4, 5, 6, 3), -1), ((2, 3, 4, 5, 6), 1)]


def _to_torch(arr, axis):
    t = torch.from_numpy(arr.copy())
    return t.movedim(-1, 1) if axis == -1 else t


def _from_torch(t, axis):
    t = t.detach()
    return (t.movedim(1, -1) if axis == -1 else t).numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "axis"), CASES)
def test_training_matches_torch(rng, shape, axis, dtype):
    c = shape[axis]
    x = (rng.standard_normal(shape) * 2 + 3).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = rng.normal(1, 0.3, c).astype(dtype)
    b = rng.normal(0, 0.3, c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())

    xt = _to_torch(x, axis).requires_grad_(True)
    wt = torch.from_numpy(w.copy()).requires_grad_(True)
    bt = torch.from_numpy(b.copy()).requires_grad_(True)
    yt = torch.nn.functional.batch_norm(xt, trm, trv, wt, bt, training=True, momentum=0.1,
                                        eps=1e-5)
    yt.backward(_to_torch(dy, axis))

    y, mean, invstd = batch_norm_forward(x, w, b, rm, rv, channel_axis=axis)
    dx, dw, db = batch_norm_backward(dy, x, w, mean, invstd, channel_axis=axis)
    if dtype == np.float64:
        close = dict(rtol=RTOL64, atol=RTOL64)
    else:
        close = dict(rtol=0, atol=ATOL32)
    np.testing.assert_allclose(y, _from_torch(yt, axis), **close)
    np.testing.assert_allclose(dx, _from_torch(xt.grad, axis), **close)
    np.testing.assert_allclose(dw, wt.grad.numpy(), **close)
    np.testing.assert_allclose(db, bt.grad.numpy(), **close)
    np.testing.assert_allclose(rm, trm.numpy(), **close)
    np.testing.assert_allclose(rv, trv.numpy(), **close)


def test_inference_and_cumulative_average_match_torch(rng):
    x = rng.standard_normal((8, 3, 4))
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    y, _, _ = batch_norm_forward(x, None, None, rm, rv, training=False)
    yt = torch.nn.functional.batch_norm(torch.from_numpy(x), torch.from_numpy(rm),
                                        torch.from_numpy(rv), training=False)
    np.testing.assert_allclose(y, yt.numpy(), rtol=RTOL64, atol=RTOL64)

    bn = torch.nn.BatchNorm1d(3, momentum=None, dtype=torch.float64)
    rm, rv = np.zeros(3), np.ones(3)
    for k in range(3):
        xb = rng.standard_normal((8, 3, 4)) + k
        bn(torch.from_numpy(xb))
        batch_norm_forward(xb, None, None, rm, rv, momentum=None, num_batches_tracked=k)
    np.testing.assert_allclose(rm, bn.running_mean.numpy(), rtol=RTOL64)
    np.testing.assert_allclose(rv, bn.running_var.numpy(), rtol=RTOL64)


def test_one_value_per_channel_message_matches_torch():
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        torch.nn.functional.batch_norm(torch.ones(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        batch_norm_forward(np.ones((1, 3)))


def test_nan_propagates_like_torch(rng):
    x = rng.standard_normal((6, 3)).astype(np.float32)
    x[2, 1] = np.nan
    y, _, _ = batch_norm_forward(x)
    yt = torch.nn.functional.batch_norm(torch.from_numpy(x), None, None, training=True)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(yt.numpy()))
