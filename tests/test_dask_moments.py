"""bnproof.kernels.dask_moments against batch_norm_moments of the whole array."""

import logging

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

from bnproof.kernels import batch_norm_moments, dask_moments  # noqa: E402

#: Equal to the in-memory result to float64 rounding: merging blocks in
#: another order than the kernel's own blocks changes m2 by a few ulps per
#: merge level (measured about 1e-15 at |mean| / std = 3e3); 1e-12 leaves
#: room without hiding a lost term (a missing block would be off by percent).
RTOL = 1e-12


def _close(m, ref):
    assert m.count == ref.count
    np.testing.assert_allclose(m.mean, ref.mean, rtol=RTOL, atol=0)
    np.testing.assert_allclose(m.m2, ref.m2, rtol=RTOL, atol=0)


def _data(rng, dtype=np.float64):
    # Non-iid along the batch: later samples have a larger offset and spread.
    x = rng.standard_normal((90, 6, 5, 4))
    x = x * np.linspace(1, 4, 90)[:, None, None, None] + 3e3
    return x.astype(dtype)


@pytest.mark.parametrize(
    ("chunks", "axis", "layout"),
    [
        ((17, 6, 5, 4), 1, "first"),  # unequal batch chunks, the last one short
        ((23, 4, 2, 3), 1, "first"),  # channels and spatial axes chunked too
        ((13, 5, 4, 2), -1, "last"),  # channels-last
        ((11, 2, 6, 4), 2, "middle"),  # channels on another axis
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_the_in_memory_moments(rng, chunks, axis, layout, dtype):
    x = _data(rng, dtype)
    arr = {"first": x, "last": np.moveaxis(x, 1, -1), "middle": np.moveaxis(x, 1, 2)}[layout]
    arr = np.ascontiguousarray(arr)
    ref = batch_norm_moments(x)
    m = dask_moments(da.from_array(arr, chunks=chunks), channel_axis=axis)
    _close(m, ref)
    assert m.mean_lo is not None and m.mean_lo.shape == (6,)


def test_a_dropped_block_is_seen(rng):
    # Negative control: the comparison fails when one block is left out.
    x = _data(rng)
    m = dask_moments(da.from_array(x[:73], chunks=(17, 6, 5, 4)))
    with pytest.raises(AssertionError):
        _close(m, batch_norm_moments(x))


@pytest.mark.parametrize(
    ("value", "kwargs", "error", "match"),
    [
        (np.zeros((4, 3)), {}, TypeError, "dask.array.Array"),
        (da.zeros((4, 3), dtype=np.int64), {}, TypeError, "float32 and float64"),
        (da.zeros((4,)), {}, ValueError, "ndim 1"),
        (da.zeros((4, 3)), {"channel_axis": 0}, ValueError, "batch axis"),
        (da.zeros((4, 3)), {"channel_axis": 1.0}, TypeError, "channel_axis must be an int"),
        (da.zeros((0, 3)), {}, ValueError, "non-empty"),
    ],
)
def test_bad_input_is_refused(value, kwargs, error, match):
    with pytest.raises(error, match=match):
        dask_moments(value, **kwargs)


@pytest.mark.slow
def test_on_a_two_process_cluster(rng):
    distributed = pytest.importorskip("distributed")
    x = _data(rng)
    ref = batch_norm_moments(x)
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        m = dask_moments(da.from_array(x, chunks=(17, 3, 5, 4)))
        # Both worker processes took part.
        assert len(client.scheduler_info()["workers"]) == 2
    _close(m, ref)
