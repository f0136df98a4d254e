"""Each input guard of the kernels' public functions, reached past every earlier check.

A bad-input test whose value an earlier, more generic check already rejects
never reaches the guard it is named after: every case here passes all the
checks before its own, and the message is matched whole.
"""

import re

import numpy as np
import pytest

from bnproof.kernels import batch_norm_backward, batch_norm_forward, batch_norm_moments

F, B = "batch_norm_forward", "batch_norm_backward"


def _x(shape=(4, 3), dtype=np.float64):
    return (np.arange(np.prod(shape)).reshape(shape) % 5).astype(dtype)


def _raises(exc, message):
    return pytest.raises(exc, match=f"^{re.escape(message)}$")


@pytest.mark.parametrize(
    ("x", "cast"),
    [
        (_x(dtype=np.int64), "np.float64"),
        (_x(dtype=np.int8), "np.float64"),
        (_x(dtype=np.float16), "np.float32"),
        (_x(dtype=np.complex64), "np.float64"),
        (_x().astype(">f4"), "np.float32"),  # byte order: the same width, native
        (_x().astype(">f8"), "np.float64"),
    ],
)
def test_dtype_suggests_the_cast_for_x(x, cast):
    with _raises(TypeError, f"x has dtype {x.dtype}; {F} supports float32 and float64 only "
                            f"(cast with x.astype({cast}))"):
        batch_norm_forward(x)


def test_a_vector_of_another_kind_is_cast_like_x():
    with _raises(TypeError, f"weight has dtype int64; {F} supports float32 and float64 only "
                            "(cast with weight.astype(np.float32))"):
        batch_norm_forward(_x(dtype=np.float32), np.ones(3, np.int64))


def test_not_an_array_and_masked_arrays():
    with _raises(TypeError, "x must be a NumPy array, got list (convert with "
                            f"np.asarray(x, dtype=np.float32) before calling {F})"):
        batch_norm_forward([[1.0, 2.0], [3.0, 4.0]])
    with _raises(TypeError, f"x is a masked array; {F} would ignore its mask and use the hidden "
                            "values (pass np.ma.getdata(x) if they are valid, or x.filled(v))"):
        batch_norm_forward(np.ma.masked_array(_x()))


def test_shape_and_axis_guards():
    with _raises(ValueError, f"x has ndim 1 (shape (5,)); {F} needs (N, C) or (N, C, *spatial) "
                             "(add a channel axis, e.g. x.reshape(-1, 1))"):
        batch_norm_forward(np.ones(5))
    with _raises(TypeError, "channel_axis must be an int, got True (use 1 for (N, C, ...) or -1 "
                            "for channels-last (N, ..., C))"):
        batch_norm_forward(_x(), channel_axis=True)
    for axis in (2, -3):
        with _raises(ValueError, f"channel_axis={axis} is out of range for x with ndim 2 (use 1 "
                                 "for (N, C, ...) or -1 for channels-last (N, ..., C))"):
            batch_norm_forward(_x(), channel_axis=axis)
    with _raises(ValueError, "channel_axis=-2 is the batch axis of x (shape (4, 3)); use 1 for "
                             "(N, C, ...) or -1 for channels-last (N, ..., C)"):
        batch_norm_forward(_x(), channel_axis=-2)
    # an empty x is no error: PyTorch returns an empty output (tests/test_kernels_semantics.py)


def test_valid_axes_at_the_ends_of_the_range():
    x = _x((4, 3, 2))
    y_last, mean_last, _ = batch_norm_forward(x, channel_axis=np.int64(2))
    y_neg, mean_neg, _ = batch_norm_forward(x, channel_axis=-1)
    assert mean_last.shape == (2,)
    np.testing.assert_array_equal(y_last, y_neg)
    np.testing.assert_allclose(mean_last, x.mean(axis=(0, 1)))


def test_channel_vector_guards():
    x = _x()
    with _raises(ValueError, "weight has shape (4,) but x has 3 channels; pass weight of shape "
                             "(3,)"):
        batch_norm_forward(x, np.ones(4))
    with _raises(TypeError, "bias has dtype float32 but x has dtype float64; pass all arrays in "
                            "one dtype (e.g. bias.astype(np.float64))"):
        batch_norm_forward(x, None, np.zeros(3, np.float32))
    shared = np.lib.stride_tricks.as_strided(np.zeros(1), shape=(3,), strides=(0,))
    with _raises(ValueError, "running_mean has stride 0, so its channels share memory and "
                             "updates would overwrite each other; pass an array with one element "
                             "per channel (e.g. np.zeros(3, np.float64))"):
        batch_norm_forward(x, running_mean=shared, running_var=np.ones(3))
    ro = np.ones(3)
    ro.flags.writeable = False
    with _raises(ValueError, "running_var is read-only but training updates it in place; pass a "
                             "writeable array (e.g. running_var.copy())"):
        batch_norm_forward(x, running_mean=np.zeros(3), running_var=ro)


def test_buffers_that_are_fine_after_all():
    x = _x((4, 1))
    # one channel: a stride of 0 is one element per channel
    rm = np.lib.stride_tricks.as_strided(np.zeros(1), shape=(1,), strides=(0,))
    batch_norm_forward(x, running_mean=rm, running_var=np.ones(1))
    np.testing.assert_allclose(rm, 0.1 * x.mean())
    # reversed buffers are separate elements, updated in their own order
    base_m, base_v = np.zeros(3), np.ones(3)
    batch_norm_forward(_x(), running_mean=base_m[::-1], running_var=base_v[::-1])
    np.testing.assert_allclose(base_m[::-1], 0.1 * _x().mean(axis=0))
    # read-only buffers are fine where nothing is written: inference
    ro_m, ro_v = np.zeros(3), np.ones(3)
    ro_m.flags.writeable = ro_v.flags.writeable = False
    batch_norm_forward(_x(), running_mean=ro_m, running_var=ro_v, training=False)


@pytest.mark.parametrize("given", ["running_mean", "running_var"])
def test_one_running_buffer_alone(given):
    with _raises(ValueError, f"only {given} was given; pass both running_mean and running_var "
                             "or neither"):
        batch_norm_forward(_x(), **{given: np.zeros(3)})


def test_scalar_guards():
    x, rm, rv = _x(), np.zeros(3), np.ones(3)
    with _raises(TypeError, "eps must be a real number >= 0, got True (e.g. eps=1e-5)"):
        batch_norm_forward(x, eps=True)
    with _raises(ValueError, "eps=inf must be finite and >= 0 (PyTorch's default is 1e-5)"):
        batch_norm_forward(x, eps=float("inf"))
    with _raises(ValueError, "eps=-inf must be finite and >= 0 (PyTorch's default is 1e-5)"):
        batch_norm_forward(x, eps=-10**400)
    with _raises(TypeError, "momentum must be a real number or None, got False (e.g. 0.1)"):
        batch_norm_forward(x, momentum=False)
    batch_norm_forward(x, momentum=1.0000001)  # accepted, as in PyTorch (extrapolates)
    with _raises(TypeError, "num_batches_tracked must be an int >= 0, got True (pass PyTorch's "
                            "count as int(module.num_batches_tracked))"):
        batch_norm_forward(x, rm, rv, momentum=None, num_batches_tracked=True)
    with _raises(ValueError, "num_batches_tracked must be an int in [0, 2**63), got "
                             "9223372036854775808 (the number of batches already in the "
                             "running buffers)"):
        batch_norm_forward(x, running_mean=rm, running_var=rv, momentum=None,
                           num_batches_tracked=2**63)
    with _raises(ValueError, "momentum=None (cumulative average) needs num_batches_tracked, the "
                             "number of batches already in the running buffers (0 for the first "
                             "batch)"):
        batch_norm_forward(x, running_mean=rm, running_var=rv, momentum=None)
    with _raises(ValueError, "training=False normalizes with running statistics; pass "
                             "running_mean and running_var (or use training=True)"):
        batch_norm_forward(x, training=False)
    with _raises(TypeError, "training must be True or False, got 1"):
        batch_norm_forward(x, training=1)
    with _raises(ValueError, "running_mean and running_var share memory; pass two separate "
                             "arrays"):
        batch_norm_forward(x, running_mean=rm, running_var=rm)
    assert not np.any(rm) and np.all(rv == 1)


def test_scalars_at_the_ends_of_their_ranges():
    x = _x()
    for momentum in (0, 1, np.float32(0.5)):
        batch_norm_forward(x, running_mean=np.zeros(3), running_var=np.ones(3),
                           momentum=momentum)
    rm, rv = np.zeros(3), np.ones(3)
    batch_norm_forward(x, running_mean=rm, running_var=rv, momentum=None,
                       num_batches_tracked=2**63 - 1)
    np.testing.assert_allclose(rm, x.mean(axis=0) / 2**63, rtol=1e-15)  # weight 1 / (n + 1)
    rm, rv = np.zeros(3), np.ones(3)
    batch_norm_forward(x, running_mean=rm, running_var=rv, momentum=None, num_batches_tracked=0)
    np.testing.assert_allclose(rm, x.mean(axis=0))  # the first batch replaces the buffers
    np.testing.assert_allclose(rv, x.var(axis=0, ddof=1))
    # momentum=None without buffers, or in inference, needs no count
    batch_norm_forward(x, momentum=None)
    batch_norm_forward(x, running_mean=rm, running_var=rv, momentum=None, training=False)
    _, _, invstd = batch_norm_forward(_x((4, 1)) * 0 + 1, eps=0)  # eps = 0 is allowed
    assert np.isnan(invstd[0]) or np.isinf(invstd[0])


def test_one_value_per_channel_in_training_only():
    message = ("Expected more than 1 value per channel when training, got input size (1, 3, 1) "
               "(use training=False or a batch with more than one value per channel)")
    with _raises(ValueError, message):
        batch_norm_forward(np.ones((1, 3, 1)))
    y, _, _ = batch_norm_forward(np.ones((1, 3, 1)), running_mean=np.zeros(3),
                                 running_var=np.ones(3), training=False)
    assert y.shape == (1, 3, 1)
    x = np.ones((1, 3, 2))  # two values per channel: fine
    batch_norm_forward(x)
    with _raises(ValueError, message.replace("(1, 3, 1)", "(1, 3)")):
        batch_norm_backward(np.ones((1, 3)), np.ones((1, 3)), None, np.zeros(3), np.ones(3))
    dx, dw, db = batch_norm_backward(np.ones((1, 3)), np.ones((1, 3)), None, np.zeros(3),
                                     np.ones(3), training=False)
    assert dx.shape == (1, 3) and dw is None and db is None


def test_backward_guards():
    x = _x()
    dy, m, s = np.ones_like(x), np.zeros(3), np.ones(3)
    with _raises(ValueError, "dy has shape (4, 1) but x has shape (4, 3); pass the gradient of y, "
                             "which has x's shape"):
        batch_norm_backward(dy[:, :1], x, None, m, s)
    with _raises(TypeError, "dy has dtype float32 but x has dtype float64; pass all arrays in one "
                            "dtype (e.g. dy.astype(np.float64))"):
        batch_norm_backward(dy.astype(np.float32), x, None, m, s)
    with _raises(TypeError, f"dy has dtype int64; {B} supports float32 and float64 only (cast "
                            "with dy.astype(np.float64))"):
        batch_norm_backward(dy.astype(np.int64), x, None, m, s)
    with _raises(ValueError, "mean has shape (2,) but x has 3 channels; pass the mean returned by "
                             "batch_norm_forward (shape (3,))"):
        batch_norm_backward(dy, x, None, np.zeros(2), s)
    # the rule of the statistics: float64 or x's dtype; reached with a float
    # dtype the generic check accepts (float16 stops before it)
    with _raises(TypeError, "invstd has dtype float32; pass float64 (as batch_norm_forward "
                            "returns) or float64 like x"):
        batch_norm_backward(dy, x, None, m, s.astype(np.float32))
    with _raises(TypeError, f"invstd has dtype float16; {B} supports float32 and float64 only "
                            "(cast with invstd.astype(np.float64))"):
        batch_norm_backward(dy, x, None, m, s.astype(np.float16))
    x32 = x.astype(np.float32)
    dx, dw, db = batch_norm_backward(dy.astype(np.float32), x32, np.ones(3, np.float32),
                                     m.astype(np.float32), s)  # x's dtype and float64 mixed
    assert dx.dtype == dw.dtype == db.dtype == np.float32


def test_backward_returns_weight_gradients_only_with_a_weight():
    x = _x((6, 3))
    dy = np.cos(np.arange(18.0)).reshape(6, 3)
    _, mean, invstd = batch_norm_forward(x)
    for training in (True, False):
        dx, dw, db = batch_norm_backward(dy, x, None, mean, invstd, training=training)
        assert dw is None and db is None and dx.shape == x.shape
        dx_w, dw, db = batch_norm_backward(dy, x, np.ones(3), mean, invstd, training=training)
        np.testing.assert_array_equal(dx_w, dx)
        np.testing.assert_allclose(db, dy.sum(axis=0), rtol=1e-14)
        np.testing.assert_allclose(dw, (dy * (x - mean) * invstd).sum(axis=0), rtol=1e-12,
                                   atol=1e-14)
    dx_inf, _, _ = batch_norm_backward(dy, x, 2 * np.ones(3), mean, invstd, training=False)
    np.testing.assert_allclose(dx_inf, 2 * dy * invstd, rtol=1e-15)


def test_moments_guards_name_the_moments_function():
    with _raises(TypeError, "x has dtype int32; batch_norm_moments supports float32 and float64 "
                            "only (cast with x.astype(np.float64))"):
        batch_norm_moments(np.ones((3, 2), dtype=np.int32))
    m = batch_norm_moments(_x((4, 3, 2)), channel_axis=-1)
    assert m.count == 12 and m.mean.shape == (2,)


def test_read_only_inputs_are_accepted_and_give_the_same_results():
    # inputs reach the kernels as read-only views; a read-only input must not
    # be refused on the way (nor made writeable)
    x = np.cos(np.arange(24.0)).reshape(4, 3, 2)
    dy = np.sin(np.arange(24.0)).reshape(4, 3, 2)
    y, mean, invstd = batch_norm_forward(x)
    dx, _, _ = batch_norm_backward(dy, x, None, mean, invstd)
    x_ro, dy_ro = x.copy(), dy.copy()
    x_ro.flags.writeable = dy_ro.flags.writeable = False
    y2, mean2, invstd2 = batch_norm_forward(x_ro)
    dx2, _, _ = batch_norm_backward(dy_ro, x_ro, None, mean2, invstd2)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(dx2, dx)
    np.testing.assert_array_equal(batch_norm_moments(x_ro).m2, batch_norm_moments(x).m2)
    assert not x_ro.flags.writeable and not dy_ro.flags.writeable


@pytest.mark.parametrize(
    ("func", "name"),
    [(F, "x"), (F, "weight"), (F, "bias"), (F, "running_mean"), (F, "running_var"),
     (B, "x"), (B, "dy"), (B, "weight"), (B, "mean"), (B, "invstd"),
     ("batch_norm_moments", "x")],
)
def test_every_array_argument_is_named_with_its_function(func, name):
    x = _x()
    args = {"x": x, "weight": np.ones(3), "bias": np.zeros(3), "running_mean": np.zeros(3),
            "running_var": np.ones(3), "dy": np.ones_like(x), "mean": np.zeros(3),
            "invstd": np.ones(3)}
    args[name] = args[name].astype(np.int64)
    message = (f"{name} has dtype int64; {func} supports float32 and float64 only "
               f"(cast with {name}.astype(np.float64))")
    with _raises(TypeError, message):
        if func == F:
            batch_norm_forward(args["x"], args["weight"], args["bias"], args["running_mean"],
                               args["running_var"])
        elif func == B:
            batch_norm_backward(args["dy"], args["x"], args["weight"], args["mean"],
                                args["invstd"])
        else:
            batch_norm_moments(args["x"])


@pytest.mark.parametrize(("value", "shown"), [(10**400, "inf"), (-(10**400), "-inf")])
def test_integers_too_large_for_a_float_are_shown_with_their_sign(value, shown):
    with _raises(ValueError, f"eps={shown} must be finite and >= 0 (PyTorch's default is 1e-5)"):
        batch_norm_forward(_x(), eps=value)
    # momentum is any real number, as in PyTorch: one too large for a float
    # acts as +-inf, and the running buffers become non-finite (no error)
    running_mean, running_var = np.zeros(3), np.ones(3)
    batch_norm_forward(_x(), running_mean=running_mean, running_var=running_var,
                       training=True, momentum=value)
    assert not np.isfinite(running_mean).any() and not np.isfinite(running_var).any()


def test_a_buffer_with_two_channels_in_one_element_is_refused():
    shared = np.lib.stride_tricks.as_strided(np.zeros(1), shape=(2,), strides=(0,))
    with pytest.raises(ValueError, match="running_var has stride 0"):
        batch_norm_forward(_x((4, 2)), running_mean=np.zeros(2), running_var=shared)


def test_read_only_weight_and_bias_are_accepted():
    w, b = np.full(3, 2.0), np.full(3, 0.5)
    w.flags.writeable = b.flags.writeable = False
    y, mean, invstd = batch_norm_forward(_x(), w, b)
    dx, dw, db = batch_norm_backward(np.ones((4, 3)), _x(), w, mean, invstd)
    np.testing.assert_allclose(y.mean(axis=0), 0.5, atol=1e-15)


def test_the_kernels_are_loaded_on_first_use(monkeypatch):
    from bnproof.kernels import _batch_norm, _jit

    monkeypatch.setattr(_batch_norm, "_backend_module", None)
    y, _, _ = batch_norm_forward(_x())
    assert _batch_norm._backend_module is _jit
    assert y.shape == (4, 3)


def test_backward_counts_values_per_channel_as_a_product():
    # (2, 3, 2): two samples times two positions, four values per channel
    x = np.cos(np.arange(12.0)).reshape(2, 3, 2)
    _, mean, invstd = batch_norm_forward(x)
    dx, _, _ = batch_norm_backward(np.ones_like(x), x, None, mean, invstd)
    np.testing.assert_allclose(dx, 0.0, atol=1e-15)


def test_statistics_in_x_dtype_are_used_in_float64():
    # float32 mean and invstd (allowed with float32 x) are converted before
    # the kernels: the result equals the one with the same values in float64
    rng = np.random.default_rng(5)
    x = (1e3 + rng.standard_normal((64, 3))).astype(np.float32)
    dy = rng.standard_normal((64, 3)).astype(np.float32)
    _, mean, invstd = batch_norm_forward(x)
    m32, s32 = mean.astype(np.float32), invstd.astype(np.float32)
    w = np.ones(3, np.float32)
    for training in (True, False):
        got = batch_norm_backward(dy, x, w, m32, s32, training=training)
        want = batch_norm_backward(dy, x, w, m32.astype(np.float64), s32.astype(np.float64),
                                   training=training)
        for g, v in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, v)


def test_backward_of_a_constant_channel_at_eps_0_gives_nan_without_warnings():
    # invstd is inf there; the wrapper's own float64 products run under
    # errstate, and pytest turns any floating-point warning into an error
    x = np.ones((4, 2))
    x[:, 1] = np.arange(4.0)
    _, mean, invstd = batch_norm_forward(x, eps=0.0)
    dx, dw, db = batch_norm_backward(np.ones_like(x), x, np.ones(2), mean, invstd)
    assert np.isnan(dw[0]) and np.isfinite(dw[1]) and db[0] == 4.0


def test_moments_carry_the_means_low_part():
    m = batch_norm_moments(1e8 + np.cos(np.arange(30.0)).reshape(10, 3))
    assert m.mean_lo is not None and m.mean_lo.shape == (3,) and m.mean_lo.dtype == np.float64


def test_a_bad_dy_is_cast_like_x():
    x = _x(dtype=np.float32)
    _, mean, invstd = batch_norm_forward(x)
    with _raises(TypeError, f"dy has dtype int64; {B} supports float32 and float64 only "
                            "(cast with dy.astype(np.float32))"):
        batch_norm_backward(np.ones((4, 3), np.int64), x, None, mean, invstd)
