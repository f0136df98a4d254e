"""bnproof.testing.check_grads: passes correct gradients, catches wrong ones."""

import numpy as np
import pytest

from bnproof.kernels import batch_norm_backward, batch_norm_forward
from bnproof.testing import EPS, RTOL, GradCheck, check_grads, grad_errors


def _bn(x, w, b):
    return batch_norm_forward(x, w, b)[0]


def _bn_vjp(u, x, w, b, training=True):
    _, mean, invstd = batch_norm_forward(x, w, b)
    return batch_norm_backward(u, x, w, mean, invstd, training=training)


def test_known_gradients_pass():
    x = np.linspace(-1.0, 2.0, 7)
    res = check_grads(np.sin, lambda u, x: [u * np.cos(x)], [x])
    assert isinstance(res, GradCheck) and res.passed
    assert res.max_rel_err < 1e-6  # check_grads' documented RTOL (bnproof/testing.py)
    # a function of two arrays with a matrix Jacobian
    a = np.arange(6.0).reshape(2, 3) / 7
    v = np.array([0.3, -1.2, 2.0])
    check_grads(lambda a, v: np.tanh(a @ v),
                lambda u, a, v: [np.outer(u * (1 - np.tanh(a @ v) ** 2), v),
                                 a.T @ (u * (1 - np.tanh(a @ v) ** 2))], [a, v])


def test_batch_norm_backward_passes(rng):
    x = rng.standard_normal((9, 4)) * 2 + 3
    w = rng.normal(1, 0.3, 4)
    b = rng.normal(0, 0.3, 4)
    res = check_grads(_bn, _bn_vjp, [x, w, b], directions=5, seed=1)
    assert len(res.numeric) == 5
    np.testing.assert_allclose(res.numeric, res.analytic, rtol=1e-6)


def test_wrong_gradient_is_caught(rng):
    # negative control: the inference-mode backward ignores that the batch
    # statistics depend on x (the paper's section 2 mistake)
    x = rng.standard_normal((9, 4)) * 2 + 3
    w = rng.normal(1, 0.3, 4)
    b = rng.normal(0, 0.3, 4)
    res = grad_errors(_bn, lambda u, *a: _bn_vjp(u, *a, training=False), [x, w, b])
    assert not res.passed and res.max_rel_err > 1e-2
    with pytest.raises(AssertionError, match="gradient check failed"):
        check_grads(_bn, lambda u, *a: _bn_vjp(u, *a, training=False), [x, w, b])
    # a gradient off by a factor 1 + 1e-4 is caught too
    with pytest.raises(AssertionError):
        check_grads(np.sin, lambda u, x: [u * np.cos(x) * (1 + 1e-4)], [np.linspace(0, 1, 5)])


def test_a_wrong_gradient_of_a_large_input_is_caught(rng):
    # directions are scaled to each input: with unit directions, x of size
    # 1e7 (Jacobian 1e-7) weighed 1e-7 against weight and bias, and a VJP
    # that returned dx = 0 passed
    x = rng.standard_normal((4, 3, 5)) * 1e7
    w = rng.standard_normal(3)
    b = rng.standard_normal(3)

    def zero_dx(u, x, w, b):
        return [np.zeros_like(x), *_bn_vjp(u, x, w, b)[1:]]

    assert check_grads(_bn, _bn_vjp, [x, w, b]).passed
    res = grad_errors(_bn, zero_dx, [x, w, b])
    assert not res.passed and res.max_rel_err > 0.1


def test_nan_in_any_direction_fails():
    calls = []

    def fun(x):  # NaN after the first direction's two evaluations (and y0)
        calls.append(1)
        return 2 * x if len(calls) <= 3 else np.full_like(x, np.nan)

    res = grad_errors(fun, lambda u, x: [2 * u], [np.array([1.0, 2.0, 3.0])])
    assert np.isnan(res.max_rel_err) and not res.passed


def test_is_deterministic_for_a_seed():
    x = [np.linspace(0, 1, 5)]
    vjp = lambda u, x: [u * np.cos(x)]  # noqa: E731
    assert grad_errors(np.sin, vjp, x, seed=3) == grad_errors(np.sin, vjp, x, seed=3)
    assert grad_errors(np.sin, vjp, x, seed=3) != grad_errors(np.sin, vjp, x, seed=4)


def test_constants_are_the_documented_ones():
    # stated as numbers: the step balances truncation and rounding near
    # eps_mach**(1/3) ~ 6e-6, and 1e-6 is 10**4 above the finite-difference
    # error (bnproof/testing.py); a change to either must change this test too
    assert EPS == 6e-6 and RTOL == 1e-6


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(args=np.ones(3)), TypeError, "wrap a single array"),
        (dict(args=[]), TypeError, "non-empty"),
        (dict(args=[np.array(["a"])]), TypeError, "real numbers"),
        (dict(args=[np.array([1.0, np.inf])]), ValueError, "inf or NaN"),
        (dict(args=[np.ones(3)], directions=0), ValueError, "directions"),
        (dict(args=[np.ones(3)], directions=2.0), TypeError, "directions"),
        (dict(args=[np.ones(3)], eps=0.0), ValueError, "eps must be"),
        (dict(args=[np.ones(3)], rtol=-1.0), ValueError, "rtol must be"),
        (dict(args=[np.ones(3)], rtol=True), TypeError, "rtol must be"),
        (dict(args=[np.ones(3)], fun=lambda x: None), ValueError, "fun returned NoneType"),
        (dict(args=[np.ones(3)], vjp=lambda u, x: u), ValueError, "list or tuple of 1 arrays"),
        (dict(args=[np.ones(3)], vjp=lambda u, x: None), ValueError, "list or tuple of 1"),
        (dict(args=[np.ones(3)], vjp=lambda u, x: [u[:2]]), ValueError, "has shape"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    kwargs = {"fun": np.sin, "vjp": lambda u, x: [u * np.cos(x)], **kwargs}
    with pytest.raises(exc, match=match):
        grad_errors(**kwargs)


def test_numpy_scalars_are_accepted():
    res = grad_errors(np.sin, lambda u, x: [u * np.cos(x)], [np.linspace(0, 1, 5)],
                      directions=np.int64(2), eps=np.float32(1e-5), rtol=np.float64(1e-6))
    assert res.passed and len(res.numeric) == 2
