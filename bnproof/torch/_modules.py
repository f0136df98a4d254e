"""Batch-norm modules that run bnproof's kernels, and ``convert`` for whole models."""

from __future__ import annotations

import torch
from torch import nn

from ._ops import batch_norm

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "convert"]


class _KernelForward:
    """``forward`` of PyTorch's ``_BatchNorm`` with :func:`bnproof.torch.batch_norm`.

    Everything else (parameters, buffers, ``state_dict``, ``momentum=None``,
    ``affine``, ``track_running_stats``, input checks, ``repr``) is PyTorch's
    module, which the concrete classes subclass.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Normalize ``input`` (PyTorch's semantics, bnproof's kernels)."""
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        track = self.training and self.track_running_stats
        count_batch = track and self.num_batches_tracked is not None
        if count_batch and self.momentum is None:  # cumulative average
            factor = 1.0 / float(self.num_batches_tracked + 1)
        # statistics of the batch in training, and in inference without buffers
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        y = batch_norm(
            input,
            self.running_mean if keep else None,
            self.running_var if keep else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )
        if count_batch:  # after the call: a rejected batch leaves the count alone
            self.num_batches_tracked.add_(1)
        return y


class BatchNorm1d(_KernelForward, nn.BatchNorm1d):
    """:class:`torch.nn.BatchNorm1d` computed with bnproof's kernels.

    Same constructor, parameters, buffers and ``state_dict`` keys as
    PyTorch's module (``isinstance(m, nn.BatchNorm1d)`` holds); only the
    arithmetic differs. See :func:`bnproof.torch.batch_norm`.
    """


class BatchNorm2d(_KernelForward, nn.BatchNorm2d):
    """:class:`torch.nn.BatchNorm2d` computed with bnproof's kernels.

    Same constructor, parameters, buffers and ``state_dict`` keys as
    PyTorch's module (``isinstance(m, nn.BatchNorm2d)`` holds); only the
    arithmetic differs. Channels-last inputs run without a copy. See
    :func:`bnproof.torch.batch_norm`.
    """


class BatchNorm3d(_KernelForward, nn.BatchNorm3d):
    """:class:`torch.nn.BatchNorm3d` computed with bnproof's kernels.

    Same constructor, parameters, buffers and ``state_dict`` keys as
    PyTorch's module (``isinstance(m, nn.BatchNorm3d)`` holds); only the
    arithmetic differs. See :func:`bnproof.torch.batch_norm`.
    """


_REPLACEMENTS = {
    nn.BatchNorm1d: BatchNorm1d,
    nn.BatchNorm2d: BatchNorm2d,
    nn.BatchNorm3d: BatchNorm3d,
}


def _swapped(module: nn.Module, cls: type) -> nn.Module:
    """Return a ``cls`` module sharing ``module``'s parameters, buffers, hooks and attributes."""
    new = cls.__new__(cls)
    # the containers are copied (a later change to one module does not reach
    # the other), the tensors in them are shared
    new.__dict__.update(
        {key: value.copy() if isinstance(value, dict) else value
         for key, value in module.__dict__.items()}
    )
    return new


def convert(module: nn.Module) -> nn.Module:
    """Swap every ``nn.BatchNorm1d/2d/3d`` in ``module`` for bnproof's modules.

    Parameters
    ----------
    module : torch.nn.Module
        A model, or a single batch-norm module.

    Returns
    -------
    torch.nn.Module
        ``module`` itself with its batch-norm submodules replaced, or, when
        ``module`` is itself a batch-norm module, the new module.

    Raises
    ------
    TypeError
        If ``module`` is not a :class:`torch.nn.Module`.

    Notes
    -----
    Works in place like :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`:
    the parents are changed and returned, and each new module shares the
    old one's parameter and buffer tensors (and its hooks, ``training``
    flag and other attributes). In place because optimizers, schedulers and
    EMA copies built before the conversion hold those same parameter
    objects and keep working, and because nothing is copied (a model can be
    large). Call it on ``copy.deepcopy(model)`` to keep the original.

    Only modules whose type is exactly ``nn.BatchNorm1d``, ``nn.BatchNorm2d``
    or ``nn.BatchNorm3d`` are swapped: subclasses may override ``forward``
    (their behaviour would be lost), ``nn.SyncBatchNorm`` reduces across
    processes (which the kernels do not), lazy modules have no shape yet,
    and already converted modules are left as they are (so converting twice
    changes nothing).
    """
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"convert expects a torch.nn.Module, got {type(module).__name__}"
        )
    cls = _REPLACEMENTS.get(type(module))
    if cls is not None:
        return _swapped(module, cls)
    for name, child in list(module.named_children()):
        new = convert(child)
        if new is not child:
            setattr(module, name, new)
    return module
