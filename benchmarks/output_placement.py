"""Time the kernels with outputs placed away from their inputs, and without.

A fresh output that starts a few cache lines after its input, modulo 1 MiB,
makes the kernels stall on address aliasing (see ``bnproof.kernels._buffers``).
glibc puts blocks of one size one after the other, so the pattern below
(copy an array, normalize the copy) lands there: the forward ran about three
times slower into ``np.empty`` than into a placed output on a 2-core machine.

Each round times ``batch_norm_forward`` and ``batch_norm_backward`` on a fresh
copy of the input, once with the package's placed outputs and once with
outputs from ``np.empty`` (the rounds alternate; minimum and median kept).
Run::

    python benchmarks/output_placement.py [--shape 4096 1024] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bnproof import kernels
from bnproof.kernels import _buffers

MIB = 1 << 20


def _plain_empty(shape, dtype, apart_from=()):
    return np.empty(shape, dtype)


def _round(src: np.ndarray, grad: np.ndarray) -> tuple[float, float, int]:
    x = src.copy()  # the block glibc hands out next lies right before the output's
    start = time.perf_counter()
    y, mean, invstd = kernels.batch_norm_forward(x, training=True)
    middle = time.perf_counter()
    kernels.batch_norm_backward(grad, x, None, mean, invstd, training=True)
    end = time.perf_counter()
    return middle - start, end - middle, (y.ctypes.data - x.ctypes.data) % MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[4096, 1024])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    if args.rounds < 3 or len(args.shape) < 2 or min(args.shape) < 1:
        parser.error("pass --rounds >= 3 and a --shape of two or more positive sizes")
    rng = np.random.default_rng(0)
    src = rng.standard_normal(args.shape).astype(np.float32)
    grad = rng.standard_normal(args.shape).astype(np.float32)
    placed = _buffers.empty
    times = {"placed": ([], []), "np.empty": ([], [])}
    offsets = {}
    try:
        for r in range(args.rounds + 1):
            for name in ("placed", "np.empty"):
                _buffers.empty = placed if name == "placed" else _plain_empty
                fwd, bwd, offsets[name] = _round(src, grad)
                if r:  # the first round compiles or loads the kernels
                    times[name][0].append(fwd)
                    times[name][1].append(bwd)
    finally:
        _buffers.empty = placed
    print(f"float32 {tuple(args.shape)}, {args.rounds} rounds, ms (minimum / median):")
    for name, (fwd, bwd) in times.items():
        print(f"  {name:<9} forward {min(fwd) * 1e3:6.2f} / {statistics.median(fwd) * 1e3:6.2f}"
              f"   backward {min(bwd) * 1e3:6.2f} / {statistics.median(bwd) * 1e3:6.2f}"
              f"   output - input mod 1 MiB: {offsets[name]} bytes")
    ratio = min(times["np.empty"][0]) / min(times["placed"][0])
    print(f"forward: placed outputs {ratio:.2f}x as fast as np.empty's (minimum)")


if __name__ == "__main__":
    main()
