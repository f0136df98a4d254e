"""Literal tests of the kernels' public wrappers where the suite's broader tests are silent.

Empty batches follow PyTorch's CPU batch norm (an empty output, buffers left
alone, zero parameter gradients); every expected value below is written out
by hand from that rule or from the definitions (Ioffe & Szegedy 2015,
Algorithm 1), never read from the code under test.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bnproof.kernels import batch_norm_backward, batch_norm_forward, batch_norm_moments


def test_moments_of_an_empty_batch_are_the_identity_of_merging():
    m = batch_norm_moments(np.empty((0, 3, 5), np.float32), channel_axis=1)
    assert type(m.count) is int and m.count == 0  # 0 samples x 5 positions
    for field in (m.mean, m.m2, m.mean_lo):
        assert field.shape == (3,) and field.dtype == np.float64
        assert np.array_equal(field, np.zeros(3))
    # three separate arrays: writing one must not change another
    m.mean[0] = 1.0
    assert m.m2[0] == 0.0 and m.mean_lo[0] == 0.0
    m.m2[1] = 1.0
    assert m.mean_lo[1] == 0.0


def test_moments_of_a_single_value_are_that_value():
    m = batch_norm_moments(np.array([[2.5]], np.float32))
    assert m.count == 1
    assert m.mean.tolist() == [2.5] and m.m2.tolist() == [0.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_forward_of_an_empty_batch(dtype):
    x = np.empty((0, 3), dtype)
    rm = np.array([1.0, 2.0, 3.0], dtype)
    rv = np.array([4.0, 5.0, 6.0], dtype)
    y, mean, invstd = batch_norm_forward(x, None, None, rm, rv, training=True)
    assert y.shape == (0, 3) and y.dtype == dtype
    for stat in (mean, invstd):  # no values, no statistics
        assert stat.shape == (3,) and stat.dtype == np.float64 and np.isnan(stat).all()
    assert rm.tolist() == [1.0, 2.0, 3.0] and rv.tolist() == [4.0, 5.0, 6.0]


def test_inference_forward_of_an_empty_batch_returns_the_running_statistics():
    x = np.empty((0, 3, 2), np.float32)
    rm = np.array([1.0, -2.0, 3.0], np.float32)
    rv = np.array([3.0, 0.0, -2.0], np.float32)  # -2: NaN, not an exception
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the documented promise: no floating-point warning
        y, mean, invstd = batch_norm_forward(x, None, None, rm, rv, training=False, eps=1.0)
    assert y.shape == (0, 3, 2) and y.dtype == np.float32
    assert mean.dtype == np.float64 and mean.tolist() == [1.0, -2.0, 3.0]
    assert invstd.dtype == np.float64
    assert invstd[0] == 0.5 and invstd[1] == 1.0  # 1 / sqrt(3 + 1), 1 / sqrt(0 + 1)
    assert np.isnan(invstd[2])  # 1 / sqrt(-2 + 1)


def test_inference_forward_of_one_sample_normalizes_it():
    x = np.array([[1.0, 2.0, -3.0]], np.float32)
    rm = np.zeros(3, np.float32)
    rv = np.full(3, 3.0, np.float32)
    y, mean, invstd = batch_norm_forward(x, None, None, rm, rv, training=False, eps=1.0)
    assert y.tolist() == [[0.5, 1.0, -1.5]]  # x / sqrt(3 + 1)
    assert invstd.tolist() == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_backward_of_an_empty_batch(dtype, training):
    x = np.empty((0, 3, 4), dtype)
    dy = np.empty((0, 3, 4), dtype)
    mean, invstd = np.zeros(3), np.ones(3)
    w = np.ones(3, dtype)
    dx, dw, db = batch_norm_backward(dy, x, w, mean, invstd, training=training)
    assert dx.shape == (0, 3, 4) and dx.dtype == dtype
    for grad in (dw, db):  # sums over no values: zero, in x's dtype
        assert grad.shape == (3,) and grad.dtype == dtype and grad.tolist() == [0.0] * 3
    dw[0] = 1.0  # two arrays, not one
    assert db[0] == 0.0
    # no weight, no bias: no parameter gradients; a bias alone: dbias only
    assert batch_norm_backward(dy, x, None, mean, invstd, training=training)[1:] == (None, None)
    _, dw, db = batch_norm_backward(dy, x, None, mean, invstd, training=training,
                                    bias=np.zeros(3, dtype))
    assert dw is None and db.dtype == dtype and db.tolist() == [0.0] * 3


def test_backward_checks_the_bias_it_is_given():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    mean, invstd = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError) as err:
        batch_norm_backward(x, x, None, mean, invstd, bias=np.zeros(4, np.float32))
    assert str(err.value) == ("bias has shape (4,) but x has 3 channels; "
                              "pass bias of shape (3,)")
    with pytest.raises(TypeError) as err:
        batch_norm_backward(x, x, None, mean, invstd, bias=np.zeros(3))
    assert str(err.value) == ("bias has dtype float64 but x has dtype float32; pass all "
                              "arrays in one dtype (e.g. bias.astype(np.float32))")
    with pytest.raises(TypeError, match="batch_norm_backward"):
        batch_norm_backward(x, x, None, mean, invstd, bias=[0.0, 0.0, 0.0])


def test_inference_backward_of_one_value():
    x = np.array([[2.0]], np.float32)
    dy = np.array([[3.0]], np.float32)
    dx, dw, db = batch_norm_backward(dy, x, np.array([2.0], np.float32), np.zeros(1),
                                     np.array([0.5]), training=False)
    # dx = dy gamma invstd; dgamma = sum(dy (x - mu)) invstd; dbeta = sum(dy)
    assert dx.tolist() == [[3.0]] and dw.tolist() == [3.0] and db.tolist() == [3.0]
