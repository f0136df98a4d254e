"""Streaming stores: same bits as ordinary stores, nothing written outside the output."""

import os
import subprocess
import sys

import numpy as np
import pytest

from bnproof.kernels import _buffers, _jit, _stream, batch_norm_backward, batch_norm_forward
from bnproof.kernels._config import jit


@jit()
def _flush(row, buf, n):
    _stream.flush_row(row, buf, n)
    _stream.store_fence()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0, 1, 3, 15, 16])
@pytest.mark.parametrize("n", [0, 1, 7, 16, 17, 100, 1000])
def test_flush_row_writes_exactly_the_row(dtype, offset, n):
    # a row at every alignment inside a larger array of sentinels
    backing = np.full(n + offset + 40, -7.0, dtype=dtype)
    row = backing[offset:offset + n]
    buf = np.arange(1, n + 1, dtype=dtype)
    _flush(row, buf, n)
    np.testing.assert_array_equal(row, buf)
    assert np.all(backing[:offset] == -7.0) and np.all(backing[offset + n:] == -7.0)


def test_flush_row_strided_view_falls_back_to_ordinary_stores():
    backing = np.zeros(200, dtype=np.float32)
    row = backing[::2]
    buf = np.arange(100, dtype=np.float32) + 1
    _flush(row, buf, 100)
    np.testing.assert_array_equal(row, buf)
    assert np.all(backing[1::2] == 0.0)


def test_flush_row_misaligned_view_falls_back_to_ordinary_stores():
    raw = np.zeros(4 * 100 + 1, dtype=np.uint8)
    row = raw[1:].view(np.float32)  # elements not aligned to their size
    assert not row.flags.aligned
    buf = np.arange(100, dtype=np.float32) + 1
    _flush(row, buf, 100)
    np.testing.assert_array_equal(row, buf)
    assert raw[0] == 0


def test_flush_row_stops_at_n_even_when_buf_is_longer():
    backing = np.zeros(64, dtype=np.float32)
    _flush(backing[:32], np.ones(64, dtype=np.float32), 32)
    assert np.all(backing[:32] == 1.0) and np.all(backing[32:] == 0.0)


def _run_plain_and_streamed(kernel, args, shape, dtype, shift):
    """Run ``kernel(*args, out, stream)`` plainly and streamed into a view
    shifted by ``shift`` elements; assert the same bits and nothing written
    outside the view. Returns both calls' results."""
    plain = np.empty(shape, dtype=dtype)
    ref = kernel(*args, plain, False)
    raw = np.full(plain.size + shift + 16, np.nan, dtype=dtype)
    streamed = raw[shift:shift + plain.size].reshape(shape)  # unaligned when shift = 1
    got = kernel(*args, streamed, True)
    np.testing.assert_array_equal(streamed, plain)
    assert np.all(np.isnan(raw[:shift])) and np.all(np.isnan(raw[shift + plain.size:]))
    return ref, got


def _fused_args(kind, x, rng):
    """Arguments of the fused channels-first kernel ``kind`` before ``out``."""
    gamma = rng.normal(1.0, 0.2, x.shape[1])
    if kind == "forward":
        return _jit.forward_ncm_fused, (x, gamma, rng.normal(0.0, 0.2, x.shape[1]), 1e-5)
    dy = rng.standard_normal(x.shape).astype(x.dtype)
    mu = x.astype(np.float64).mean(axis=(0, 2))
    invstd = 1.0 / np.sqrt(x.astype(np.float64).var(axis=(0, 2)) + 1e-5)
    return _jit.backward_ncm_fused, (dy, x, mu, invstd, gamma)


@pytest.mark.parametrize("kind", ["forward", "backward"])
@pytest.mark.parametrize("shape", [(5, 16, 33), (3, 17, 4096 + 5), (2, 20, 1), (64, 16, 64)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shift", [0, 1])
def test_fused_streamed_is_bit_identical(kind, shape, dtype, shift):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)
    kernel, args = _fused_args(kind, x, rng)
    ref, got = _run_plain_and_streamed(kernel, args, shape, dtype, shift)
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["forward", "backward"])
def test_public_fused_passes_stream_above_threshold(monkeypatch, kind):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 16, 32, 33)) + 2).astype(np.float32)  # runs >= SHORT_RUN
    assert x.shape[2] * x.shape[3] >= _jit.SHORT_RUN
    dy = rng.standard_normal(x.shape).astype(np.float32)
    w = rng.normal(1.0, 0.2, 16).astype(np.float32)
    b = rng.normal(0.0, 0.2, 16).astype(np.float32)

    def run():
        y, mean, invstd = batch_norm_forward(x, w, b)
        return (y, mean, invstd, *batch_norm_backward(dy, x, w, mean, invstd))

    plain = run()
    name = f"{kind}_ncm_fused"
    calls = []
    original = getattr(_jit, name)

    def spy(*args):
        calls.append(args[-1])
        return original(*args)

    monkeypatch.setattr(_jit, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(_buffers, "MIN_BYTES", 0)  # line-aligned outputs at any size
    monkeypatch.setattr(_jit, name, spy)
    got = run()
    assert calls == [True]
    for a, b_ in zip(plain, got, strict=True):
        np.testing.assert_array_equal(a, b_)


def test_only_large_contiguous_line_aligned_outputs_stream(monkeypatch):
    monkeypatch.setattr(_jit, "STREAM_MIN_BYTES", 1024)
    raw = np.empty(4096 + 16, dtype=np.float32)
    start = (-raw.ctypes.data % 64) // 4
    aligned = raw[start:start + 4096]
    assert _jit._streams(aligned.reshape(64, 64))
    assert not _jit._streams(aligned[:128].reshape(2, 64))  # small
    assert not _jit._streams(aligned.reshape(64, 64)[:, ::2])  # not contiguous
    assert not _jit._streams(raw[start + 1:start + 1 + 4096 - 16])  # mid-line


def test_pure_python_mode_never_streams():
    # NUMBA_DISABLE_JIT=1 runs the kernels as Python, where the intrinsics do not exist
    code = (
        "import numpy as np\n"
        "from bnproof.kernels import _jit, batch_norm_backward, batch_norm_forward\n"
        "x = np.random.default_rng(0).random((4, 16, 9)).astype(np.float32)\n"
        "y, m, s = batch_norm_forward(x)\n"
        "dx = batch_norm_backward(y, x, None, m, s)[0]\n"
        "_jit.STREAM_MIN_BYTES = 0\n"
        "assert np.array_equal(batch_norm_forward(x)[0], y)\n"
        "assert np.array_equal(batch_norm_backward(y, x, None, m, s)[0], dx)\n"
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


def _assert_streamed_outputs_match(normalize, dx, shape, dtype, shift):
    """Both elementwise kernels give the same bits streamed (into a view shifted
    by ``shift`` elements) as plain, and write nothing outside the view."""
    rng = np.random.default_rng(sum(shape) + 7 * shift)
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    mu, scale, beta, k = (rng.standard_normal(shape[1]) for _ in range(4))
    for kernel, args in ((normalize, (x, mu, scale, beta)), (dx, (dy, x, mu, scale, k, beta))):
        _run_plain_and_streamed(kernel, args, shape, dtype, shift)


@pytest.mark.parametrize("shape", [(7, 3), (300, 64), (97, 129), (5, 300), (2, 1), (70001, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shift", [0, 1])
def test_rows_by_channels_streamed_outputs_are_bit_identical(shape, dtype, shift):
    # groups of rows (C < SEGMENT; rows not a multiple of the group; several
    # tiles for (70001, 3)) and rows cut into segments (C >= SEGMENT)
    _assert_streamed_outputs_match(_jit.normalize_rc, _jit.backward_dx_rc, shape, dtype, shift)


@pytest.mark.parametrize(
    "shape", [(5, 3, 33), (3, 2, 4096 + 5), (2, 4, 1), (6, 5, 200), (65, 3, 100), (300, 7, 49)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shift", [0, 1])
def test_channels_first_unfused_streamed_outputs_are_bit_identical(shape, dtype, shift):
    # long runs cut into pieces, and short runs grouped into tasks (one flat
    # stretch per group, filled across run boundaries)
    _assert_streamed_outputs_match(_jit.normalize_ncm, _jit.backward_dx_ncm, shape, dtype, shift)


@pytest.mark.parametrize(
    "shape, channel_axis", [((64, 5), 1), ((8, 6, 7, 5), -1), ((8, 4, 6, 7), 1)]
)
@pytest.mark.parametrize("training", [True, False])
def test_public_unfused_paths_stream_above_threshold(monkeypatch, shape, channel_axis, training):
    # (N, C), channels-last and channels-first with few channels; training and inference
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) + 2).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    channels = shape[channel_axis]
    w = rng.normal(1.0, 0.2, channels).astype(np.float32)
    b = rng.normal(0.0, 0.2, channels).astype(np.float32)

    def run():
        rm = np.full(channels, 0.5, np.float32)
        rv = np.full(channels, 1.5, np.float32)
        y, mean, invstd = batch_norm_forward(x, w, b, rm, rv, training=training,
                                             channel_axis=channel_axis)
        grads = batch_norm_backward(dy, x, w, mean, invstd, training=training,
                                    channel_axis=channel_axis)
        return (y, mean, invstd, *grads)

    plain = run()
    flags = []
    original = _jit._streams

    def spy(out):
        flags.append(original(out))
        return flags[-1]

    monkeypatch.setattr(_jit, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(_buffers, "MIN_BYTES", 0)
    monkeypatch.setattr(_jit, "_streams", spy)
    got = run()
    assert flags and all(flags)
    for a, b_ in zip(plain, got, strict=True):
        np.testing.assert_array_equal(a, b_)
