"""Mergeable moments: each check of a record, each branch of the merge, and TwoSum."""

import re
from fractions import Fraction

import numpy as np
import pytest

from bnproof.kernels import Moments, batch_norm_moments, merge_moments
from bnproof.kernels._moments import _two_sum


def _record(rng, n=6, channels=3, offset=0.0):
    return batch_norm_moments(offset + rng.standard_normal((n, channels)))


def test_two_sum_is_exact():
    a = np.array([1e16, 1.0, -3.5, 0.1])
    b = np.array([1.0, 1e-17, 3.5, 0.2])
    s, e = _two_sum(a, b)
    np.testing.assert_array_equal(s, a + b)
    for ai, bi, si, ei in zip(a, b, s, e, strict=True):
        exact = Fraction(float(ai)) + Fraction(float(bi))
        assert Fraction(float(si)) + Fraction(float(ei)) == exact
    assert e[0] == 1.0 and e[1] == 1e-17  # what the rounded sum lost


def test_merge_is_chans_rule(rng):
    a, b = rng.standard_normal((5, 2)), 3 + 2 * rng.standard_normal((9, 2))
    merged = merge_moments(batch_norm_moments(a), batch_norm_moments(b))
    whole = np.concatenate([a, b])
    assert merged.count == 14
    np.testing.assert_allclose(merged.mean, whole.mean(axis=0), rtol=1e-15)
    np.testing.assert_allclose(merged.m2, ((whole - whole.mean(axis=0)) ** 2).sum(axis=0),
                               rtol=1e-14)
    np.testing.assert_allclose(merged.var, whole.var(axis=0), rtol=1e-14)
    np.testing.assert_allclose(merged.unbiased_var, whole.var(axis=0, ddof=1), rtol=1e-14)


def test_merged_mean_keeps_its_rounding_error(rng):
    # mean + mean_lo is the mean of the union with the float64 rounding of
    # mean itself removed: exact to far below one ulp of mean
    a = 1e8 + rng.standard_normal((50, 2))
    b = 1e8 + 0.5 + rng.standard_normal((70, 2))
    merged = merge_moments(batch_norm_moments(a), batch_norm_moments(b))
    assert merged.mean_lo is not None and merged.mean_lo.dtype == np.float64
    assert np.any(merged.mean_lo != 0)
    for c in range(2):
        exact = sum(Fraction(float(v)) for v in np.concatenate([a, b])[:, c]) / 120
        hi_lo = Fraction(float(merged.mean[c])) + Fraction(float(merged.mean_lo[c]))
        ulp = Fraction(float(np.spacing(merged.mean[c])))
        assert abs(hi_lo - exact) < ulp / 1000
        assert abs(hi_lo - exact) < abs(Fraction(float(merged.mean[c])) - exact) or (
            Fraction(float(merged.mean[c])) == exact)


def test_records_without_a_low_part_merge_as_if_it_were_zero(rng):
    ma, mb = _record(rng), _record(rng)
    plain_a = Moments(ma.count, ma.mean, ma.m2)
    zeros_a = Moments(ma.count, ma.mean, ma.m2, mean_lo=np.zeros(3))
    one = merge_moments(plain_a, mb)
    two = merge_moments(zeros_a, mb)
    np.testing.assert_array_equal(one.mean, two.mean)
    np.testing.assert_array_equal(one.m2, two.m2)
    np.testing.assert_array_equal(one.mean_lo, two.mean_lo)


@pytest.mark.parametrize("side", ["left", "right"])
def test_merging_an_empty_record_keeps_the_other_with_its_low_part(rng, side):
    m = _record(rng, offset=1e3)
    empty = Moments(0, np.full(3, np.nan), -np.ones(3))  # an empty record's values do not count
    merged = merge_moments(m, empty) if side == "left" else merge_moments(empty, m)
    assert merged.count == m.count
    np.testing.assert_array_equal(merged.mean, m.mean)
    np.testing.assert_array_equal(merged.m2, m.m2)
    np.testing.assert_array_equal(merged.mean_lo, m.mean_lo)


def test_float32_and_integer_records_merge_in_float64():
    a = Moments(2, np.array([1.5, 2.0], np.float32), np.array([0.5, 2.0], np.float32))
    b = Moments(np.int64(3), np.array([1, 4], np.int32), np.array([2, 8], np.int64))
    merged = merge_moments(a, b)
    assert merged.count == 5 and isinstance(merged.count, int)
    for field in (merged.mean, merged.m2, merged.mean_lo):
        assert field.dtype == np.float64
    np.testing.assert_allclose(merged.mean, [1.2, 3.2])
    np.testing.assert_allclose(merged.m2, [0.5 + 2 + 0.25 * 6 / 5, 2 + 8 + 4 * 6 / 5])


def test_an_empty_merge_of_empty_records():
    empty = Moments(0, np.zeros(2), np.zeros(2))
    merged = merge_moments(empty, empty)
    assert merged.count == 0
    np.testing.assert_array_equal(merged.m2, [0.0, 0.0])


def test_infinite_means_give_nonfinite_results_without_warnings():
    a = Moments(2, np.array([np.inf, 1.0]), np.array([0.0, 1.0]))
    b = Moments(2, np.array([np.inf, 2.0]), np.array([0.0, 1.0]))
    merged = merge_moments(a, b)  # filterwarnings = error: no RuntimeWarning
    assert np.isnan(merged.m2[0]) and np.isfinite(merged.m2[1])
    assert merged.m2[1] == 3.0


def test_a_subclass_is_used_as_its_memory():
    class Tagged(np.ndarray):
        pass

    a = Moments(2, np.array([1.0, 2.0]).view(Tagged), np.array([1.0, 1.0]).view(Tagged),
                mean_lo=np.zeros(2).view(Tagged))
    merged = merge_moments(a, Moments(2, np.array([3.0, 2.0]), np.array([1.0, 1.0])))
    assert type(merged.mean) is np.ndarray and type(merged.mean_lo) is np.ndarray
    np.testing.assert_allclose(merged.mean, [2.0, 2.0])


@pytest.mark.parametrize(
    ("bad", "exc", "message"),
    [
        ((2, 3), TypeError, "b must be a Moments record, got tuple (build one with "
                            "batch_norm_moments(x) or Moments(count, mean, m2))"),
        (Moments(True, np.zeros(2), np.zeros(2)), TypeError,
         "b.count must be an int >= 0, got True (e.g. int(count))"),
        (Moments(2.0, np.zeros(2), np.zeros(2)), TypeError,
         "b.count must be an int >= 0, got 2.0 (e.g. int(count))"),
        (Moments(-1, np.zeros(2), np.zeros(2)), ValueError, "b.count must be an int >= 0, got -1"),
        (Moments(2, np.zeros((2, 1)), np.zeros(2)), ValueError,
         "b.mean must be a 1-D NumPy array of shape (C,), got ndarray with shape (2, 1)"),
        (Moments(2, [0.0, 0.0], np.zeros(2)), ValueError,
         "b.mean must be a 1-D NumPy array of shape (C,), got list with shape None"),
        (Moments(2, np.zeros(2), np.zeros(2), mean_lo=np.ma.masked_array(np.zeros(2))),
         TypeError, "b.mean_lo is a masked array; merge_moments would ignore its mask "
                    "(pass np.ma.getdata(b.mean_lo) if the values are valid)"),
        (Moments(2, np.zeros(2), np.array(["a", "b"])), TypeError,
         "b.m2 has dtype <U1; pass a plain real array (e.g. b.m2.astype(np.float64))"),
        (Moments(2, np.zeros(2), np.array([1.0, -2.0])), ValueError,
         "b.m2 has negative values ([-2.]); m2 is a sum of squared deviations "
         "(use the m2 that batch_norm_moments returns)"),
        (Moments(2, np.zeros(2), np.zeros(3)), ValueError,
         "b.mean has shape (2,) but b.m2 has shape (3,); both must be (C,)"),
        (Moments(2, np.zeros(3), np.zeros(3)), ValueError,
         "a has 2 channels but b has 3; merge moments of the same channels only"),
    ],
)
def test_each_bad_record_is_named_with_the_fix(bad, exc, message):
    good = Moments(2, np.zeros(2), np.ones(2))
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        merge_moments(good, bad)


def test_the_first_record_is_checked_as_a():
    with pytest.raises(ValueError, match=r"^a\.count must be an int >= 0, got -2$"):
        merge_moments(Moments(-2, np.zeros(2), np.zeros(2)), Moments(2, np.zeros(2), np.zeros(2)))


def test_numpy_integer_counts_are_accepted():
    m = Moments(np.int32(4), np.zeros(2), np.ones(2))
    assert merge_moments(m, m).count == 8


def test_the_negative_m2_message_shows_the_first_three_negatives_only():
    bad = Moments(2, np.zeros(6), np.array([0.0, 0.5, -1.0, -2.0, -3.0, -4.0]))
    with pytest.raises(ValueError, match=re.escape("b.m2 has negative values ([-1. -2. -3.]); ")):
        merge_moments(Moments(2, np.zeros(6), np.ones(6)), bad)


def test_a_single_value_record_must_have_m2_zero_or_more():
    with pytest.raises(ValueError, match="b.m2 has negative values"):
        merge_moments(Moments(1, np.zeros(2), np.zeros(2)), Moments(1, np.zeros(2), -np.ones(2)))


@pytest.mark.parametrize("other", ["empty", "float32"])
def test_float32_records_merge_into_float64_fields(other):
    # "Returns: Moments of the concatenated batch, float64", also when one
    # side is empty and the other is returned as it is
    a = Moments(3, np.array([0.1, 2.5], np.float32), np.array([0.3, 1.0], np.float32),
                mean_lo=np.array([1e-9, 0.0], np.float32))
    b = (Moments(0, np.zeros(2, np.float32), np.zeros(2, np.float32)) if other == "empty" else
         Moments(2, np.array([0.7, 2.0], np.float32), np.array([0.5, 0.5], np.float32)))
    merged = merge_moments(a, b)
    for field in (merged.mean, merged.m2, merged.mean_lo):
        assert field.dtype == np.float64
    if other == "empty":
        np.testing.assert_array_equal(merged.mean, a.mean.astype(np.float64))
        np.testing.assert_array_equal(merged.mean_lo, a.mean_lo.astype(np.float64))
    else:  # d computed in float64 from the float32 values
        d = np.float64(np.float32(0.7)) - np.float64(np.float32(0.1)) - np.float64(
            np.float32(1e-9))
        assert merged.mean[0] + merged.mean_lo[0] == pytest.approx(
            np.float64(np.float32(0.1)) + np.float64(np.float32(1e-9)) + d * 2 / 5, rel=1e-15)
