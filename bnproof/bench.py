"""Benchmark of the batch-normalization kernels against their memory-traffic floor.

Batch normalization is memory bound: the training forward pass must read the
input and write the output (two passes over the tensor when one channel's
slice stays in cache between the statistics and the output), the training
backward pass must read the input and the output gradient and write the
input gradient (three passes). The floor is therefore a memory copy of the
same tensor (one read and one write, 2S bytes) measured in the same run, the
fastest of NumPy's single-threaded copy, a copy split over every thread, and
the same with streaming stores (which skip reading the destination): the
forward floor is one copy, the backward floor one and a half.

Every implementation is timed in one process and one run, the minimum over
repeats (the least disturbed run on a shared machine), in :data:`ROUNDS`
rounds that each time every copy and implementation in turn:

``bnproof``
    :func:`bnproof.kernels.batch_norm_forward` / ``batch_norm_backward``.
``bnproof-prealloc``
    The same jitted kernels writing into an output allocated once (not a
    public entry point): the difference to ``bnproof`` is the wrapper's
    validation, parameter conversion, running-buffer update and output
    allocation (large outputs are recycled, see
    :mod:`bnproof.kernels._buffers`).
``numpy``
    The float64-accumulating NumPy reference of the same algorithm
    (:mod:`bnproof.kernels._reference`).
``torch``
    PyTorch's CPU ``native_batch_norm`` and ``native_batch_norm_backward``
    (only when PyTorch is importable).

With PyTorch importable, rows of whole modules follow (see
:mod:`bnproof.torch._bench`): ``bnproof.torch.BatchNorm2d`` / ``1d`` against
``nn.BatchNorm2d`` / ``1d``, forward and backward through autograd, and a
training step of a small CNN with each and without batch norm.

Results are plain JSON-serialisable data; nothing is printed.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["CASES", "MODULE_CASE_NAMES", "QUICK_CASES", "Case", "run_bench"]

#: Repeats per measurement (the minimum is reported).
REPEATS = 7
QUICK_REPEATS = 2

#: The copies and implementations are timed in this many rounds, each a block
#: of about ``repeats / ROUNDS`` calls per measurement, and the minimum over
#: all rounds is kept: a slow spell of a shared machine then falls on every
#: implementation rather than on whichever was being timed. The order of the
#: implementations rotates from round to round (what ran just before changes
#: what is left in the caches).
ROUNDS = 3

#: Passes over the tensor that the floor allows: the training forward reads x
#: and writes y; the backward reads x and dy and writes dx. These are the
#: least a kernel can move when a channel's slice stays in cache between its
#: statistics pass and its output pass (otherwise 3 and 5 passes).
FLOOR_PASSES = {"forward": 2, "backward": 3}


@dataclass(frozen=True)
class Case:
    """One benchmark shape: ``name``, ``shape``, ``dtype`` and ``channel_axis``."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    channel_axis: int

    @property
    def nbytes(self) -> int:
        """Bytes of one tensor of this shape and dtype."""
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    @property
    def layout(self) -> str:
        """``"NCHW"``, ``"NHWC"`` or ``"NC"``."""
        if len(self.shape) == 2:
            return "NC"
        return "NCHW" if self.channel_axis == 1 else "NHWC"


#: 64 MiB float32 channels-first and channels-last, (N, C) float32, a float64
#: case of the same size in bytes, and a late-stage convolutional feature map
#: (7 x 7 runs, read in memory order rather than one channel at a time).
CASES = (
    Case("nchw-float32", (256, 64, 32, 32), "float32", 1),
    Case("nhwc-float32", (256, 32, 32, 64), "float32", -1),
    Case("nc-float32", (4096, 1024), "float32", 1),
    Case("nchw-float64", (128, 64, 32, 32), "float64", 1),
    Case("nchw7x7-float32", (256, 512, 7, 7), "float32", 1),
)

#: Small shapes that exercise every layout and dtype in a second or two.
QUICK_CASES = (
    Case("nchw-float32", (8, 16, 8, 8), "float32", 1),
    Case("nhwc-float32", (8, 8, 8, 16), "float32", -1),
    Case("nc-float32", (256, 32), "float32", 1),
    Case("nchw-float64", (8, 16, 8, 8), "float64", 1),
    Case("nchw7x7-float32", (8, 32, 7, 7), "float32", 1),
)


#: Cases of :mod:`bnproof.torch._bench` (PyTorch needed): modules through
#: autograd on the shapes of the first three cases above, and a CNN training
#: step. Named here so that ``bnproof bench --help`` does not import PyTorch.
MODULE_CASE_NAMES = (
    "module-nchw-float32", "module-nhwc-float32", "module-nc-float32", "cnn-step",
)


def _module_results(quick: bool, repeats: int, names, progress) -> dict:
    """Return the module and training-step rows (none without PyTorch or when not selected)."""
    empty = {"modules": [], "train_step": None}
    if names is not None and not names:
        return empty
    try:
        from bnproof.torch._bench import run_module_bench
    except ImportError:
        return empty
    return run_module_bench(quick=quick, repeats=repeats, rounds=ROUNDS, names=names,
                            progress=progress)


def _min_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm up: compile or load kernels, fault in pages of reused buffers
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _parallel_copies():
    """Return ``(copy, stream_copy)`` of :mod:`bnproof.kernels._copy` (imports Numba)."""
    from bnproof.kernels import _copy

    return _copy.copy, _copy.stream_copy


def _copy_time(x: np.ndarray, repeats: int) -> dict[str, float]:
    """Time copies into a preallocated array: NumPy's one thread, and every thread."""
    dst = np.empty_like(x)
    flat_src, flat_dst = x.reshape(-1), dst.reshape(-1)
    copy, stream_copy = _parallel_copies()
    times = {
        "numpy": _min_time(lambda: np.copyto(dst, x), repeats),
        "threads": _min_time(lambda: copy(flat_src, flat_dst), repeats),
        "threads-streaming": _min_time(lambda: stream_copy(flat_src, flat_dst), repeats),
    }
    if not np.array_equal(dst, x):  # a floor must come from a copy that copies
        raise RuntimeError("the streaming copy did not reproduce its input")
    return times


def _fresh_copy_time(x: np.ndarray, repeats: int) -> float:
    """Time a copy into a newly allocated array (what any function returning y pays)."""
    return _min_time(x.copy, repeats)


def _bnproof_ops(x, dy, w, b, axis):
    from bnproof.kernels import batch_norm_backward, batch_norm_forward

    channels = x.shape[axis]
    rm = np.zeros(channels, dtype=x.dtype)
    rv = np.ones(channels, dtype=x.dtype)
    _, mean, invstd = batch_norm_forward(x, w, b, rm, rv, channel_axis=axis)

    def forward():
        return batch_norm_forward(x, w, b, rm, rv, channel_axis=axis)

    def backward():
        return batch_norm_backward(dy, x, w, mean, invstd, channel_axis=axis)

    return forward, backward


def _prealloc_ops(x, dy, w, b, axis):
    from bnproof.kernels import _batch_norm, _buffers, _jit

    axis %= x.ndim
    a = math.prod(x.shape[:axis])
    layout = (a, x.shape[axis], x.size // (a * x.shape[axis]))
    x3 = _batch_norm._kernel_view(_batch_norm._as_layout(x, layout))
    dy3 = _batch_norm._kernel_view(_batch_norm._as_layout(dy, layout))
    # aligned and placed like the public functions' outputs
    out = _buffers.empty(x.shape, x.dtype, apart_from=(x3, dy3))
    out3 = _batch_norm._kernel_view(out.reshape(layout))
    gamma = w.astype(np.float64)
    beta = b.astype(np.float64)
    mean, _, invstd = _jit.forward_train(x3, gamma, beta, 1e-5, out3)

    def forward():
        return _jit.forward_train(x3, gamma, beta, 1e-5, out3)

    def backward():
        return _jit.backward_train(dy3, x3, mean, invstd, gamma, out3)

    return forward, backward


def _numpy_ops(x, dy, w, b, axis):
    from bnproof.kernels import _reference

    axis %= x.ndim
    a = math.prod(x.shape[:axis])
    layout = (a, x.shape[axis], x.size // (a * x.shape[axis]))
    x3 = x.reshape(layout)
    dy3 = dy.reshape(layout)
    gamma = w.astype(np.float64)
    beta = b.astype(np.float64)
    mean, _, invstd = _reference.forward_train(x3, gamma, beta, 1e-5, np.empty_like(x3))

    def forward():
        return _reference.forward_train(x3, gamma, beta, 1e-5, np.empty_like(x3))

    def backward():
        return _reference.backward_train(dy3, x3, mean, invstd, gamma, np.empty_like(x3))

    return forward, backward


def _torch_ops(x, dy, w, b, axis):
    import torch

    def tensor(arr):
        t = torch.from_numpy(arr)
        # channels-last arrays become NCHW tensors with channels-last strides
        return t.movedim(-1, 1) if axis % arr.ndim == arr.ndim - 1 and arr.ndim > 2 else t

    xt, dyt = tensor(x), tensor(dy)
    wt, bt = torch.from_numpy(w), torch.from_numpy(b)
    rm = torch.zeros_like(wt)
    rv = torch.ones_like(wt)
    _, mean, invstd = torch.ops.aten.native_batch_norm(xt, wt, bt, rm, rv, True, 0.1, 1e-5)

    def forward():
        return torch.ops.aten.native_batch_norm(xt, wt, bt, rm, rv, True, 0.1, 1e-5)

    def backward():
        return torch.ops.aten.native_batch_norm_backward(
            dyt, xt, wt, rm, rv, mean, invstd, True, 1e-5, [True, True, True]
        )

    return forward, backward


def _implementations():
    impls = {"bnproof": _bnproof_ops, "bnproof-prealloc": _prealloc_ops, "numpy": _numpy_ops}
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        impls["torch"] = _torch_ops
    return impls


def _first_call_seconds() -> float:
    """Seconds a new process needs for its first (cached) kernel call."""
    code = (
        "import time, numpy as np; t = time.perf_counter(); "
        "from bnproof.kernels import batch_norm_forward; "
        "batch_norm_forward(np.ones((4, 3, 2, 2), np.float32)); "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return float(out.strip().splitlines()[-1])


def _threads() -> dict:
    import numba

    info = {"numba_threads": int(numba.get_num_threads())}
    try:
        import torch
    except ImportError:
        info["torch_threads"] = None
    else:
        info["torch_threads"] = int(torch.get_num_threads())
    return info


def _measure_case(case: Case, repeats: int, impls, progress) -> dict:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(case.shape) * 2.0 + 0.5).astype(case.dtype)
    dy = rng.standard_normal(case.shape).astype(case.dtype)
    channels = case.shape[case.channel_axis]
    w = rng.normal(1.0, 0.2, channels).astype(case.dtype)
    b = rng.normal(0.0, 0.2, channels).astype(case.dtype)
    rounds = min(ROUNDS, repeats)
    block = math.ceil(repeats / rounds)
    ops = {name: make(x, dy, w, b, case.channel_axis) for name, make in impls.items()}
    copies: dict[str, float] = {}
    t_fresh = math.inf
    seconds = {name: {"forward": math.inf, "backward": math.inf} for name in ops}
    for r in range(rounds):
        for method, t in _copy_time(x, block).items():
            copies[method] = min(copies.get(method, math.inf), t)
        t_fresh = min(t_fresh, _fresh_copy_time(x, block))
        names = list(ops)
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order
            forward, backward = ops[name]
            if progress is not None and r == 0:
                progress(case.name, name)
            seconds[name]["forward"] = min(seconds[name]["forward"], _min_time(forward, block))
            seconds[name]["backward"] = min(seconds[name]["backward"], _min_time(backward, block))
    del ops
    t_copy = min(copies.values())
    floor = {op: t_copy * passes / 2 for op, passes in FLOOR_PASSES.items()}
    rows = []
    for name, times in seconds.items():
        for op in ("forward", "backward"):
            t = times[op]
            rows.append(
                {
                    "case": case.name,
                    "impl": name,
                    "op": op,
                    "seconds": t,
                    "gb_per_s": FLOOR_PASSES[op] * case.nbytes / t / 1e9,
                    "fraction_of_floor": floor[op] / t,
                    "speedup_vs_numpy": seconds["numpy"][op] / t,
                    "speedup_vs_torch": seconds["torch"][op] / t if "torch" in seconds else None,
                }
            )
    both = {name: t["forward"] + t["backward"] for name, t in seconds.items()}
    return {
        "case": case.name,
        "shape": list(case.shape),
        "dtype": case.dtype,
        "layout": case.layout,
        "channel_axis": case.channel_axis,
        "nbytes": case.nbytes,
        "memcpy_seconds": t_copy,
        "memcpy_gb_per_s": 2 * case.nbytes / t_copy / 1e9,
        "memcpy_seconds_by_method": copies,
        "fresh_copy_seconds": t_fresh,
        "floor_seconds": floor,
        "rows": rows,
        "forward_backward_seconds": both,
        "forward_backward_speedup_vs_torch": (
            both["torch"] / both["bnproof"] if "torch" in both else None
        ),
    }


def run_bench(
    *, quick: bool = False, repeats: int | None = None, cases=None, progress=None
) -> dict:
    """Time bnproof, the NumPy reference and PyTorch against a memory copy.

    Parameters
    ----------
    quick : bool, default False
        Small shapes and 2 repeats: checks that everything runs, measures
        nothing meaningful.
    repeats : int or None
        Timed repeats per measurement (the minimum is kept); default 7, or 2
        with ``quick``.
    cases : sequence of str or None
        Names of the cases to run (see :data:`CASES` and
        :data:`MODULE_CASE_NAMES`); default all.
    progress : callable or None
        ``progress(case_name, impl_name)`` before each implementation.

    Returns
    -------
    dict
        ``"cases"``: per shape the memcpy time, the floor of each operation
        and ``"rows"`` of ``{"case", "impl", "op", "seconds", "gb_per_s",
        "fraction_of_floor", "speedup_vs_numpy", "speedup_vs_torch"}``;
        ``"first_call_seconds"`` of a new process (kernels loaded from the
        on-disk cache); ``"threads"``; ``"setup"``; with PyTorch,
        ``"modules"`` (forward+backward through autograd, bnproof's module
        against PyTorch's) and ``"train_step"`` (a small CNN's training step
        with each, and without batch norm), see
        :func:`bnproof.torch._bench.run_module_bench` (empty and None
        without PyTorch). JSON-serialisable.

    Raises
    ------
    ValueError
        If ``repeats`` is not an int >= 1 or a case name is unknown.

    Notes
    -----
    Training mode of Ioffe & Szegedy (2015), Algorithm 1, and its backward
    pass (section 3). ``bnproof`` and ``torch`` also update running buffers
    (PyTorch's rule); ``bnproof-prealloc`` and ``numpy`` take no buffers.
    ``gb_per_s`` counts the floor's traffic (2 tensors for the forward, 3
    for the backward) divided by the time; ``fraction_of_floor`` is the
    floor's time divided by the time (1.0 means as fast as a memory copy).
    """
    if repeats is None:
        repeats = QUICK_REPEATS if quick else REPEATS
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    available = QUICK_CASES if quick else CASES
    module_names = None
    if cases is None:
        selected = available
    else:
        names = [c.name for c in available] + list(MODULE_CASE_NAMES)
        unknown = [c for c in cases if c not in names]
        if unknown or not cases:
            raise ValueError(
                f"unknown case {unknown[0] if unknown else None!r}; choose from {', '.join(names)}"
            )
        selected = [c for c in available if c.name in cases]
        module_names = [c for c in cases if c in MODULE_CASE_NAMES]
    impls = _implementations()
    results = [_measure_case(case, repeats, impls, progress) for case in selected]
    modules = _module_results(quick, repeats, module_names, progress)
    return {
        "cases": results,
        **modules,
        "first_call_seconds": _first_call_seconds(),
        "threads": _threads(),
        "setup": {
            "quick": quick,
            "repeats": repeats,
            "timing": "minimum over repeats (time.perf_counter), taken in "
            f"{ROUNDS} rounds that each time every copy and implementation for about "
            "repeats / rounds calls after one warm-up call",
            "floor": "the fastest of np.copyto (one thread), a copy split over every "
            "Numba thread, and the same with streaming stores, into a preallocated array "
            "of the same shape (2S bytes), measured in the same run; forward floor = 1 "
            "copy (2 passes), backward floor = 1.5 copies (3 passes)",
            "fresh_copy": "x.copy(): a copy into a new array, for the cost of fresh pages",
            "bnproof-prealloc": "the jitted kernels writing into an output allocated once "
            "(internal, not the public API)",
            "impls": list(impls),
            "mode": "training, momentum 0.1, eps 1e-5; running buffers updated by "
            "bnproof and torch (bnproof-prealloc and numpy take none)",
        },
    }
