"""Find the parameters whose effect provably cancels, and confirm each numerically."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from ._capture import capture, check_model
from ._confirm import confirm
from ._propagate import (
    _BATCH,
    _CONV,
    _INSTANCE,
    Carried,
    _label,
    channel_axis_is_1,
    has_hooks,
    norm_kind,
    propagate,
)
from ._records import AuditReport, Finding
from ._rules import SCALE_INVARIANT

__all__ = ["audit"]

#: Normalizations whose own bias (beta) is a candidate.
_NORMS = (*_BATCH, *_INSTANCE, nn.GroupNorm, nn.LayerNorm)


def _bias_axis(module, rank: int) -> int | None:
    """Return the output axis a module's bias lies along, or None."""
    if type(module) in (*_CONV, *_BATCH, *_INSTANCE, nn.GroupNorm):
        # channels on axis 1 only with a batch axis (not on an unbatched input)
        return 1 if channel_axis_is_1(module, rank) else None
    if type(module) is nn.Linear:
        return rank - 1
    if type(module) is nn.LayerNorm and len(module.normalized_shape) == 1:
        return rank - 1
    return None


def _shape(node):
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(shape) if shape is not None else None


class _Partition:
    """Union-find over bias entries plus one node meaning "must be 0"."""

    def __init__(self, size: int):
        self.parent = list(range(size + 1))
        self.zero = size

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)

    def labels(self) -> tuple[int, ...]:
        """Return a label per entry (``-1``: forced to 0), numbered in order of first use."""
        zero, names, out = self.find(self.zero), {}, []
        for e in range(self.zero):
            root = self.find(e)
            out.append(-1 if root == zero else names.setdefault(root, len(names)))
        return tuple(out)


def _graph_uses(gm):
    """Attributes the graph reads directly, and each module's call nodes."""
    used_directly = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    calls = defaultdict(list)
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target].append(node)
    return used_directly, calls


def _candidates(gm, model_params):
    """(name, parameter, module name, call nodes) for every bias the rules know."""
    used_directly, calls = _graph_uses(gm)
    owners = defaultdict(list)
    for mname, module in gm.named_modules(remove_duplicate=False):
        for pname, p in module.named_parameters(recurse=False):
            owners[id(p)].append(f"{mname}.{pname}" if mname else pname)
    out = []
    for mname, module in gm.named_modules():
        if mname not in calls or has_hooks(module):
            continue
        bias = getattr(module, "bias", None)
        if not isinstance(bias, nn.Parameter) or not bias.requires_grad or bias.ndim != 1:
            continue
        if not (type(module) in _CONV or type(module) is nn.Linear or type(module) in _NORMS):
            continue
        name = f"{mname}.bias"
        if len(owners[id(bias)]) > 1 or name in used_directly or name not in model_params:
            continue  # shared or read elsewhere: its other uses have no rule
        out.append((name, bias, mname, module, calls[mname]))
    return out


def _dead_finding(gm, modules, name, bias, mname, module, nodes) -> Finding | None:
    sources = {}
    for node in nodes:
        shape = _shape(node)
        if shape is None:
            return None
        axis = _bias_axis(module, len(shape))
        if axis is None or shape[axis] != bias.numel():
            return None
        sources[node] = Carried(frozenset({axis}), (axis, 0))
    outcome = propagate(gm.graph, modules, sources, bias.numel())
    if outcome.reaches_output or outcome.stopped_at or not outcome.norms:
        return None
    part = _Partition(bias.numel())
    for group in outcome.groups:
        members = [part.zero if e < 0 else e for e in group]
        for e in members[1:]:
            part.union(members[0], e)
    labels = part.labels()
    redundant = len({lab for lab in labels if lab >= 0})
    if redundant == 0:
        return None
    norms = ", ".join(dict.fromkeys(outcome.norms))
    order = {n.name: k for k, n in enumerate(gm.graph.nodes)}
    labels_of = {n.name: _label(n, modules) for n in gm.graph.nodes}
    through = tuple(labels_of[name] for name in sorted(outcome.through,
                                                       key=lambda s: order.get(s, 0)))
    claims = tuple(sorted(outcome.claims))
    dims = bias.numel()
    if redundant == dims:
        why = (f"In training mode every path from {name} ends in {norms}, which subtracts "
               "the constant it contributes; the operations on the way carry it as a constant.")
    else:
        why = (f"Only the part of {name} that is constant over each normalized group "
               f"({redundant} of {dims} dimensions) cancels in {norms}; the rest is live.")
    return Finding(
        parameter=name, kind="dead", shape=tuple(bias.shape), redundant_dims=redundant,
        dims=dims, normalization=norms, through=through, claims=claims, why=why,
        blocks=labels,
    )


def _scale_findings(gm, modules, model_params) -> list[Finding]:
    """Weights whose output feeds only a normalization that removes their scale."""
    used_directly, calls = _graph_uses(gm)
    owners = defaultdict(int)
    for _, module in gm.named_modules(remove_duplicate=False):
        for _, p in module.named_parameters(recurse=False):
            owners[id(p)] += 1
    out = []
    for mname, module in gm.named_modules():
        if not (type(module) in _CONV or type(module) is nn.Linear) or len(calls[mname]) != 1:
            continue
        if has_hooks(module):
            continue
        weight = module.weight
        name = f"{mname}.weight"
        if (not weight.requires_grad or owners[id(weight)] > 1 or name in used_directly
                or name not in model_params):
            continue
        (node,) = calls[mname]
        users = list(node.users)
        if len(users) != 1 or users[0].op != "call_module":
            continue
        norm_module = modules[users[0].target]
        kind = norm_kind(norm_module)
        if has_hooks(norm_module):
            continue
        shape = _shape(node)
        if kind is None or shape is None:
            continue
        rows = weight.shape[0]
        if type(module) in _CONV and not channel_axis_is_1(module, len(shape)):
            continue  # an unbatched input: its output channels are on axis 0
        if kind != "layer" and not channel_axis_is_1(norm_module, len(shape)):
            continue  # the normalization does not take axis 1 as its channels
        if kind in ("batch", "instance"):
            if not (norm_module.training or not norm_module.track_running_stats):
                continue  # running statistics: no scale invariance
            if type(module) is nn.Linear and len(shape) != 2:
                continue  # BatchNorm1d on (N, C, L) after a Linear on the last axis
            blocks = tuple(range(rows))
        elif kind == "layer":
            if type(module) is not nn.Linear or len(norm_module.normalized_shape) != 1:
                continue
            if module.bias is not None:
                continue  # a per-feature bias does not scale with W and does not cancel
            blocks = (0,) * rows
        else:
            if type(module) not in _CONV or module.bias is not None:
                continue
            blocks = (0,) * rows
        label = f"{users[0].target} ({type(norm_module).__name__})"
        verb = "each row" if kind in ("batch", "instance") else "the whole weight"
        out.append(
            Finding(
                parameter=name, kind="scale-invariant", shape=tuple(weight.shape),
                redundant_dims=len(set(blocks)), dims=weight.numel(), normalization=label,
                through=(), claims=SCALE_INVARIANT[kind],
                why=(f"Rescaling {verb} of {name} by a positive factor changes no output at "
                     "eps = 0: plain gradient descent then grows its norm, "
                     "||w_{t+1}||^2 = ||w_t||^2 + eta^2 ||grad||^2, so the effective "
                     "learning rate is eta / ||w||^2 and weight decay acts on that rate, not "
                     "on the function (van Laarhoven 2017; Arora, Li & Lyu 2019)."),
                blocks=blocks,
            )
        )
    return out


def audit(model: nn.Module, *example_inputs: torch.Tensor) -> AuditReport:
    """Find the parameters of ``model`` whose effect provably cancels in training mode.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it is never modified (the audit works on copies).
    *example_inputs : torch.Tensor
        One example per input of ``forward`` (batch first, at least 2 samples
        when the model has batch normalization).

    Returns
    -------
    AuditReport
        Confirmed findings: ``dead`` biases (or the part of them that
        cancels) and ``scale-invariant`` weights.

    Raises
    ------
    TypeError
        For a model that is not a module or inputs that are not float tensors.
    CaptureError
        When torch.fx cannot trace the model; the message says why.

    Notes
    -----
    A bias is dead when every path from it ends in a normalization that
    cancels what it contributes, through operations with a proved
    pass-through rule (:mod:`bnproof.symbolic._passthrough`); an operation
    without a rule stops the propagation, so the audit can miss dead
    parameters but does not report live ones. Every finding is then
    confirmed in float64 training mode: moving the parameter along its dead
    subspace must leave every output unchanged (and, for a partial finding,
    moving it along a live direction must not). A finding that fails is
    dropped and listed in ``inconsistencies``.
    """
    check_model(model, example_inputs)
    gm, how = capture(model, example_inputs)
    modules = dict(gm.named_modules())
    model_params = dict(model.named_parameters())
    seen, total = set(), 0
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    found = []
    for name, bias, mname, module, nodes in _candidates(gm, model_params):
        finding = _dead_finding(gm, modules, name, bias, mname, module, nodes)
        if finding is not None:
            found.append(finding)
    found += _scale_findings(gm, modules, model_params)
    confirmed, problems = confirm(model, example_inputs, found)
    order = {name: k for k, name in enumerate(model_params)}
    confirmed.sort(key=lambda f: (order.get(f.parameter, 0), f.kind))
    return AuditReport(tuple(confirmed), total, how, tuple(problems))
