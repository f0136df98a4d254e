"""Exact population statistics for the batch norms of a PyTorch model (PreciseBN).

:func:`precise_bn` runs the model over many batches with the final weights
and replaces each batch norm's running buffers by the exact statistics of
everything it saw, on one process or merged across the ranks of
``torch.distributed``.
"""

from __future__ import annotations

import numbers
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numba
import numpy as np
import torch
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parameter import is_lazy

from bnproof.kernels import Moments, batch_norm_moments, merge_moments
from bnproof.kernels._moments import _merge

__all__ = ["PreciseBNResult", "precise_bn"]

#: The two modes of :func:`precise_bn`.
MODES = ("train", "eval-consistent")

#: Seconds a run must last before the progress bar appears (short runs print nothing).
PROGRESS_AFTER_SECONDS = 1.0


@dataclass(frozen=True)
class PreciseBNResult:
    """What :func:`precise_bn` did.

    Attributes
    ----------
    moments : dict of str to Moments
        For every updated module (by its name in ``model.named_modules()``),
        the merged float64 ``(count, mean, m2)`` of everything it saw (over
        all ranks). ``running_mean`` is ``mean``, ``running_var`` is
        ``m2 / (count - 1)``, both rounded to the buffers' dtype.
    skipped : dict of str to str
        Batch norms whose buffers were left untouched, with the reason
        (no running statistics, or never called during the pass).
    order : tuple of str
        The updated modules in the order of their first call, the depth
        order of ``mode="eval-consistent"``.
    passes : int
        Passes over the batches: 1 in ``"train"`` mode, one per depth
        level in ``"eval-consistent"`` mode.
    batches : int
        Batches this process read per pass.
    """

    moments: dict[str, Moments]
    skipped: dict[str, str] = field(default_factory=dict)
    order: tuple[str, ...] = ()
    passes: int = 1
    batches: int = 0

    @property
    def updated(self) -> tuple[str, ...]:
        """Names of the modules whose running buffers were written."""
        return tuple(self.moments)


class _StopForward(Exception):
    """Raised by a hook to end a forward pass early (eval-consistent mode)."""


class _Progress:
    """A plain text progress bar on stderr, shown once a run lasts a second."""

    def __init__(self, enabled: bool, total: int | None, passes: int | None):
        self.enabled = enabled
        self.total = total
        self.passes = passes
        self.start = time.monotonic()
        self.shown = False
        self.last = 0.0

    def update(self, done: int, pass_index: int) -> None:
        if not self.enabled:
            return
        if not self.shown and time.monotonic() - self.start < PROGRESS_AFTER_SECONDS:
            return
        now = time.monotonic()
        if self.shown and now - self.last < 0.1 and done != self.total:
            return  # at most ten lines a second
        self.shown, self.last = True, now
        of_passes = f"pass {pass_index + 1}" + (f"/{self.passes}" if self.passes else "")
        if self.total:
            filled = int(30 * min(done, self.total) / self.total)
            bar = "[" + "#" * filled + "." * (30 - filled) + "]"
            line = f"\rprecise_bn {of_passes} {bar} {done}/{self.total} batches"
        else:
            line = f"\rprecise_bn {of_passes} {done} batches"
        sys.stderr.write(line)
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _check_args(model, batches, num_batches, process_group, progress, mode):
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__} "
            "(pass the network whose batch norms to update)"
        )
    if isinstance(batches, torch.Tensor) or not hasattr(batches, "__iter__"):
        raise TypeError(
            f"batches must be an iterable of batches (e.g. a DataLoader or a list of "
            f"tensors), got {type(batches).__name__}"
        )
    if num_batches is not None:
        if isinstance(num_batches, bool) or not isinstance(num_batches, numbers.Integral):
            raise TypeError(f"num_batches must be an int >= 1 or None, got {num_batches!r}")
        if num_batches < 1:
            raise ValueError(
                f"num_batches={num_batches} must be >= 1 (or None to read every batch)"
            )
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {', '.join(map(repr, MODES))}")
    if mode == "eval-consistent" and isinstance(batches, Iterator):
        raise TypeError(
            "mode='eval-consistent' reads the batches once per depth level, but batches "
            f"is a one-shot iterator ({type(batches).__name__}); pass a list or a DataLoader"
        )
    if process_group is not None:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise ValueError(
                "process_group was given but torch.distributed is not initialized "
                "(call torch.distributed.init_process_group first, or pass process_group=None)"
            )


def _distributed(process_group) -> bool:
    if process_group is not None:
        return True
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _batch_input(batch, index: int):
    """Return the input tensor of one batch: the batch itself or its first element."""
    if isinstance(batch, tuple | list) and batch:
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise TypeError(
            f"batch {index} is a {type(batch).__name__}; each batch must be a tensor or a "
            "tuple/list whose first element is the input tensor"
        )
    return batch


def _as_numpy(x: torch.Tensor) -> tuple[np.ndarray, int]:
    """Return a NumPy view of a batch norm's input and its channel axis (no copy if possible).

    Channels-last tensors are read as ``(N, *spatial, C)`` views with the
    channel axis last; other layouts are copied once into a contiguous array.
    """
    x = x.detach()
    if x.device.type != "cpu":
        x = x.cpu()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    if x.is_contiguous():
        return x.numpy(), 1
    if x.dim() > 2:
        moved = x.movedim(1, -1)
        if moved.is_contiguous():
            return moved.numpy(), -1
    return x.contiguous().numpy(), 1


def _empty_record(channels: int) -> Moments:
    zeros = np.zeros(channels)
    return Moments(0, zeros, zeros.copy(), mean_lo=zeros.copy())


class _Collector:
    """Forward pre-hooks that merge each batch norm's input moments, in call order."""

    def __init__(self, modules: dict[str, _BatchNorm]):
        self.modules = modules
        self.records = {name: _empty_record(m.num_features) for name, m in modules.items()}
        self.order: list[str] = []
        self.calls_this_batch: dict[str, int] = {}
        self.max_calls = 0
        self.active: set[str] = set(modules)  # modules whose inputs are recorded
        self.stop_at: set[str] = set()  # modules before which the forward may stop
        self.handles = []
        self.torch_threads = torch.get_num_threads()

    def __enter__(self):
        for name, module in self.modules.items():
            self.handles.append(module.register_forward_pre_hook(self._hook(name)))
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        return False

    def _hook(self, name):
        def hook(module, args):
            if name in self.stop_at:
                raise _StopForward
            if name not in self.order:
                self.order.append(name)
            calls = self.calls_this_batch.get(name, 0) + 1
            self.calls_this_batch[name] = calls
            self.max_calls = max(self.max_calls, calls)
            if name in self.active:
                x, axis = _as_numpy(args[0])
                if x.size:
                    # Both records come from the kernels: merge without re-checking.
                    self.records[name] = _merge(
                        self.records[name], batch_norm_moments(x, channel_axis=axis)
                    )
                    if torch.get_num_threads() != self.torch_threads:
                        # Numba's OpenMP layer may share PyTorch's runtime and leave its
                        # own thread count there; PyTorch's results depend on it.
                        torch.set_num_threads(self.torch_threads)

        return hook

    def new_batch(self):
        self.calls_this_batch = {}


def _run_pass(model, batches, num_batches, device, collector, progress, pass_index):
    """One pass over the batches; return how many were read."""
    count = 0
    for index, batch in enumerate(batches):
        if num_batches is not None and index >= num_batches:
            break
        x = _batch_input(batch, index)
        if device is not None:
            x = x.to(device)
        collector.new_batch()
        try:
            model(x)
        except _StopForward:
            pass
        count += 1
        progress.update(count, pass_index)
    return count


def _pack(records: dict[str, Moments], failed: bool) -> torch.Tensor:
    """One float64 vector: a failure flag, then count, mean, mean_lo, m2 per module."""
    parts = [np.array([1.0 if failed else 0.0])]
    for m in records.values():
        lo = np.zeros_like(m.mean) if m.mean_lo is None else m.mean_lo
        parts += [np.array([float(m.count)]), m.mean, lo, m.m2]
    return torch.from_numpy(np.concatenate(parts))


def _unpack(vector: np.ndarray, like: dict[str, Moments]) -> dict[str, Moments]:
    out, at = {}, 1
    for name, m in like.items():
        c = m.mean.shape[0]
        count = int(vector[at])
        mean = vector[at + 1 : at + 1 + c].copy()
        lo = vector[at + 1 + c : at + 1 + 2 * c].copy()
        m2 = vector[at + 1 + 2 * c : at + 1 + 3 * c].copy()
        out[name] = Moments(count, mean, m2, mean_lo=lo)
        at += 1 + 3 * c
    return out


def _all_merge(records: dict[str, Moments], failed: bool, process_group):
    """Gather every rank's records and merge them in rank order (every rank the same).

    A rank whose pass failed still takes part, with its flag set, so that no
    rank waits forever and no rank writes anything. Returns the merged
    records and whether any rank failed.
    """
    dist = torch.distributed
    local = _pack(records, failed)
    world = dist.get_world_size(process_group)
    gathered = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(gathered, local, group=process_group)
    vectors = [g.numpy() for g in gathered]
    if any(v[0] != 0.0 for v in vectors):
        return None, True
    merged = _unpack(vectors[0], records)
    for vector in vectors[1:]:
        other = _unpack(vector, records)
        merged = {name: merge_moments(merged[name], other[name]) for name in merged}
    return merged, False


def _check_layout_agrees(records: dict[str, Moments], process_group) -> None:
    """Every rank must hold the same modules with the same channel counts."""
    dist = torch.distributed
    sizes = torch.tensor([len(records), sum(m.mean.shape[0] for m in records.values())],
                         dtype=torch.int64)
    world = dist.get_world_size(process_group)
    gathered = [torch.empty_like(sizes) for _ in range(world)]
    dist.all_gather(gathered, sizes, group=process_group)
    if any(not torch.equal(g, sizes) for g in gathered):
        raise ValueError(
            "the ranks hold different batch norms (counts of modules and channels: "
            f"{[g.tolist() for g in gathered]}); every rank must pass the same model"
        )


def precise_bn(
    model,
    batches,
    *,
    num_batches=None,
    process_group=None,
    progress=True,
    mode="train",
) -> PreciseBNResult:
    """Set every batch norm's running statistics to the exact statistics of the data.

    Parameters
    ----------
    model : torch.nn.Module
        The network. Every ``torch.nn.modules.batchnorm._BatchNorm`` in it
        (``BatchNorm1d/2d/3d``, ``SyncBatchNorm`` and their subclasses) with
        running statistics is updated.
    batches : iterable
        Tensors, or tuples/lists whose first element is the input (as
        ``torch.optim.swa_utils.update_bn`` accepts), e.g. a DataLoader.
        Inputs are moved to the device of the first batch norm's buffers.
    num_batches : int or None
        Read at most this many batches per pass (None: all).
    process_group : torch.distributed.ProcessGroup or None
        Merge across the ranks of this group. With None, the default group
        is used when ``torch.distributed`` is initialized.
    progress : bool, default True
        A text progress bar on stderr once the run lasts more than a second.
    mode : {"train", "eval-consistent"}
        ``"train"``: one pass with the model in training mode (as
        ``update_bn``), every batch norm normalizing with its batch
        statistics. ``"eval-consistent"``: the statistics each batch norm
        sees at inference, the model in inference mode and the upstream
        batch norms already using their new statistics; one pass per batch
        norm (see Notes).

    Returns
    -------
    PreciseBNResult
        The merged moments per updated module, the skipped modules with the
        reason, the depth order and the number of passes.

    Raises
    ------
    TypeError, ValueError
        Bad arguments (before any batch is read), a batch that is not a
        tensor, a model without batch norms with running statistics, or no
        data for any of them. The model is then left exactly as it was.

    Notes
    -----
    Each batch norm's input moments ``(count, mean, M2)`` are computed in
    float64 per batch (:func:`bnproof.kernels.batch_norm_moments`) and merged
    with Chan, Golub & LeVeque's rule (:func:`bnproof.kernels.merge_moments`),
    which weights every batch by its number of values and keeps the spread
    between batch means: the result is the mean and the unbiased variance
    ``M2 / (count - 1)`` of all the inputs concatenated (PyTorch's
    convention for ``running_var``), to float64 rounding. This is PreciseBN
    (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", arXiv:2105.07576,
    section 3) computed exactly; Ioffe & Szegedy (2015), section 3.1, asks
    for population statistics.

    ``update_bn`` instead averages per-batch means and unbiased per-batch
    variances with equal weights (``momentum=None``): it misses the spread
    between batch means and weights a short last batch like a full one.

    Across ranks, every rank's records are all-gathered and merged in rank
    order, so every rank writes the same buffers and the result does not
    depend on the sharding beyond float64 rounding. If any rank fails, no
    rank writes anything.

    The model's buffers are saved first and restored after the passes
    (which run with the model in training or inference mode, as the mode
    says); only when every pass succeeded are ``running_mean`` and
    ``running_var`` written. ``num_batches_tracked``, the ``training`` flags
    and the momenta are left as they were. Batch norms without running
    statistics (``track_running_stats=False``) and batch norms that are never
    called are skipped and listed in the result.

    ``mode="eval-consistent"`` defines depth by the order in which the batch
    norms are first called in a forward pass, and assumes that a batch
    norm's input depends only on batch norms called before it (true for
    feed-forward networks whose ``forward`` follows the graph). Pass ``k``
    records the input of the ``k``-th batch norm with the ``k - 1`` before
    it already holding their new statistics, so ``L`` batch norms cost ``L``
    passes over the data. When no batch norm is called twice in a forward,
    pass ``k`` stops the forward at the ``(k + 1)``-th batch norm, so the
    passes together cost about ``(L + 1) / 2`` full forward passes.
    """
    _check_args(model, batches, num_batches, process_group, progress, mode)
    distributed = _distributed(process_group)

    all_bn = {name: m for name, m in model.named_modules() if isinstance(m, _BatchNorm)}
    skipped: dict[str, str] = {}
    modules: dict[str, _BatchNorm] = {}
    for name, m in all_bn.items():
        if not m.track_running_stats or m.running_mean is None or m.running_var is None:
            skipped[name] = "no running statistics (track_running_stats=False)"
        elif is_lazy(m.running_mean):
            skipped[name] = "not initialized yet (a lazy module: run one forward pass first)"
        else:
            modules[name] = m
    if not modules:
        raise ValueError(
            f"model ({type(model).__name__}) has no batch norm with running statistics "
            "(nothing to update; batch norms with track_running_stats=False are skipped)"
        )
    first = next(iter(modules.values()))
    device = first.running_mean.device

    total = None
    if hasattr(batches, "__len__"):
        total = len(batches) if num_batches is None else min(len(batches), num_batches)
    elif num_batches is not None:
        total = num_batches

    # Everything the passes may change, restored whatever happens.
    saved_training = {m: m.training for m in model.modules()}
    saved_momentum = {m: m.momentum for m in modules.values()}
    saved_buffers = {
        m: (m.running_mean.clone(), m.running_var.clone(),
            None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
        for m in modules.values()
    }

    def restore():
        for m, flag in saved_training.items():
            m.training = flag
        for m, momentum in saved_momentum.items():
            m.momentum = momentum
        with torch.no_grad():
            for m, (mean, var, tracked) in saved_buffers.items():
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                if tracked is not None:
                    m.num_batches_tracked.copy_(tracked)

    collector = _Collector(modules)
    bar = _Progress(progress, total, None if mode == "train" else len(modules))
    state = {"passes": 0, "read": 0}

    def one_pass():
        state["read"] = _run_pass(model, batches, num_batches, device, collector, bar,
                                  state["passes"])
        state["passes"] += 1

    records = collector.records
    failure = None
    numba_threads = numba.get_num_threads()
    try:
        # One thread for the moments: PyTorch's forward already uses the cores, the
        # moments of one batch are a single read of it, and a parallel region per
        # call costs more than it saves (a ninth of the time on small batches).
        numba.set_num_threads(1)
        with collector, torch.no_grad():
            if mode == "train":
                model.train()
                try:
                    one_pass()
                except Exception as error:  # every rank must still take part in the merge
                    if not distributed:
                        raise
                    failure = error
                if distributed:
                    records = _merge_ranks(records, failure, process_group)
            else:
                model.eval()
                records = _eval_consistent(modules, collector, one_pass, distributed,
                                           process_group)
    finally:
        numba.set_num_threads(numba_threads)
        if torch.get_num_threads() != collector.torch_threads:
            torch.set_num_threads(collector.torch_threads)
        bar.close()
        restore()

    order = [name for name in collector.order if name in modules]
    order += [name for name in modules if name not in order]
    used = {name: records[name] for name in order if records[name].count > 0}
    for name in modules:
        if name not in used:
            skipped[name] = "never called during the pass (or only with empty inputs)"
    if not used:
        raise ValueError(
            "batches yielded no data for any batch norm "
            "(pass a non-empty iterable; nothing was written)"
        )
    for name, record in used.items():
        if record.count < 2:
            raise ValueError(
                f"batch norm {name!r} saw {record.count} value per channel; the unbiased "
                "variance needs at least 2 (pass more data; nothing was written)"
            )
    for name, record in used.items():
        _write(modules[name], record)
    return PreciseBNResult(moments=used, skipped=skipped, order=tuple(used),
                           passes=state["passes"], batches=state["read"])


def _merge_ranks(records, failure, process_group):
    """Merge the records of every rank; raise on every rank if any rank failed."""
    try:
        _check_layout_agrees(records, process_group)
    except ValueError:
        if failure is None:
            raise
    merged, failed = _all_merge(records, failure is not None, process_group)
    if failure is not None:
        raise failure
    if failed:
        raise RuntimeError(
            "precise_bn failed on another rank; no running statistics were written"
        )
    return merged


def _agree_order(names, local_order, process_group):
    """Return the call order of the first rank that saw data; the others must agree."""
    dist = torch.distributed
    index = {name: i for i, name in enumerate(names)}
    local = torch.full((len(names),), -1, dtype=torch.int64)
    for i, name in enumerate(local_order):
        local[i] = index[name]
    world = dist.get_world_size(process_group)
    gathered = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(gathered, local, group=process_group)
    orders = [[names[i] for i in g.tolist() if i >= 0] for g in gathered]
    seen = [o for o in orders if o]
    if any(o != seen[0] for o in seen):
        raise ValueError(
            "the ranks call the batch norms in different orders; mode='eval-consistent' "
            "needs one depth order (pass the same model to every rank)"
        )
    return seen[0] if seen else []


def _eval_consistent(modules, collector, one_pass, distributed, process_group):
    """Pass ``k`` records the ``k``-th batch norm with the ones before it already updated.

    The new statistics of each level are written at once (the caller
    restores every buffer afterwards and writes the final ones only when all
    passes succeeded).
    """
    collector.active = set(modules)
    failure = None
    try:
        one_pass()  # finds the order; the first batch norm's record is final
    except Exception as error:
        if not distributed:
            raise
        failure = error
    levels = list(collector.order)
    if distributed:
        _merge_ranks({}, failure, process_group)  # every rank raises if one failed
        levels = _agree_order(list(modules), levels, process_group)
    records = collector.records
    for k, name in enumerate(levels):
        if k > 0:
            collector.records[name] = _empty_record(modules[name].num_features)
            collector.active = {name}
            single = collector.max_calls <= 1 and k + 1 < len(levels)
            collector.stop_at = {levels[k + 1]} if single else set()
            try:
                one_pass()
            except Exception as error:
                if not distributed:
                    raise
                failure = error
        record = {name: collector.records[name]}
        if distributed:
            record = _merge_ranks(record, failure, process_group)
        records[name] = record[name]
        if records[name].count > 1:
            _write(modules[name], records[name])
    for name in modules:
        if name not in levels:
            records[name] = _empty_record(modules[name].num_features)
    return records


def _write(module: _BatchNorm, record: Moments) -> None:
    """Write the mean and the unbiased variance of ``record`` into ``module``'s buffers."""
    mean = torch.from_numpy(np.asarray(record.mean, dtype=np.float64))
    var = torch.from_numpy(np.asarray(record.m2, dtype=np.float64) / (record.count - 1))
    with torch.no_grad():
        module.running_mean.copy_(mean)
        module.running_var.copy_(var)
