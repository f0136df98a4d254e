"""What does exactness cost? precise_bn against torch's update_bn on the same data.

Both run the same model in training mode over the same batches (a small
ResNet-like CNN on (N, 3, 32, 32) float32 inputs, channels-first or
channels-last); ``update_bn`` averages per-batch statistics inside PyTorch's
kernels, ``precise_bn`` additionally reads every batch norm's input once
more to compute float64 moments and merges them exactly. The script prints
the best of ``--repeats`` wall-clock times of each and their ratio (the goal
is at most 1.3)::

    python benchmarks/precise_bn.py [--repeats 5] [--batches 10] [--batch-size 64]
        [--channels-last]

Time it on a quiet machine: the ratio is what matters, but a busy machine
makes both times noisy.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from bnproof.torch import precise_bn


def block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        block(3, 16, 1), block(16, 32, 2), block(32, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10), nn.BatchNorm1d(10),
    )


def best_of(repeats: int, fn) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()

    net = model()
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    gen = torch.Generator().manual_seed(1)
    batches = [
        torch.randn(args.batch_size, 3, 32, 32, generator=gen).contiguous(memory_format=fmt)
        for _ in range(args.batches)
    ]
    # Warm up both (Numba loads its kernels, PyTorch its thread pool).
    precise_bn(net, batches[:2], progress=False)
    update_bn(batches[:2], net)

    t_update = best_of(args.repeats, lambda: update_bn(batches, net))
    t_precise = best_of(args.repeats, lambda: precise_bn(net, batches, progress=False))
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    layout = "channels-last" if args.channels_last else "channels-first"
    print(f"{args.batches} batches of ({args.batch_size}, 3, 32, 32) float32, {layout}, "
          f"{n_bn} batch norms, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"update_bn   {t_update * 1e3:9.1f} ms")
    print(f"precise_bn  {t_precise * 1e3:9.1f} ms")
    print(f"ratio       {t_precise / t_update:9.2f}  (goal <= 1.3)")


if __name__ == "__main__":
    main()
