"""Remove what an audit found dead, from a copy of the model, keeping its outputs.

What is preserved: training-mode outputs and the gradients of every remaining
parameter, and inference-mode outputs (the running means of the batch and
instance normalizations that cancelled a removed bias are shifted by the
constant that bias carried to them, so ``x - running_mean`` is unchanged;
running variances do not depend on a constant shift).

What is not preserved: weight decay (or any regularizer) acting on a dead
bias in the original, which shrank a parameter that had no effect; optimizer
state (momentum buffers) for the removed entries; state-dict compatibility
(a removed bias disappears from ``state_dict()``, so loading the fixed state
into the original architecture needs ``strict=False`` or ``bias=False`` in
the constructor). Scale-invariant weights are reported, not changed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ._propagate import _BATCH, _CONV, _INSTANCE
from ._records import AuditReport, Finding

__all__ = ["FixNote", "fix", "fix_notes"]

#: Modules whose forward passes ``self.bias`` to a function that accepts None.
_REMOVABLE = (*_CONV, nn.Linear, *_BATCH, *_INSTANCE, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class FixNote:
    """What :func:`fix` does to one parameter: ``removed``, ``zeroed`` or ``projected``."""

    parameter: str
    action: str
    detail: str


def _module_of(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def fix_notes(model: nn.Module, report: AuditReport) -> list[FixNote]:
    """Say what :func:`fix` will do for each dead finding of ``report``."""
    notes = []
    for f in report.findings:
        if f.kind != "dead":
            continue
        module = model.get_submodule(_module_of(f.parameter))
        if f.partial:
            notes.append(FixNote(f.parameter, "projected",
                                 f"{f.redundant_dims} of {f.dims} dimensions removed: the "
                                 "mean over each cancelling group is subtracted"))
        elif type(module) in _REMOVABLE and f.parameter.endswith(".bias"):
            notes.append(FixNote(f.parameter, "removed", "bias=None"))
        else:
            notes.append(FixNote(f.parameter, "zeroed",
                                 f"{type(module).__name__} cannot run without it"))
    return notes


def _check(model: nn.Module, report: AuditReport) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(report, AuditReport):
        raise TypeError(f"report must be an AuditReport from audit(), got {type(report).__name__}")
    params = dict(model.named_parameters())
    for f in report.findings:
        if f.parameter not in params or tuple(params[f.parameter].shape) != f.shape:
            raise ValueError(
                f"the report does not match the model: {f.parameter} with shape {f.shape} is not "
                "a parameter of it; audit this model and pass that report"
            )


def _project(p: torch.Tensor, finding: Finding) -> None:
    flat = p.detach().reshape(-1)
    for lab in set(finding.blocks) - {-1}:
        members = [k for k, v in enumerate(finding.blocks) if v == lab]
        flat[members] -= flat[members].mean()


def _norm_inputs(model, inputs, names) -> dict[str, torch.Tensor]:
    seen, hooks = {}, []
    for name in names:
        def hook(module, args, name=name):
            seen[name] = args[0].detach().clone()
        hooks.append(model.get_submodule(name).register_forward_pre_hook(hook))
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return seen


def fix(model: nn.Module, report: AuditReport, *example_inputs: torch.Tensor) -> nn.Module:
    """Return a copy of ``model`` without the dead parameters ``report`` found.

    Parameters
    ----------
    model : torch.nn.Module
        The audited model; never modified.
    report : AuditReport
        The result of ``audit(model, *example_inputs)``.
    *example_inputs : torch.Tensor
        The inputs the audit used; needed to measure the constant each
        removed bias carried to a normalization with running statistics
        (it does not depend on the data, so any inputs do).

    Returns
    -------
    torch.nn.Module
        Fully dead biases removed (``bias=None``; zeroed where the module
        needs it, see :func:`fix_notes`), partly dead ones projected onto
        their live subspace, running means adjusted.

    Raises
    ------
    TypeError, ValueError
        For a report of another model, or missing inputs when a running
        mean must be adjusted; nothing is changed then.
    """
    _check(model, report)
    dead = [f for f in report.findings if f.kind == "dead"]
    fixed = copy.deepcopy(model)
    if not dead:
        return fixed
    norms = {}
    for f in dead:
        for label in f.normalization.split(", "):
            name = label.split(" (")[0]
            module = model.get_submodule(name)
            if getattr(module, "running_mean", None) is not None:
                norms[name] = module
    if norms and not example_inputs:
        raise ValueError(
            "fix needs the example inputs the audit used, to shift the running means of "
            f"{', '.join(norms)}: call fix(model, report, *example_inputs)"
        )
    notes = {n.parameter: n for n in fix_notes(model, report)}
    for f in dead:
        p = fixed.get_parameter(f.parameter)
        action = notes[f.parameter].action
        with torch.no_grad():
            if action == "projected":
                _project(p, f)
            else:
                p.zero_()
    if norms:
        inputs = [x.detach().to(torch.float64) for x in example_inputs]
        before = _norm_inputs(copy.deepcopy(model).double().train(), inputs, norms)
        after = _norm_inputs(copy.deepcopy(fixed).double().train(), inputs, norms)
        for name in norms:
            shift = before[name] - after[name]
            dims = [d for d in range(shift.ndim) if d != 1]
            delta = shift.mean(dim=dims)
            target = fixed.get_submodule(name)
            with torch.no_grad():
                target.running_mean.sub_(delta.to(target.running_mean.dtype))
    for f in dead:
        if notes[f.parameter].action == "removed":
            fixed.get_submodule(_module_of(f.parameter)).bias = None
    return fixed
