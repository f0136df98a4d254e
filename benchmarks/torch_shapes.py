"""bnproof.torch's modules against PyTorch's on shapes beyond ``bnproof bench``'s rows.

Each shape is timed as a model pays for it: the module call and ``.backward()``
of its output, float32, training mode, bnproof's converted module against
``nn.BatchNorm1d/2d`` on the same tensor, in four alternating rounds. Prints
the minimum and median per implementation and bnproof's speedup (below 1:
PyTorch's op is faster). Small calls show bnproof's fixed cost of about
0.2 ms of Python per forward and backward. Run::

    python benchmarks/torch_shapes.py [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from bnproof.torch import convert
from bnproof.torch._bench import _times  # warm-up call, then the timed ones

SHAPES = [
    (256, 64), (1024, 256), (2048, 512), (512, 2048), (8192, 512), (4096, 4096),
    (32, 64, 56, 56), (128, 256, 14, 14), (64, 512, 7, 7), (16, 128, 28, 28),
    (8, 64, 112, 112),
]


def _row(shape, channels_last: bool, rounds: int) -> str:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    g = torch.randn(shape, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        g = g.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    cls = torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d
    modules = {"torch": cls(shape[1]), "bnproof": convert(cls(shape[1]))}
    calls = max(3, min(50, int(5e6 / x.numel())))  # about as long for every shape
    times = {name: [] for name in modules}
    for r in range(rounds):
        for name in (list(modules) if r % 2 == 0 else list(modules)[::-1]):
            module = modules[name]

            def step(module=module):
                x.grad = None
                module(x).backward(g)

            times[name] += _times(step, calls)
    low = {k: min(v) * 1e3 for k, v in times.items()}
    mid = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    layout = "NHWC" if channels_last else ("NC" if len(shape) == 2 else "NCHW")
    return (f"{str(shape):<20} {layout:<5} {low['torch']:9.3f} {low['bnproof']:9.3f} "
            f"{low['torch'] / low['bnproof']:6.2f}   {mid['torch']:9.3f} {mid['bnproof']:9.3f} "
            f"{mid['torch'] / mid['bnproof']:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    print(f"module call + .backward(), float32, ms; torch threads {torch.get_num_threads()}")
    print(f"{'shape':<20} {'':<5} {'torch min':>9} {'bnp min':>9} {'ratio':>6}   "
          f"{'torch med':>9} {'bnp med':>9} {'ratio':>6}")
    for shape in SHAPES:
        for channels_last in ([False, True] if len(shape) == 4 else [False]):
            print(_row(shape, channels_last, args.rounds), flush=True)
    print("ratio = torch / bnproof: above 1, bnproof is faster")


if __name__ == "__main__":
    main()
