"""Placement and eviction of recycled outputs (bnproof.kernels._buffers).

Outputs of the public kernels start about half a page away from the inputs
the kernel reads while writing them, modulo the page size (an output a few
lines after its input, modulo 1 MiB, made the forward three times slower).
The placement rule is checked against a brute-force search over every
aligned start, and on the public functions with inputs at chosen offsets.
"""

import numpy as np
import pytest

from bnproof.kernels import _buffers, batch_norm_backward, batch_norm_forward

PAGE = _buffers.PAGE
ALIGN = _buffers.ALIGN


def gap(a: int, b: int) -> int:
    """Distance between two addresses on the circle of addresses modulo PAGE."""
    d = (a - b) % PAGE
    return min(d, PAGE - d)


def best_possible(points) -> int:
    """Largest smallest distance to ``points`` of any aligned start (brute force)."""
    return max(min(gap(t, p) for p in points) for t in range(0, PAGE, ALIGN))


@pytest.fixture
def fresh_pool():
    _buffers.clear()
    yield _buffers
    _buffers.clear()


def at_offset(shape, dtype, offset, rng):
    """An array of ``shape`` whose data starts ``offset`` bytes past a page, filled."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + 2 * PAGE, np.uint8)
    start = (-raw.ctypes.data) % PAGE + offset
    arr = raw[start:start + nbytes].view(dtype).reshape(shape)
    arr[...] = rng.standard_normal(shape) * 2 + 0.5
    assert arr.ctypes.data % PAGE == offset
    return arr


# --------------------------------------------------------------------------- #
# the rule
# --------------------------------------------------------------------------- #


def test_one_input_puts_the_output_half_a_page_away():
    for p in range(0, PAGE, 16):  # every start a float array can have
        t = _buffers._target([p])
        assert t % ALIGN == 0 and 0 <= t < PAGE
        assert gap(t, p) >= PAGE // 2 - ALIGN, p


def test_two_and_three_inputs_are_as_far_as_any_aligned_start_allows(rng):
    cases = [[0, PAGE // 2], [16, 16 + PAGE // 2], [0, 16], [4080, 32], [0, 1024, 2048]]
    cases += [list(rng.integers(0, PAGE // 16, k) * 16) for k in (2, 3) for _ in range(200)]
    for points in cases:
        t = _buffers._target(points)
        got = min(gap(t, p) for p in points)
        assert got >= best_possible(points) - ALIGN, points
        assert got >= PAGE // (2 * len(points)) - ALIGN, points


def test_no_input_gives_an_aligned_start():
    assert _buffers._target([]) == 0


def test_the_distance_check_can_fail(rng, fresh_pool, monkeypatch):
    # negative control: with the rule replaced by "start where the input
    # starts, plus a line", the distance check below rejects the output
    x = at_offset((256, 1024), np.float32, 16, rng)
    monkeypatch.setattr(_buffers, "_target", lambda addresses: (16 + ALIGN) // ALIGN * ALIGN)
    y = batch_norm_forward(x)[0]
    assert gap(y.ctypes.data, x.ctypes.data) < PAGE // 4


# --------------------------------------------------------------------------- #
# the public functions
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_offset, dy_offset", [(0, 0), (16, 2064), (64, 80), (4080, 2048)])
def test_outputs_are_placed_away_from_their_inputs(rng, fresh_pool, dtype, x_offset, dy_offset):
    shape = (256, 1024)  # 1 MiB or more: recycled and placed
    assert np.prod(shape) * np.dtype(dtype).itemsize >= _buffers.MIN_BYTES
    x = at_offset(shape, dtype, x_offset, rng)
    dy = at_offset(shape, dtype, dy_offset, rng)
    w = rng.uniform(0.5, 2.0, shape[1]).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    y, mean, invstd = batch_norm_forward(x, w, b)
    dx, dw, db = batch_norm_backward(dy, x, w, mean, invstd, bias=b)
    assert y.ctypes.data % ALIGN == 0 and dx.ctypes.data % ALIGN == 0
    assert gap(y.ctypes.data, x.ctypes.data) >= PAGE // 2 - ALIGN
    assert min(gap(dx.ctypes.data, x.ctypes.data), gap(dx.ctypes.data, dy.ctypes.data)) >= (
        PAGE // 4 - ALIGN)
    # the same bits as outputs straight from np.empty (no pool, no placement)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_buffers, "MIN_BYTES", 1 << 62)
        y_plain, _, _ = batch_norm_forward(x, w, b)
        dx_plain = batch_norm_backward(dy, x, w, mean, invstd, bias=b)[0]
    assert y_plain.base is None and dx_plain.base is None
    np.testing.assert_array_equal(y, y_plain)
    np.testing.assert_array_equal(dx, dx_plain)


def test_channels_last_outputs_are_placed_too(rng, fresh_pool):
    x = at_offset((16, 32, 32, 32), np.float32, 48, rng)  # (N, H, W, C), channel axis -1
    y = batch_norm_forward(x, channel_axis=-1)[0]
    assert gap(y.ctypes.data, x.ctypes.data) >= PAGE // 2 - ALIGN


# --------------------------------------------------------------------------- #
# the pool: oldest free blocks go first
# --------------------------------------------------------------------------- #


def block(nbytes):
    return np.empty(nbytes + PAGE, np.uint8)


def test_pool_drops_the_blocks_released_longest_ago(fresh_pool, monkeypatch):
    monkeypatch.setattr(_buffers, "MAX_FREE_BYTES", 3 * 100_000)
    blocks = {n: block(n) for n in (100_000, 90_000, 80_000, 70_000)}
    for raw in blocks.values():  # released in this order
        _buffers._release(raw)
    # 340,000 bytes > 300,000: the first block released went back to the system
    assert _buffers.free_bytes() == 90_000 + 80_000 + 70_000
    assert _buffers._take(100_000) is None
    assert _buffers._take(80_000) is blocks[80_000]
    assert _buffers.free_bytes() == 90_000 + 70_000
    _buffers._release(block(200_000))  # 360,000: drops 90,000, the oldest left
    assert _buffers.free_bytes() == 70_000 + 200_000
    assert _buffers._take(90_000) is None
    assert _buffers._take(70_000) is blocks[70_000]


def test_pool_hands_out_the_block_released_last(fresh_pool):
    first, second = block(100_000), block(100_000)
    _buffers._release(first)
    _buffers._release(second)
    assert _buffers._take(100_000) is second
    assert _buffers._take(100_000) is first
    assert _buffers._take(100_000) is None and _buffers.free_bytes() == 0


def test_a_block_larger_than_the_pool_is_never_kept(fresh_pool, monkeypatch):
    monkeypatch.setattr(_buffers, "MAX_FREE_BYTES", 50_000)
    kept = block(40_000)
    _buffers._release(kept)
    _buffers._release(block(60_000))
    assert _buffers.free_bytes() == 40_000 and _buffers._take(40_000) is kept


def test_small_outputs_come_from_numpy(rng, fresh_pool):
    x = rng.standard_normal((16, 8))  # 1 KiB
    assert x.nbytes < _buffers.MIN_BYTES
    y = batch_norm_forward(x)[0]
    assert y.base is None
    del y
    assert _buffers.free_bytes() == 0


def test_an_owner_cannot_be_copied_or_pickled_but_its_array_can(rng, fresh_pool):
    import copy
    import pickle

    x = rng.standard_normal((256, 1024)).astype(np.float32)
    y = batch_norm_forward(x)[0]
    owner = y.base
    for action in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="copy or pickle the array itself"):
            action(owner)
    # a second owner would have released the block while y still used it
    assert _buffers.free_bytes() == 0
    for clone in (copy.copy(y), copy.deepcopy(y), pickle.loads(pickle.dumps(y))):
        np.testing.assert_array_equal(clone, y)
        assert not np.shares_memory(clone, y)
