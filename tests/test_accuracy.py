"""bnproof.experiments.accuracy: bnproof at the rounding floor, the float32 methods not."""

import json

import pytest

from bnproof.experiments.accuracy import GOAL_ULP, accuracy_vs_offset

OFFSETS = [0.0, 1e2, 1e3, 1e4, 1e5, 1e6]


@pytest.fixture(scope="module")
def result():
    return accuracy_vs_offset(OFFSETS, shape=(512, 8), seed=3)


def _rows(result, method):
    return {r["offset_over_std"]: r for r in result["rows"] if r["method"] == method}


def test_structure_is_plain_json(result):
    assert json.loads(json.dumps(result)) == result
    assert {"rows", "setup", "reference", "methods"} <= set(result)
    assert {"bnproof", "two-pass-float32", "one-pass-float32"} <= set(result["methods"])
    assert len(result["rows"]) == len(OFFSETS) * len(result["methods"])
    for row in result["rows"]:
        assert {"offset_over_std", "method", "max_err_ulp", "max_abs_err"} <= set(row)


def test_bnproof_meets_the_goal_at_every_offset(result):
    for offset, row in _rows(result, "bnproof").items():
        assert row["max_err_ulp"] <= GOAL_ULP, (offset, row)
        assert row["within_goal"]


def test_float32_methods_lose_accuracy_at_large_offsets(result):
    # negative controls: the measure must see the error of naive methods
    two = _rows(result, "two-pass-float32")
    one = _rows(result, "one-pass-float32")
    assert two[1e5]["max_err_ulp"] > 1e3 and not two[1e5]["within_goal"]
    assert one[1e3]["max_abs_err"] > 1e-2
    assert all(one[o]["max_err_ulp"] is None or one[o]["max_err_ulp"] > 1e3 for o in OFFSETS[2:])


def test_torch_is_far_above_the_floor_at_1e5(result):
    pytest.importorskip("torch")
    torch_rows = _rows(result, "torch")
    bn = _rows(result, "bnproof")
    assert torch_rows[1e5]["max_abs_err"] > 100 * bn[1e5]["max_abs_err"]


def test_same_seed_same_result():
    a = accuracy_vs_offset([1e3], shape=(64, 2), seed=1)
    b = accuracy_vs_offset([1e3], shape=(64, 2), seed=1)
    assert a["rows"] == b["rows"]


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((1e3,), {}, TypeError, "offsets must be a list"),
        (([],), {}, ValueError, "offsets is empty"),
        (([-1.0],), {}, ValueError, "finite number >= 0"),
        (([float("inf")],), {}, ValueError, "finite number >= 0"),
        (([0.0],), {"shape": (1, 4)}, ValueError, "N >= 2"),
        (([0.0],), {"shape": (4, 4, 4)}, ValueError, "shape must be"),
        (([0.0],), {"std": 0.0}, ValueError, "std must be"),
        (([0.0],), {"seed": 1.5}, TypeError, "seed must be an int"),
    ],
)
def test_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        accuracy_vs_offset(*args, **kwargs)
