"""bnproof.experiments.crosscheck: kernels vs the SymPy derivation, N = 2..8."""

import json

import numpy as np
import pytest

from bnproof.experiments import crosscheck
from bnproof.experiments.crosscheck import QUANTITIES, cross_check


@pytest.fixture
def result():
    # per test, not per module: mutation testing attributes a module fixture's
    # calls to the first test only, and would not run the others against a
    # mutant (the derivations are cached, so this costs little)
    return cross_check()  # the defaults: N = 2..8, seed 0


@pytest.fixture
def fresh_derivations(monkeypatch):
    """An empty derivation cache for one test; the process's own is kept for the others."""
    import functools

    monkeypatch.setattr(crosscheck, "_derivation",
                        functools.cache(crosscheck._derivation.__wrapped__))


def test_every_row_passes(result):
    assert json.loads(json.dumps(result)) == result
    assert len(result["rows"]) == 7 * len(QUANTITIES)
    assert [(r["n"], r["quantity"]) for r in result["rows"]] == [
        (n, q) for n in range(2, 9) for q in ("y", "dx", "dweight", "dbias")]
    for row in result["rows"]:
        assert list(row) == ["n", "quantity", "max_abs_err_symbolic",
                             "max_abs_err_finite_diff", "tolerance", "passed"]
        assert row["passed"] is True, row
        # float64, near machine precision: measured at most 4.4e-15 (was
        # bounded by 1e-13, 20x looser)
        assert row["max_abs_err_symbolic"] < 1e-14, row
        # both halves of the two-way check are bounded: the dot-product test
        # by central differences is measured at most 5.4e-8 here (dx stepped
        # in each channel's standard deviation), while a wrong backward is
        # off by more than 1 (below)
        if row["quantity"] == "y":
            assert row["max_abs_err_finite_diff"] is None
        else:
            assert 0 < row["max_abs_err_finite_diff"] < 1e-6, row


def test_setup_records_the_inputs_and_methods(result):
    assert result["setup"] == {
        "n_values": [2, 3, 4, 5, 6, 7, 8],
        "channels": 4,
        "dtype": "float64",
        "eps": 1e-5,  # PyTorch's default variance floor
        "seed": 0,
        "inputs": "one numpy.random.default_rng(seed), for each N in turn: x = z * s + m "
        "with z (N, C) standard normal, s ~ U(0.5, 3) and m ~ N(0, 2^2) per channel; dy "
        "(N, C) standard normal; weight ~ N(1, 0.5^2); bias ~ N(0, 0.5^2)",
        "derivations_reused": [],
        # the tolerance of kernel vs derivation, relative to max(1, max |ref|)
        "symbolic_rtol": 1e-12,
        "finite_diff": "bnproof.testing.grad_errors: <u, J v> by central differences "
        "along 3 random directions of one input at a time vs the kernel's backward; "
        "directions of x scaled per channel by sqrt(var + eps), drawn from a "
        "stream apart from the inputs'",
        "reference": "bnproof.symbolic training model of ConcreteBatch(n), differentiated "
        "with loss_gradient and lambdified with sympy.lambdify(modules='numpy')",
    }


def _closed_form(x, dy, w, b, eps):
    """Algorithm 1 and its backward (Ioffe & Szegedy 2015, section 3) in NumPy."""
    mu = x.mean(axis=0)
    invstd = 1 / np.sqrt(x.var(axis=0) + eps)
    xhat = (x - mu) * invstd
    dx = w * invstd * (dy - dy.mean(axis=0) - xhat * (dy * xhat).mean(axis=0))
    return {"y": w * xhat + b, "dx": dx, "dweight": (dy * xhat).sum(axis=0),
            "dbias": dy.sum(axis=0)}


def test_the_kernels_see_the_documented_inputs_and_tolerances(monkeypatch):
    # the inputs setup["inputs"] describes, drawn again here, are what the
    # kernels are called with (so a failing row can be reproduced), and each
    # row's tolerance is 1e-12 * max(1, max |reference|)
    import bnproof.kernels as kernels

    seen = []
    real = kernels.batch_norm_forward

    def recording(x, weight=None, bias=None, *args, **kwargs):
        seen.append((x.copy(), weight, bias, kwargs))
        return real(x, weight, bias, *args, **kwargs)

    monkeypatch.setattr(kernels, "batch_norm_forward", recording)
    rows = cross_check([2, 3], seed=5)["rows"]
    rng = np.random.default_rng(5)
    for n in (2, 3):
        x = rng.standard_normal((n, 4)) * rng.uniform(0.5, 3.0, 4) + rng.normal(0.0, 2.0, 4)
        dy = rng.standard_normal((n, 4))
        w, b = rng.normal(1.0, 0.5, 4), rng.normal(0.0, 0.5, 4)
        # the first call of each N (the finite-difference tests follow it)
        x_seen, w_seen, b_seen, kwargs = next(c for c in seen if c[0].shape == (n, 4))
        np.testing.assert_array_equal(x_seen, x)
        np.testing.assert_array_equal(w_seen, w)
        np.testing.assert_array_equal(b_seen, b)
        assert kwargs == {"eps": 1e-5}
        ref = _closed_form(x, dy, w, b, 1e-5)
        for row in (r for r in rows if r["n"] == n):
            expected = 1e-12 * max(1.0, float(np.max(np.abs(ref[row["quantity"]]))))
            assert row["tolerance"] == pytest.approx(expected, rel=1e-9), row


def _fake_kernels(monkeypatch, fd):
    """Kernels returning zeros, a derivation returning 1e-12, and given finite differences."""
    import bnproof.kernels as kernels

    def forward(x, weight=None, bias=None, **kwargs):
        c = x.shape[1]
        return np.zeros_like(x), np.zeros(c), np.ones(c)

    def backward(dy, x, weight, mean, invstd, **kwargs):
        c = x.shape[1]
        return np.zeros_like(x), np.zeros(c), np.zeros(c)

    def symbolic(xv, gv, w, b, reuse=False):
        return tuple(np.full(shape, 1e-12) for shape in (xv.shape, xv.shape, w.shape, b.shape))

    monkeypatch.setattr(kernels, "batch_norm_forward", forward)
    monkeypatch.setattr(kernels, "batch_norm_backward", backward)
    monkeypatch.setattr(crosscheck, "_symbolic", symbolic)
    monkeypatch.setattr(crosscheck, "_finite_difference_errors", lambda *a: fd)


def test_a_row_passes_only_when_both_ways_agree(monkeypatch):
    # the derivation is 1e-12 away from the kernels: exactly at the tolerance
    # 1e-12 * max(1, 1e-12), which passes; the finite differences decide
    _fake_kernels(monkeypatch, {"dx": (0.5, 2e-6, 1e-6), "dweight": (0.25, 1e-6, 1e-6),
                                "dbias": (0.125, 0.0, 1e-6)})
    rows = {r["quantity"]: r for r in cross_check([2])["rows"]}
    assert rows["y"] == {"n": 2, "quantity": "y", "max_abs_err_symbolic": 1e-12,
                         "max_abs_err_finite_diff": None, "tolerance": 1e-12, "passed": True}
    assert rows["dx"]["passed"] is False  # relative error 2e-6 > 1e-6
    assert rows["dx"]["max_abs_err_finite_diff"] == 0.5
    assert rows["dweight"]["passed"] is True  # at the tolerance: passes
    assert rows["dbias"]["passed"] is True and rows["dbias"]["max_abs_err_finite_diff"] == 0.125


def test_finite_differences_depend_on_the_seed_only():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)) + 5.0
    w, b = rng.normal(1.0, 0.5, 4), rng.normal(0.0, 0.5, 4)
    one = crosscheck._finite_difference_errors(x, w, b, 1)
    assert one == crosscheck._finite_difference_errors(x, w, b, 1)
    assert one != crosscheck._finite_difference_errors(x, w, b, 2)
    assert all(rel <= rtol == 1e-6 for _, rel, rtol in one.values())


def test_each_gradient_is_checked_at_its_own_point_and_step(monkeypatch):
    # dx in units of each channel's spread from v = 0 with the step 1e-4
    # (crosscheck.DX_STEP, measured); dweight at the weights and dbias at the
    # biases with bnproof.testing's step 6e-6
    import bnproof.testing as testing

    calls = []
    real = testing.grad_errors

    def recording(f, g, args, **kwargs):
        calls.append(([a.copy() for a in args], kwargs))
        return real(f, g, args, **kwargs)

    monkeypatch.setattr(testing, "grad_errors", recording)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)) + 5.0
    w, b = rng.normal(1.0, 0.5, 4), rng.normal(0.0, 0.5, 4)
    crosscheck._finite_difference_errors(x, w, b, 3)
    (dx_at,), dx_kw = calls[0]
    (dw_at,), dw_kw = calls[1]
    (db_at,), db_kw = calls[2]
    np.testing.assert_array_equal(dx_at, np.zeros((3, 4)))
    np.testing.assert_array_equal(dw_at, w)
    np.testing.assert_array_equal(db_at, b)
    assert [dx_kw, dw_kw, db_kw] == [{"seed": 3, "eps": 1e-4}, {"seed": 3, "eps": 6e-6},
                                     {"seed": 3, "eps": 6e-6}]


def test_a_constant_channel_is_still_checked(monkeypatch):
    # a channel whose values are all equal is stepped in units of sqrt(eps),
    # the scale its output varies on: a correct dx passes, a wrong one fails
    import bnproof.kernels as kernels

    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3))
    x[:, 1] = 2.5
    w, b = np.ones(3), np.zeros(3)
    _, rel, rtol = crosscheck._finite_difference_errors(x, w, b, 0)["dx"]
    assert rel <= rtol
    real = kernels.batch_norm_backward

    def wrong(*args, **kwargs):
        dx, dw, db = real(*args, **kwargs)
        dx = dx.copy()
        dx[:, 1] += 1.0  # only the constant channel is wrong
        return dx, dw, db

    monkeypatch.setattr(kernels, "batch_norm_backward", wrong)
    _, rel, rtol = crosscheck._finite_difference_errors(x, w, b, 0)["dx"]
    assert rel > rtol


def test_direction_seeds_do_not_repeat():
    # one seed of directions per (seed, N): no two of 200 seeds x N = 2..8 share one
    seeds = {crosscheck._directions_seed(s, n) for s in range(200) for n in range(2, 9)}
    assert len(seeds) == 200 * 7


def test_a_channel_of_small_spread_next_to_a_large_offset_passes():
    # seed 6 at N = 2 has a channel of standard deviation 0.012 next to
    # values of 7; with the step relative to max |x| over all channels the
    # correct kernels failed (relative error 4e-5)
    rows = cross_check([2], seed=6)["rows"]
    assert all(r["passed"] for r in rows), rows


@pytest.mark.parametrize("seed", [1, 2, 11])
def test_the_directions_are_not_the_inputs_draw(seed):
    # with the inputs' seed the first cotangent was the draw that made x, which
    # the backward maps to 0: correct kernels failed at these seeds
    rows = cross_check([3], seed=seed)["rows"]
    assert all(r["passed"] for r in rows), rows
    assert crosscheck._directions_seed(seed, 3) != seed


def test_a_wrong_backward_is_reported(monkeypatch):
    # negative control: the inference-mode backward (statistics held fixed)
    # differs from the derivation, and both checks must say so
    import bnproof.kernels as kernels

    real = kernels.batch_norm_backward

    def wrong(dy, x, weight, mean, invstd, **kw):
        return real(dy, x, weight, mean, invstd, training=False)

    monkeypatch.setattr(kernels, "batch_norm_backward", wrong)
    rows = {r["quantity"]: r for r in cross_check([3], seed=1)["rows"]}
    assert not rows["dx"]["passed"]
    assert rows["dx"]["max_abs_err_symbolic"] > 1e-3
    assert rows["dx"]["max_abs_err_finite_diff"] > 1.0  # the second way says so too
    assert rows["y"]["passed"] and rows["dbias"]["passed"]


@pytest.mark.parametrize("factor", [1 + 1e-3, 1 - 1e-4])
def test_finite_differences_alone_catch_a_slightly_wrong_dx(monkeypatch, factor):
    # the second way on its own: dx off by 0.1 % (or 0.01 %) fails the
    # dot-product test at every N, with the derivation out of the picture
    # (measured over seeds 0..149: relative errors of at least 2e-6 against
    # the tolerance 1e-6 for 1e-4)
    import bnproof.kernels as kernels

    real = kernels.batch_norm_backward

    def wrong(*args, **kwargs):
        dx, dw, db = real(*args, **kwargs)
        return dx * factor, dw, db

    rng = np.random.default_rng(0)
    for n in range(2, 9):
        x = rng.standard_normal((n, 4)) * rng.uniform(0.5, 3.0, 4) + rng.normal(0.0, 2.0, 4)
        w, b = rng.normal(1.0, 0.5, 4), rng.normal(0.0, 0.5, 4)
        monkeypatch.setattr(kernels, "batch_norm_backward", real)
        _, rel, rtol = crosscheck._finite_difference_errors(x, w, b, 7)["dx"]
        assert rel <= rtol, n
        monkeypatch.setattr(kernels, "batch_norm_backward", wrong)
        _, rel, rtol = crosscheck._finite_difference_errors(x, w, b, 7)["dx"]
        assert rel > rtol, n


def test_derivation_is_the_symbolic_model():
    # the lambdified function is evaluated on its own, away from the kernels
    # (derived afresh, not from the cache): y of a batch (1, 2, 3) with gamma
    # 2, beta 1 is 2 * xhat + 1, and the gradients of a loss with dy = (1, 0, 0)
    # are Algorithm 1's backward
    f = crosscheck._lambdified(3)
    ys, dxs, dw, db = f(1.0, 2.0, 3.0, 1.0, 0.0, 0.0, 2.0, 1.0, 0.0)
    xhat = (np.array([1.0, 2, 3]) - 2) / np.sqrt(2 / 3)
    np.testing.assert_allclose(ys, 2 * xhat + 1, rtol=1e-15)
    assert db == 1.0
    np.testing.assert_allclose(dw, xhat[0], rtol=1e-15)
    dy = np.array([1.0, 0, 0])
    dx = 2 / np.sqrt(2 / 3) * (dy - dy.mean() - xhat * (dy * xhat).mean())
    np.testing.assert_allclose(dxs, dx, rtol=1e-14)
    # eps enters as the variance floor: var = 2/3 becomes 2/3 + 1/3
    ys, *_ = f(1.0, 2.0, 3.0, 1.0, 0.0, 0.0, 2.0, 1.0, 1 / 3)
    np.testing.assert_allclose(ys, 2 * (np.array([1.0, 2, 3]) - 2) + 1, rtol=1e-15)


def test_reused_derivations_give_the_same_rows_and_say_so(fresh_derivations):
    computed = cross_check((2, 3), seed=4, reuse=True)  # stores the code
    assert computed["setup"]["derivations_reused"] == []
    crosscheck._derivation.cache_clear()
    reused = cross_check((2, 3), seed=4, reuse=True)
    assert reused["setup"]["derivations_reused"] == [2, 3]
    crosscheck._derivation.cache_clear()
    fresh = cross_check((2, 3), seed=4)
    assert fresh["setup"]["derivations_reused"] == []
    assert reused["rows"] == fresh["rows"] == computed["rows"]  # bit for bit


def test_derivation_key_covers_what_determines_the_code(monkeypatch):
    import platform
    from pathlib import Path

    import sympy

    from bnproof import _cache

    calls = []
    monkeypatch.setattr(_cache, "digest", lambda files, values: calls.append(
        (list(files), list(values))) or "key")
    assert crosscheck._derivation_key(5) == "key"
    (files, values), = calls
    symbolic = Path(crosscheck.__file__).parent.parent / "symbolic"
    assert files == [*sorted(symbolic.rglob("*.py")), Path(crosscheck.__file__)]
    assert len(files) > 10 and all(f.is_file() for f in files)
    assert values == ["crosscheck-derivation", sympy.__version__, np.__version__,
                      platform.python_version(), 5]


def test_the_stored_code_is_lambdify_s_text():
    f = crosscheck._lambdified(2)
    source = crosscheck._lambdified_source(f)
    assert source.startswith("def _lambdifygenerated(")
    g = crosscheck._from_source(source)
    args = (1.0, 3.0, 0.5, -0.25, 2.0, 1.0, 1e-5)
    assert repr(g(*args)) == repr(f(*args))
    assert g.__name__ == "_lambdifygenerated"


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "message"),
    [((5,), {}, TypeError, "n_values must be an iterable of ints, got 5"),
     (("23",), {}, TypeError, "n_values must be an iterable of ints, got '23'"),
     (([],), {}, ValueError, "n_values is empty; pass batch sizes such as range(2, 9)"),
     (([1],), {}, ValueError, "batch size 1 must be an int >= 2 (training needs more than one "
                              "value per channel)"),
     (([2.5],), {}, ValueError, "batch size 2.5 must be an int >= 2 (training needs more than "
                                "one value per channel)"),
     (([True],), {}, ValueError, "batch size True must be an int >= 2 (training needs more "
                                 "than one value per channel)"),
     (([2],), {"seed": "0"}, TypeError, "seed must be an int, got '0'"),
     (([2],), {"seed": False}, TypeError, "seed must be an int, got False")],
)
def test_bad_arguments(args, kwargs, exc, message):
    with pytest.raises(exc) as error:
        cross_check(*args, **kwargs)
    assert str(error.value) == message
