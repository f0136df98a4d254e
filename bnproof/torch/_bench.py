"""Timings of bnproof's modules against PyTorch's, through autograd, for ``bnproof bench``.

Each row times what a model pays: the module call and ``.backward()`` of its
output (forward, backward, the running-buffer update and autograd's
bookkeeping), bnproof's ``BatchNorm1d/2d`` against ``nn.BatchNorm1d/2d`` on
the same tensor. A whole training step of a small CNN (forward, loss,
backward, SGD update) is timed with PyTorch's batch norm, with bnproof's,
and with the batch-norm layers replaced by identities, which gives batch
norm's share of a step for each implementation. Results are plain data.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from ._modules import convert

__all__ = ["MODULE_CASES", "QUICK_MODULE_CASES", "STEP_CASE", "run_module_bench"]


@dataclass(frozen=True)
class ModuleCase:
    """A module benchmark: ``name``, input ``shape`` and ``channels_last``."""

    name: str
    shape: tuple[int, ...]
    channels_last: bool

    @property
    def layout(self) -> str:
        """``"NCHW"``, ``"NHWC"`` or ``"NC"``."""
        if len(self.shape) == 2:
            return "NC"
        return "NHWC" if self.channels_last else "NCHW"


MODULE_CASES = (
    ModuleCase("module-nchw-float32", (256, 64, 32, 32), False),
    ModuleCase("module-nhwc-float32", (256, 64, 32, 32), True),
    ModuleCase("module-nc-float32", (4096, 1024), False),
)

QUICK_MODULE_CASES = (
    ModuleCase("module-nchw-float32", (8, 16, 8, 8), False),
    ModuleCase("module-nhwc-float32", (8, 16, 8, 8), True),
    ModuleCase("module-nc-float32", (256, 32), False),
)

#: Name of the training-step row.
STEP_CASE = "cnn-step"

#: Batch and image size of the training step (CIFAR-sized), and with ``quick``.
STEP_INPUT = (64, 3, 32, 32)
QUICK_STEP_INPUT = (8, 3, 8, 8)


def _times(fn, repeats: int) -> list[float]:
    fn()  # warm up: compile or load kernels, allocate buffers
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _module_pair(case: ModuleCase):
    channels = case.shape[1]
    cls = nn.BatchNorm1d if len(case.shape) == 2 else nn.BatchNorm2d
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(case.shape, generator=gen) * 2 + 0.5
    if case.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    grad = torch.randn(case.shape, generator=gen)
    if case.channels_last:
        grad = grad.contiguous(memory_format=torch.channels_last)
    ref = cls(channels)
    ours = convert(cls(channels))

    def step(module):
        def run():
            x.grad = None
            module(x).backward(grad)
        return run

    return {"torch": step(ref), "bnproof": step(ours)}


def small_cnn(classes: int = 10) -> nn.Sequential:
    """Return the CNN of the training-step row (PyTorch's batch norm)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(64 * 16, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(),
        nn.Linear(128, classes),
    )


def _without_batch_norm(model: nn.Sequential) -> nn.Sequential:
    return nn.Sequential(*[nn.Identity() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                           else m for m in model])


def _step_fns(shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    target = torch.randint(0, 10, (shape[0],), generator=gen)
    torch.manual_seed(0)
    models = {"torch": small_cnn()}
    models["bnproof"] = convert(small_cnn())
    models["bnproof"].load_state_dict(models["torch"].state_dict())
    models["no batch norm"] = _without_batch_norm(small_cnn())
    fns = {}
    for name, model in models.items():
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def run(model=model, opt=opt):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), target).backward()
            opt.step()

        fns[name] = run
    return fns


def _timed(fns: dict, repeats: int, rounds: int, progress, label: str):
    """``(minimum, median)`` seconds per implementation, over rounds that rotate the order."""
    times = {name: [] for name in fns}
    block = math.ceil(repeats / rounds)
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order
            if progress is not None and r == 0:
                progress(label, name)
            times[name] += _times(fns[name], block)
    return ({name: min(t) for name, t in times.items()},
            {name: statistics.median(t) for name, t in times.items()})


def run_module_bench(*, quick: bool, repeats: int, rounds: int, names=None,
                     progress=None) -> dict:
    """Time module forward+backward and a CNN training step, bnproof against PyTorch.

    Parameters
    ----------
    quick : bool
        Small shapes (a smoke run).
    repeats, rounds : int
        Timed calls per implementation, in this many rounds (the order of
        the implementations rotates from round to round).
    names : collection of str or None
        Cases to run (names of :data:`MODULE_CASES` and :data:`STEP_CASE`);
        None runs all.
    progress : callable or None
        ``progress(case_name, impl_name)`` before each implementation.

    Returns
    -------
    dict
        ``"modules"``: rows ``{"case", "shape", "layout", "seconds": {"torch",
        "bnproof"}, "speedup_vs_torch", "median_seconds",
        "median_speedup_vs_torch"}``; ``"train_step"``: ``{"shape",
        "seconds": {"torch", "bnproof", "no batch norm"}, "batch_norm_share":
        {"torch", "bnproof"}, "speedup_vs_torch", "median_seconds",
        "median_speedup_vs_torch"}`` or None when not selected. ``seconds``
        are minima over the calls (the least disturbed call), ``median_seconds``
        medians (a typical call, which includes costs that recur, such as
        page faults of fresh outputs); speedups are torch over bnproof.
    """
    rounds = min(rounds, repeats)
    rows = []
    for case in QUICK_MODULE_CASES if quick else MODULE_CASES:
        if names is not None and case.name not in names:
            continue
        seconds, median = _timed(_module_pair(case), repeats, rounds, progress, case.name)
        rows.append({
            "case": case.name, "shape": list(case.shape), "layout": case.layout,
            "dtype": "float32", "seconds": seconds,
            "speedup_vs_torch": seconds["torch"] / seconds["bnproof"],
            "median_seconds": median,
            "median_speedup_vs_torch": median["torch"] / median["bnproof"],
        })
    step = None
    if names is None or STEP_CASE in names:
        shape = QUICK_STEP_INPUT if quick else STEP_INPUT
        seconds, median = _timed(_step_fns(shape), repeats, rounds, progress, STEP_CASE)
        bare = seconds["no batch norm"]
        step = {
            "case": STEP_CASE, "shape": list(shape), "dtype": "float32", "seconds": seconds,
            # what the batch-norm layers add to a step, as a fraction of the step
            "batch_norm_share": {name: max(0.0, 1.0 - bare / seconds[name])
                                 for name in ("torch", "bnproof")},
            "speedup_vs_torch": seconds["torch"] / seconds["bnproof"],
            "median_seconds": median,
            "median_speedup_vs_torch": median["torch"] / median["bnproof"],
        }
    return {"modules": rows, "train_step": step}
