"""bnproof.experiments.crosscheck: kernels vs the SymPy derivation, N = 2..8."""

import json

import numpy as np
import pytest

from bnproof.experiments import crosscheck
from bnproof.experiments.crosscheck import QUANTITIES, cross_check


@pytest.fixture(scope="module")
def result():
    return cross_check(range(2, 9), seed=0)


def test_every_row_passes(result):
    assert json.loads(json.dumps(result)) == result
    assert len(result["rows"]) == 7 * len(QUANTITIES)
    for row in result["rows"]:
        assert row["passed"], row
        # float64, near machine precision: measured at most 4.4e-15 (was
        # bounded by 1e-13, 20x looser)
        assert row["max_abs_err_symbolic"] < 1e-14, row
        # both halves of the two-way check are bounded: the dot-product test
        # by central differences (step 6e-6) is measured at most 3.3e-7 here,
        # while a wrong backward is off by more than 1 (below)
        if row["quantity"] == "y":
            assert row["max_abs_err_finite_diff"] is None
        else:
            assert 0 < row["max_abs_err_finite_diff"] < 1e-6, row


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


def test_derivation_is_the_symbolic_model():
    # the lambdified function is evaluated on its own, away from the kernels:
    # y of a batch (1, 2, 3) with gamma 2, beta 1 is 2 * xhat + 1
    f = crosscheck._derivation(3)
    ys, dxs, dw, db = f(1.0, 2.0, 3.0, 1.0, 0.0, 0.0, 2.0, 1.0, 0.0)
    xhat = (np.array([1.0, 2, 3]) - 2) / np.sqrt(2 / 3)
    np.testing.assert_allclose(ys, 2 * xhat + 1, rtol=1e-15)
    assert db == 1.0
    np.testing.assert_allclose(dw, xhat[0], rtol=1e-15)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [((5,), {}, TypeError, "iterable of ints"), (([],), {}, ValueError, "empty"),
     (([1],), {}, ValueError, "int >= 2"), (([2],), {"seed": "0"}, TypeError, "seed")],
)
def test_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cross_check(*args, **kwargs)
