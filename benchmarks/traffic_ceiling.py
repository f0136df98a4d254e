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
* the fused kernels themselves (preallocated, line-aligned output).

The first ratio bounds what any kernel with that structure can reach::

    python benchmarks/traffic_ceiling.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from numba import prange

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    from bnproof import bench
    from bnproof.kernels import _buffers, _jit

    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE, dtype=np.float32)
    dy = rng.standard_normal(SHAPE, dtype=np.float32)
    out = _buffers.empty(SHAPE, np.float32)  # line-aligned, as the public outputs
    gamma = np.ones(SHAPE[1])
    mean, _, invstd = _jit.forward_ncm_fused(x, gamma, gamma, 1e-5, out, True)

    floor = bench._copy_time(x, args.repeats)["threads-streaming"]
    times = {}
    for _ in range(3):  # rounds, so that no row always runs right after another
        for name, fn in [
            ("forward, traffic only", lambda: traffic(x, x, out, False)),
            ("forward, kernel", lambda: _jit.forward_ncm_fused(x, gamma, gamma, 1e-5, out, True)),
            ("backward, traffic only", lambda: traffic(x, dy, out, True)),
            ("backward, kernel",
             lambda: _jit.backward_ncm_fused(dy, x, mean, invstd, gamma, out, True)),
        ]:
            times[name] = min(times.get(name, np.inf), bench._min_time(fn, args.repeats))
    print(f"shape {SHAPE} float32; floor (streaming copy) {floor * 1e3:.2f} ms")
    for name, seconds in times.items():
        passes = 1.5 if name.startswith("backward") else 1.0
        print(f"  {name:<24} {seconds * 1e3:6.2f} ms  {passes * floor / seconds:5.0%} of the floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
