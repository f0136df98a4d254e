"""The drift experiment's network against a plain NumPy reference and finite differences."""

import math

import numpy as np
import pytest

from bnproof.experiments import _drift_network as net

pytest.importorskip("sklearn", reason="the drift experiment trains on scikit-learn's digits")

#: The documented constants: 32 hidden units, PyTorch's eps and momentum.
HIDDEN, EPS, MOMENTUM = 32, 1e-5, 0.1


def test_constants():
    assert (net.HIDDEN, net.EPS, net.MOMENTUM, net.SYNTHETIC_SHAPE) == (
        HIDDEN, EPS, MOMENTUM, (1024, 16, 4))


# --------------------------------------------------------------------------- #
# data and parameters
# --------------------------------------------------------------------------- #


def test_digits():
    u, labels, k = net._dataset("digits", 5)
    # scikit-learn's bundled digits: 1797 images of 8 x 8 pixels valued 0..16
    assert u.shape == (1797, 64) and u.dtype == np.float64 and k == 10
    assert u.min() == 0.0 and u.max() == 1.0
    assert np.all(np.isin(u * 16.0, np.arange(17)))
    assert labels.dtype == np.int64 and sorted(set(labels.tolist())) == list(range(10))


def test_synthetic():
    u, labels, k = net._dataset("synthetic", 3)
    assert u.shape == (1024, 16) and k == 4 and u.dtype == np.float64
    assert abs(u.mean()) < 0.05 and abs(u.std() - 1.0) < 0.05  # standard normal
    assert set(labels.tolist()) == {0, 1, 2, 3}
    again, labels_again, _ = net._dataset("synthetic", 3)
    assert np.array_equal(u, again) and np.array_equal(labels, labels_again)
    other, _, _ = net._dataset("synthetic", 4)
    assert not np.array_equal(u, other)
    # the seeding scheme is the reproducibility contract: stream [seed, 1, 0],
    # inputs first, then the teacher
    rng = np.random.default_rng([3, 1, 0])
    assert np.array_equal(u, rng.standard_normal((1024, 16)))
    teacher = rng.standard_normal((16, 4))
    assert np.array_equal(labels, np.argmax(u @ teacher, axis=1))


def test_init_params():
    p = net._init_params(64, 10, 1, "float64", random_b=False)
    assert p.W.shape == (64, HIDDEN) and p.V.shape == (HIDDEN, 10) and p.c.shape == (10,)
    assert all(a.dtype == np.float64 for a in p.arrays())
    assert np.array_equal(p.b, np.zeros(HIDDEN)) and np.array_equal(p.beta, np.zeros(HIDDEN))
    assert np.array_equal(p.gamma, np.ones(HIDDEN)) and np.array_equal(p.c, np.zeros(10))
    # W ~ N(0, 1/d), V ~ N(0, 1/HIDDEN): 2048 and 320 draws
    assert abs(p.W.std() * math.sqrt(64) - 1.0) < 0.1 and abs(p.W.mean()) < 0.05
    assert abs(p.V.std() * math.sqrt(HIDDEN) - 1.0) < 0.15
    rng = np.random.default_rng([1, 2, 64, 10])  # the seeding scheme (reproducibility)
    assert np.array_equal(p.W, rng.standard_normal((64, HIDDEN)) / 8.0)
    assert np.array_equal(p.V, rng.standard_normal((HIDDEN, 10)) / math.sqrt(HIDDEN))
    q = net._init_params(64, 10, 1, "float32", random_b=True)
    assert all(a.dtype == np.float32 for a in q.arrays())
    assert np.array_equal(q.W, p.W.astype(np.float32))  # the same start, rounded
    assert np.array_equal(q.b, rng.standard_normal(HIDDEN).astype(np.float32))
    assert not np.array_equal(net._init_params(64, 10, 2, "float64", False).W, p.W)


def test_params_arrays_and_finite():
    p = net._init_params(4, 3, 0, "float64", random_b=True)
    assert p.NAMES == ("W", "b", "gamma", "beta", "V", "c")
    assert [a is getattr(p, n) for a, n in zip(p.arrays(), p.NAMES, strict=True)] == [True] * 6
    assert p.finite() is True
    p.c[1] = math.inf
    assert p.finite() is False
    p.c[1] = 0.0
    p.W[0, 0] = math.nan
    assert p.finite() is False


# --------------------------------------------------------------------------- #
# a NumPy reference of the network
# --------------------------------------------------------------------------- #


def _ref_normalize(x, p, norm, stats):
    mean, var = (x.mean(axis=0), x.var(axis=0)) if stats is None else stats
    if norm == "center":
        return p.gamma * (x - mean) + p.beta
    return p.gamma * (x - mean) / np.sqrt(var + EPS) + p.beta


def _ref_loss(p, u, labels, norm, stats):
    x = u @ p.W + p.b
    h = np.tanh(_ref_normalize(x, p, norm, stats))
    logits = h @ p.V + p.c
    lse = np.log(np.exp(logits).sum(axis=1))
    return float(np.mean(lse - logits[np.arange(len(labels)), labels]))


def _small(seed=0, n=12, d=5, k=3):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, d)) + 2.0
    labels = rng.integers(0, k, n)
    p = net._init_params(d, k, seed, "float64", random_b=True)
    p.gamma = 1.0 + 0.3 * rng.standard_normal(HIDDEN)
    p.beta = 0.2 * rng.standard_normal(HIDDEN)
    p.c = 0.1 * rng.standard_normal(k)
    return u, labels, p


@pytest.mark.parametrize("norm", ["center", "center-scale"])
def test_normalize_matches_the_reference(norm):
    u, _, p = _small()
    x = u @ p.W + p.b
    y, mean, invstd = net._normalize(x, p, norm, None)
    assert np.allclose(y, _ref_normalize(x, p, norm, None), rtol=1e-12, atol=1e-12)
    assert np.allclose(mean, x.mean(axis=0), rtol=1e-12)
    expected_invstd = (np.ones(HIDDEN) if norm == "center"
                       else 1.0 / np.sqrt(x.var(axis=0) + EPS))
    assert np.allclose(invstd, expected_invstd, rtol=1e-10)
    stats = (np.linspace(-1.0, 1.0, HIDDEN), np.linspace(0.5, 2.0, HIDDEN))
    y, _, _ = net._normalize(x, p, norm, stats)
    assert np.allclose(y, _ref_normalize(x, p, norm, stats), rtol=1e-12, atol=1e-12)
    y32, _, _ = net._normalize(x.astype(np.float32), _as32(p), norm, None)
    assert y32.dtype == np.float32


def _as32(p):
    return net._Params(*(a.astype(np.float32) for a in p.arrays()))


def test_head_literally():
    # logits c = (0, ln 3) for every row: softmax (1/4, 3/4); label 0 costs ln 4,
    # label 1 costs ln 4/3; argmax is class 1, so one of the two rows is right
    p = net._Params(W=None, b=None, gamma=None, beta=None, V=np.zeros((2, 2)),
                    c=np.array([0.0, math.log(3.0)]))
    loss, accuracy, h, z, lse = net._head(np.zeros((2, 2)), p, np.array([0, 1]))
    assert loss == pytest.approx((math.log(4.0) + math.log(4.0 / 3.0)) / 2, rel=1e-15)
    assert accuracy == 0.5
    assert np.array_equal(h, np.zeros((2, 2)))
    assert np.allclose(z, [[-math.log(3.0), 0.0]] * 2)
    assert np.allclose(lse, [math.log(4.0 / 3.0)] * 2)
    # large logits do not overflow: the maximum is subtracted first
    p.c = np.array([1000.0, 1000.0 + math.log(3.0)])
    loss, *_ = net._head(np.zeros((2, 2)), p, np.array([0, 1]))
    assert loss == pytest.approx((math.log(4.0) + math.log(4.0 / 3.0)) / 2, rel=1e-12)


@pytest.mark.parametrize("norm", ["center", "center-scale"])
def test_evaluate_matches_the_reference(norm):
    u, labels, p = _small(1)
    loss, accuracy = net._evaluate(p, u, labels, norm)
    assert loss == pytest.approx(_ref_loss(p, u, labels, norm, None), rel=1e-12)
    x = u @ p.W + p.b
    h = np.tanh(_ref_normalize(x, p, norm, None))
    assert accuracy == float(np.mean(np.argmax(h @ p.V + p.c, axis=1) == labels))
    stats = (np.full(HIDDEN, 0.5), np.full(HIDDEN, 2.0))
    loss, _ = net._evaluate(p, u, labels, norm, stats)
    assert loss == pytest.approx(_ref_loss(p, u, labels, norm, stats), rel=1e-12)


def test_running_buffers():
    r = net._Running("float32")
    assert r.mean.dtype == np.float32 and np.array_equal(r.mean, np.zeros(HIDDEN))
    assert np.array_equal(r.var, np.ones(HIDDEN))
    x = np.random.default_rng(2).standard_normal((6, HIDDEN)) * 3.0 + 1.0
    r = net._Running("float64")
    r.update(x)
    # PyTorch: new = 0.9 old + 0.1 batch, the batch variance unbiased
    assert np.allclose(r.mean, 0.1 * x.mean(axis=0), rtol=1e-12)
    assert np.allclose(r.var, 0.9 + 0.1 * x.var(axis=0, ddof=1), rtol=1e-12)


# --------------------------------------------------------------------------- #
# gradients against finite differences
# --------------------------------------------------------------------------- #


def _numeric(p, name, f, h=1e-6):
    a = getattr(p, name)
    out = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        keep = a[i]
        a[i] = keep + h
        up = f()
        a[i] = keep - h
        down = f()
        a[i] = keep
        out[i] = (up - down) / (2 * h)
    return out


@pytest.mark.parametrize("mode", ["exact", "outside", "running"])
@pytest.mark.parametrize("norm", ["center", "center-scale"])
def test_gradients_match_finite_differences(mode, norm):
    u, labels, p = _small(3, n=8, d=3, k=3)
    x = u @ p.W + p.b
    running = net._Running("float64") if mode == "running" else None
    if mode == "running":
        running.mean[:] = np.linspace(0.0, 1.0, HIDDEN)
        running.var[:] = np.linspace(0.5, 1.5, HIDDEN)
        before = (running.mean.copy(), running.var.copy())
    loss, accuracy, grads, dx = net._loss_and_grads(p, x, u, labels, mode, norm, running)
    if mode == "exact":
        stats = None  # the statistics move with the parameters
    elif mode == "outside":
        stats = (x.mean(axis=0), x.var(axis=0))  # taken at the step, then held
    else:
        stats = (0.9 * before[0] + 0.1 * x.mean(axis=0),
                 0.9 * before[1] + 0.1 * x.var(axis=0, ddof=1))
        assert np.allclose(running.mean, stats[0]) and np.allclose(running.var, stats[1])
    assert loss == pytest.approx(_ref_loss(p, u, labels, norm, stats), rel=1e-12)
    logits = np.tanh(_ref_normalize(x, p, norm, stats)) @ p.V + p.c
    assert accuracy == float(np.mean(np.argmax(logits, axis=1) == labels))
    assert set(grads) == {"W", "b", "gamma", "beta", "V", "c"}
    for name in grads:
        expected = _numeric(p, name, lambda: _ref_loss(p, u, labels, norm, stats))
        assert np.allclose(grads[name], expected, rtol=1e-5, atol=1e-8), (name, mode, norm)
    # dx is dL/dx, and b's gradient sums it over the batch
    assert np.allclose(grads["b"], dx.sum(axis=0), rtol=1e-12, atol=1e-15)
    assert np.allclose(grads["W"], u.T @ dx, rtol=1e-12, atol=1e-15)


def test_without_inputs_only_b_and_the_head_get_gradients():
    u, labels, p = _small(4)
    x = u @ p.W + p.b
    _, _, grads, dx = net._loss_and_grads(p, x, None, labels, "outside", "center", None)
    assert set(grads) == {"b", "gamma", "beta", "V", "c"}
    assert dx.shape == x.shape


def test_float32_gradients_keep_their_dtype():
    u, labels, p = _small(5)
    p = _as32(p)
    u = u.astype(np.float32)
    x = u @ p.W + p.b
    for mode in ("exact", "outside"):
        for norm in ("center", "center-scale"):
            _, _, grads, dx = net._loss_and_grads(p, x, u, labels, mode, norm, None)
            assert dx.dtype == np.float32 and grads["b"].dtype == np.float32, (mode, norm)


def test_head_subtracts_each_rows_own_maximum():
    # row 0: logits c = (0, ln 3); row 1: about 1000 more (V = 1000 I, tanh(20) = 1 in
    # float64). Subtracting one maximum for the whole batch would underflow row 0.
    p = net._Params(W=None, b=None, gamma=None, beta=None, V=1000.0 * np.eye(2),
                    c=np.array([0.0, math.log(3.0)]))
    loss, accuracy, _, z, lse = net._head(np.array([[0.0, 0.0], [20.0, 20.0]]), p,
                                          np.array([0, 1]))
    assert loss == pytest.approx((math.log(4.0) + math.log(4.0 / 3.0)) / 2, rel=1e-12)
    assert np.allclose(z, [[-math.log(3.0), 0.0]] * 2)
    assert accuracy == 0.5


def test_head_averages_the_float32_losses_in_float64():
    rng = np.random.default_rng(1)
    y = rng.standard_normal((1000, 2)).astype(np.float32)
    p = net._Params(W=None, b=None, gamma=None, beta=None,
                    V=np.array([[3.0, -3.0], [2.0, 5.0]], dtype=np.float32),
                    c=np.array([1e4, 1e4], dtype=np.float32))
    labels = rng.integers(0, 2, 1000)
    loss, _, _, z, lse = net._head(y, p, labels)
    terms = lse - z[np.arange(1000), labels]
    assert terms.dtype == np.float32
    assert loss == float(np.mean(terms.astype(np.float64)))
    assert float(np.mean(terms.astype(np.float64))) != float(np.mean(terms))  # can fail


def test_float32_running_buffers():
    r = net._Running("float32")
    assert r.mean.dtype == np.float32 and r.var.dtype == np.float32
    x = np.random.default_rng(3).standard_normal((5, HIDDEN)).astype(np.float32)
    r.update(x)
    assert np.allclose(r.var, 0.9 + 0.1 * x.astype(np.float64).var(axis=0, ddof=1), rtol=1e-6)


def test_batch_sums_of_float32_gradients_are_taken_in_float64(monkeypatch):
    # a column 2**24, 1, 1, 1: float32 additions drop every 1 (2**24 + 1 rounds
    # back to 2**24); in float64 the sum is 2**24 + 3 and the mean 2**22 + 0.75
    from bnproof import kernels

    column = np.array([2.0**24, 1.0, 1.0, 1.0], dtype=np.float32)
    fake_dx = np.repeat(column[:, None], HIDDEN, axis=1)
    assert fake_dx.sum(axis=0)[0] != np.float32(2.0**24 + 3)  # the float32 sum loses them
    monkeypatch.setattr(kernels, "batch_norm_backward",
                        lambda dy, x, w, mean, invstd, training, channel_axis: (
                            fake_dx.copy(), np.zeros(HIDDEN, np.float32),
                            np.zeros(HIDDEN, np.float32)))
    u, labels, p = _small(6, n=4, d=3, k=3)
    p = _as32(p)
    u = u.astype(np.float32)
    x = u @ p.W + p.b
    _, _, grads, dx = net._loss_and_grads(p, x, u, labels, "outside", "center", None)
    assert grads["b"].dtype == np.float32
    assert np.all(grads["b"] == np.float32(2.0**24 + 3))
    _, _, grads, dx = net._loss_and_grads(p, x, u, labels, "exact", "center", None)
    mean = np.float32(2.0**22 + 0.75)  # the float64 mean, rounded once
    assert mean != np.mean(fake_dx, axis=0)[0]  # the float32 mean differs
    assert np.all(dx == fake_dx - mean)
