"""How close can a two-pass kernel get to the copy floor on this machine?

The bench's floor for the channels-first training forward is one copy (read
x, write y); for the backward, one and a half copies (read x and dy, write
dx). A kernel must read x once for the statistics before it can write y, so
it makes a second pass over each channel. This script times, in one run on a
(256, 64, 32, 32) float32 input:

* the floor: the streaming copy of ``bnproof bench``;
* the same memory traffic as the fused kernels with no arithmetic: per
  channel, a sum over x (and dy), then a streamed copy of the channel (or of
  x + dy * s), one channel per thread, as ``forward_ncm_fused`` and
  ``backward_ncm_fused`` do;
* the forward's traffic with the two passes overlapped: each thread takes a
  block of channels and sums channel ``c + 1`` while it streams channel
  ``c``, prefetching the next run of ``c + 1`` (a software pipeline);
* the same overlap with each channel split between two threads (half the
  runs each, one parallel region per channel, so that a thread keeps half
  a channel in its L2 cache instead of a whole one), for the forward and
  for the backward (sums of x + dy, stream of x + dy * s);
* the fused kernels themselves (preallocated, line-aligned output).

The traffic-only ratios bound what any kernel with that structure can
reach. ``--sweep`` repeats the measurement on the same 64 MiB cut into
smaller channels, (128, 128, 1024) and (64, 256, 1024): the ceiling depends
on how much each thread keeps in its L2 cache between the two passes (one
channel, two for the pipelined forward; x and dy for the backward)::

    python benchmarks/traffic_ceiling.py [--repeats 10] [--sweep]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from bnproof.kernels._config import jit
from bnproof.kernels._jit import SEGMENT, _u
from bnproof.kernels._stream import flush_row, store_fence

SHAPE = (256, 64, 1024)  # (256, 64, 32, 32) as (A, C, B)


@jit(parallel=True)
def traffic(x, dy, out, with_dy):
    """Per channel: sum x (and dy), then stream x + s (or x + dy * s) to ``out``.

    At module level, not inside a function, so that Numba's disk cache finds
    it again in the next run.
    """
    a_len, channels, b_len = x.shape
    sums = np.empty(channels)
    for c in prange(channels):
        buf = np.empty(SEGMENT, out.dtype)
        cu = _u(c)
        s = np.float32(0)
        for a in range(a_len):
            for j in range(b_len):
                v = x[_u(a), cu, _u(j)]
                s += v + dy[_u(a), cu, _u(j)] if with_dy else v
        sums[c] = s
        for a in range(a_len):
            au = _u(a)
            for b0 in range(0, b_len, SEGMENT):
                n = min(SEGMENT, b_len - b0)
                for jj in range(n):
                    j = _u(b0 + jj)
                    buf[_u(jj)] = x[au, cu, j] + (dy[au, cu, j] * s if with_dy else s)
                flush_row(out[au, cu, b0:b0 + n], buf, n)
        store_fence()
    return sums


@intrinsic
def _prefetch(typingctx, address):
    """``llvm.prefetch`` of the line at ``address`` (read, keep in all levels)."""
    sig = types.void(types.uint64)

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty=fnty)
        builder.call(fn, [builder.inttoptr(args[0], i8p), ir.Constant(i32, 0),
                          ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@jit(parallel=True)
def traffic_pipelined(x, out, threads):
    """``traffic(x, x, out, False)`` with channel ``c + 1`` summed while ``c`` streams."""
    a_len, channels, b_len = x.shape
    sums = np.empty(channels)
    per = (channels + threads - 1) // threads
    row_bytes = x.strides[0]
    for t in prange(threads):
        buf = np.empty(SEGMENT, out.dtype)
        first, stop = t * per, min(channels, (t + 1) * per)
        s = np.float32(0)
        if first < stop:
            for a in range(a_len):
                for j in range(b_len):
                    s += x[_u(a), _u(first), _u(j)]
        for c in range(first, stop):
            cu = _u(c)
            sums[c] = s
            has_next = c + 1 < stop
            nu = _u(c + 1) if has_next else cu
            base = x[:, nu, :].ctypes.data
            s_next = np.float32(0)
            for a in range(a_len):
                au = _u(a)
                ahead = base + min(a + 2, a_len - 1) * row_bytes  # two runs ahead
                for b0 in range(0, b_len, SEGMENT):
                    n = min(SEGMENT, b_len - b0)
                    if has_next:
                        for q in range(0, n * x.itemsize, 64):
                            _prefetch(np.uint64(ahead + b0 * x.itemsize + q))
                    for jj in range(n):
                        buf[_u(jj)] = x[au, cu, _u(b0 + jj)] + s
                    if has_next:
                        for jj in range(n):
                            s_next += x[au, nu, _u(b0 + jj)]
                    flush_row(out[au, cu, b0:b0 + n], buf, n)
            s = s_next
        store_fence()
    return sums


@jit(parallel=True)
def traffic_split(x, dy, out, with_dy):
    """Overlapped passes, each channel's runs split between two threads.

    Stage ``k`` is one parallel region: part ``t`` streams its half of
    channel ``k - 1`` (with the sum of both halves) while it sums its half
    of channel ``k``, run by run.
    """
    a_len, channels, b_len = x.shape
    parts = np.zeros((channels, 2), np.float32)
    half = a_len // 2
    for stage in range(channels + 1):
        for t in prange(2):
            buf = np.empty(SEGMENT, out.dtype)
            a0 = t * half
            a1 = a_len if t == 1 else half
            reads = stage < channels
            writes = stage > 0
            nu = _u(stage if reads else 0)
            cu = _u(stage - 1 if writes else 0)
            s = parts[cu, 0] + parts[cu, 1] if writes else np.float32(0)
            s_next = np.float32(0)
            for a in range(a0, a1):
                au = _u(a)
                for b0 in range(0, b_len, SEGMENT):
                    n = min(SEGMENT, b_len - b0)
                    if writes:
                        for jj in range(n):
                            j = _u(b0 + jj)
                            buf[_u(jj)] = x[au, cu, j] + (dy[au, cu, j] * s if with_dy else s)
                    if reads:
                        for jj in range(n):
                            j = _u(b0 + jj)
                            s_next += x[au, nu, j] + dy[au, nu, j] if with_dy else x[au, nu, j]
                    if writes:
                        flush_row(out[au, cu, b0:b0 + n], buf, n)
            if reads:
                parts[nu, _u(t)] = s_next
            store_fence()
    return parts.sum(axis=1)


def _measure(shape, repeats, threads) -> None:
    """Time the floor and every row on an ``(A, C, B)`` float32 input; print them."""
    from bnproof import bench
    from bnproof.kernels import _buffers, _jit

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    out = _buffers.empty(shape, np.float32)  # line-aligned, as the public outputs
    gamma = np.ones(shape[1])
    mean, _, invstd = _jit.forward_ncm_fused(x, gamma, gamma, 1e-5, out, True)

    plain = traffic(x, x, out, False)
    if not np.allclose(traffic_pipelined(x, out, threads), plain, rtol=1e-4, atol=0.05):
        raise RuntimeError("the pipelined traffic kernel does not sum what the plain one does")
    for with_dy in (False, True):
        if not np.allclose(traffic_split(x, dy, out, with_dy), traffic(x, dy, out, with_dy),
                           rtol=1e-4, atol=0.05):
            raise RuntimeError("the split traffic kernel does not sum what the plain one does")

    floor = bench._copy_time(x, repeats)["threads-streaming"]
    times = {}
    for _ in range(3):  # rounds, so that no row always runs right after another
        for name, fn in [
            ("forward, traffic only", lambda: traffic(x, x, out, False)),
            ("forward, pipelined", lambda: traffic_pipelined(x, out, threads)),
            ("forward, split, pipelined", lambda: traffic_split(x, dy, out, False)),
            ("forward, kernel", lambda: _jit.forward_ncm_fused(x, gamma, gamma, 1e-5, out, True)),
            ("backward, traffic only", lambda: traffic(x, dy, out, True)),
            ("backward, split, pipelined", lambda: traffic_split(x, dy, out, True)),
            ("backward, kernel",
             lambda: _jit.backward_ncm_fused(dy, x, mean, invstd, gamma, out, True)),
        ]:
            times[name] = min(times.get(name, np.inf), bench._min_time(fn, repeats))
    channel_mib = shape[0] * shape[2] * x.itemsize / 2**20
    print(f"shape {shape} float32, {channel_mib:g} MiB per channel; "
          f"floor (streaming copy) {floor * 1e3:.2f} ms")
    for name, seconds in times.items():
        passes = 1.5 if name.startswith("backward") else 1.0
        print(f"  {name:<27} {seconds * 1e3:6.2f} ms  {passes * floor / seconds:5.0%} of the floor")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--sweep", action="store_true",
        help="also time the same 64 MiB cut into smaller channels (0.5 and 0.25 MiB)",
    )
    args = parser.parse_args()

    import numba

    threads = numba.get_num_threads()
    shapes = [SHAPE] + ([(128, 128, 1024), (64, 256, 1024)] if args.sweep else [])
    for shape in shapes:
        _measure(shape, args.repeats, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
