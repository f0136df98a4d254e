"""Carry each bias through the graph as a constant pattern and see where it ends.

A bias ``b`` of a convolution, a linear layer or a normalization adds a
tensor ``D`` to its module's output that does not depend on the data and is
the same for every sample: it varies only along the channel axis. Walking
the graph in order, the audit keeps, for every value, what is known about
the part ``D`` that the bias contributes to it (:class:`Carried`): the axes
``D`` may vary along, and, while ``D`` is still the bias itself laid along
an axis (``direct``), where it sits. Each operation either has a rule that
keeps ``D`` a constant of a known pattern (a proved pass-through claim, or a
structural rule), a normalization's rule that cancels it (a proved
cancellation claim), or no rule: then ``D`` is *unknown* (:data:`UNKNOWN`)
from there on. A bias is dead when nothing it contributes reaches an output.

Partial cancellation: layer and group normalization cancel only the part of a
direct bias that is constant over each normalized group. The audit records
the groups; the dead subspace is the set of bias vectors constant on each
group of every such normalization (groups sharing an entry merge; a group
that also holds channels the bias does not reach forces those entries to 0).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ._rules import CANCELLATION, NEGATIVE, PASSTHROUGH

__all__ = ["Carried", "Outcome", "UNKNOWN", "propagate"]


@dataclass(frozen=True)
class Carried:
    """What is known about the part ``D`` of a value that one bias contributes.

    ``D`` does not depend on the data, is the same for every sample, and
    varies at most along ``vary`` (axis numbers of this value). ``direct``
    is ``(axis, offset)`` while ``D`` is the bias vector itself (times a
    number) laid along ``axis`` starting at ``offset``, and 0 elsewhere on
    that axis.
    """

    vary: frozenset
    direct: tuple[int, int] | None
    through: frozenset = field(default_factory=frozenset)
    claims: frozenset = field(default_factory=frozenset)


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


#: The bias reaches this value in a way no rule describes.
UNKNOWN = _Unknown()


@dataclass
class Outcome:
    """Where one bias ends: cancelled, partially cancelled, or reaching an output."""

    reaches_output: bool = False
    stopped_at: list = field(default_factory=list)
    norms: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    through: set = field(default_factory=set)
    claims: set = field(default_factory=set)


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCH = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_INSTANCE = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
            nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE_AVG = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_F = torch.nn.functional


def norm_kind(module: nn.Module) -> str | None:
    """Return ``batch``, ``layer``, ``group``, ``instance`` or None."""
    kind = type(module)
    if kind in _BATCH:
        return "batch"
    if kind in _INSTANCE:
        return "instance"
    if kind is nn.GroupNorm:
        return "group"
    if kind is nn.LayerNorm:
        return "layer"
    return None


def _shape(node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(shape) if shape is not None else None


def _label(node, modules: Mapping) -> str:
    if node.op == "call_module":
        return f"{node.target} ({type(modules[node.target]).__name__})"
    name = getattr(node.target, "__name__", str(node.target))
    return f"{node.name} ({name})"


def _with(state: Carried, node, modules, claim: str | None = None, **changes) -> Carried:
    if state is None or state is UNKNOWN:
        return state
    claims = state.claims | ({claim} if claim else set())
    through = state.through | {node.name}
    values = {"vary": state.vary, "direct": state.direct, **changes}
    return Carried(values["vary"], values["direct"], through, claims)


def _merge(states: list, out_rank: int, in_ranks: list[int], node, modules,
           claim: str | None) -> Carried | _Unknown | None:
    """Sum of contributions after broadcasting (an addition or subtraction)."""
    carried = [(s, r) for s, r in zip(states, in_ranks, strict=True) if s is not None]
    if not carried:
        return None
    if any(s is UNKNOWN for s, _ in carried):
        return UNKNOWN
    vary, through, claims = set(), set(), set()
    for s, rank in carried:
        shift = out_rank - rank
        vary |= {a + shift for a in s.vary}
        through |= s.through
        claims |= s.claims
    direct = None
    if len(carried) == 1:
        s, rank = carried[0]
        if s.direct is not None:
            direct = (s.direct[0] + out_rank - rank, s.direct[1])
    claims |= {claim} if claim else set()
    return Carried(frozenset(vary), direct, frozenset(through | {node.name}), frozenset(claims))


def _axis(dim, rank: int) -> int:
    return dim + rank if dim < 0 else dim


def _reshape(state: Carried, shape_in, shape_out, node, modules) -> Carried | _Unknown:
    """Map varying axes through a reshape when their prefix size and length survive."""
    mapping = {}
    for a in state.vary:
        prefix = _prod(shape_in[:a])
        found = None
        for b in range(len(shape_out)):
            if _prod(shape_out[:b]) == prefix and shape_out[b] == shape_in[a]:
                found = b
                break
        if found is None:
            return UNKNOWN
        mapping[a] = found
    direct = None
    if state.direct is not None and state.direct[0] in mapping:
        direct = (mapping[state.direct[0]], state.direct[1])
    return _with(state, node, modules, vary=frozenset(mapping.values()), direct=direct)


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def _permute(state: Carried, order: list[int], node, modules) -> Carried:
    inverse = {old: new for new, old in enumerate(order)}
    direct = None if state.direct is None else (inverse[state.direct[0]], state.direct[1])
    return _with(state, node, modules, vary=frozenset(inverse[a] for a in state.vary),
                 direct=direct)


def _reduce(state: Carried, dims, rank: int, keepdim: bool, node, modules, claim) -> Carried:
    """Carry through a mean (or pooling to one value) over ``dims``: averages a constant."""
    dims = {_axis(d, rank) for d in dims}
    vary = set(state.vary) - dims
    direct = state.direct if state.direct is not None and state.direct[0] not in dims else None
    if not keepdim:
        renumber = {a: a - sum(1 for d in dims if d < a) for a in range(rank)}
        vary = {renumber[a] for a in vary}
        if direct is not None:
            direct = (renumber[direct[0]], direct[1])
    return _with(state, node, modules, claim, vary=frozenset(vary), direct=direct)


def _getitem(state: Carried, index, shape_in, node, modules) -> Carried | _Unknown:
    items = index if isinstance(index, tuple) else (index,)

    def plain(i) -> bool:
        if i is None:
            return True
        if isinstance(i, slice):
            return all(v is None or (isinstance(v, int) and not isinstance(v, bool))
                       for v in (i.start, i.stop, i.step))
        return isinstance(i, int) and not isinstance(i, bool)

    if not all(plain(i) for i in items):
        return UNKNOWN
    vary, direct, out_axis = set(), None, 0
    items = list(items)
    axis = 0
    while axis < len(shape_in) or items:
        item = items.pop(0) if items else slice(None)
        if item is None:
            out_axis += 1  # a new axis of length 1: nothing varies along it
            continue
        if axis >= len(shape_in):
            return UNKNOWN
        if isinstance(item, int):
            # One position of an axis: what varied along it is now one value.
            axis += 1
            continue
        full = item == slice(None) or item.indices(shape_in[axis]) == (0, shape_in[axis], 1)
        if axis in state.vary:
            vary.add(out_axis)
        if state.direct is not None and state.direct[0] == axis and full:
            direct = (out_axis, state.direct[1])
        out_axis += 1
        axis += 1
    return _with(state, node, modules, vary=frozenset(vary), direct=direct)


def _pool_claim(module) -> str | None:
    """Return the pass-through claim of a pooling/upsampling module, None if it has none."""
    kind = type(module)
    if kind in _MAXPOOL:
        return None if getattr(module, "return_indices", False) else PASSTHROUGH["maxpool"]
    if kind in _ADAPTIVE_AVG:
        return PASSTHROUGH["avgpool"]
    if kind in _AVGPOOL:
        padding = module.padding if isinstance(module.padding, tuple) else (module.padding,)
        counts_pad = module.count_include_pad and any(p != 0 for p in padding)
        if counts_pad or module.divisor_override is not None:
            return None
        return PASSTHROUGH["avgpool"]
    if kind is nn.Upsample and module.mode == "nearest":
        return PASSTHROUGH["upsample"]
    return None


#: Rank of a batched input (N, C, *spatial) for the modules that also accept
#: an unbatched one (C, *spatial); their channel axis is 1 only at this rank.
_BATCHED_RANK = {
    **{k: n + 2 for n, group in enumerate(
        zip(_CONV, _INSTANCE, _MAXPOOL[:3], _MAXPOOL[3:], _AVGPOOL, _ADAPTIVE_AVG,
            strict=True), start=1) for k in group},
}


def channel_axis_is_1(module, rank: int) -> bool:
    """Whether the module's input/output of this rank has its channels on axis 1.

    Convolutions, instance norms and poolings also take unbatched inputs
    (channels on axis 0); at any other rank than the batched one the rules
    do not apply. Batch and group norms always take a batch axis.
    """
    expected = _BATCHED_RANK.get(type(module))
    if expected is not None:
        return rank == expected
    if type(module) in _BATCH:
        return rank in ((2, 3) if type(module) is nn.BatchNorm1d
                        else (_BATCH.index(type(module)) + 3,))
    if type(module) is nn.GroupNorm:
        return rank >= 2
    if type(module) is nn.Upsample:
        return rank >= 3
    return False


def _conv_without_padding(module) -> bool:
    padding = module.padding
    if isinstance(padding, str):
        return padding == "valid"
    return all(p == 0 for p in padding)


@dataclass
class _Step:
    """The rule applied at one node (for the partial-cancellation bookkeeping)."""

    state: object
    norm: str | None = None
    groups: list | None = None


def has_hooks(module) -> bool:
    """Whether the module may compute something else than its class says.

    Hooks, or a method of its class replaced on the instance (``forward``,
    ``_call_impl``, ``_conv_forward``, ..., or ``_compiled_call_impl``, which
    ``Module.compile`` sets and a copy of the module drops): the graph shows
    a call of the module either way, and the rules read its class.
    """
    from torch.nn.modules import module as _module

    return bool(has_own_hooks(module)
                or _module._global_forward_hooks or _module._global_forward_pre_hooks
                or _replaced_methods(module)
                or getattr(module, "__dict__", {}).get(COMPILED_MARK, False))


def has_own_hooks(module) -> bool:
    """Whether forward or pre-forward hooks are registered on the module itself."""
    return bool(module._forward_hooks or module._forward_pre_hooks
                or getattr(module, "_forward_hooks_with_kwargs", None)
                or getattr(module, "_forward_pre_hooks_with_kwargs", None))


#: Set on a module of the audit's copy of a model whose original was compiled
#: in place (``Module.compile``): ``copy.deepcopy`` drops the compiled call.
COMPILED_MARK = "_bnproof_compiled_in_place"


def _replaced_methods(module) -> bool:
    """Whether the instance holds a callable under a name its class defines."""
    cls = type(module)
    return any(callable(value) and hasattr(cls, name)
               for name, value in getattr(module, "__dict__", {}).items())


def _module_rule(node, module, state: Carried, shape_in, shape_out, modules,
                 param_size: int) -> _Step:
    kind = type(module)
    if has_hooks(module):
        return _Step(UNKNOWN)
    rank = len(shape_in)
    if kind in _CONV:
        if (state.vary <= {1} and _conv_without_padding(module)
                and channel_axis_is_1(module, rank)):
            return _Step(_with(state, node, modules, PASSTHROUGH["conv"],
                               vary=frozenset({1}), direct=None))
        return _Step(UNKNOWN)
    if kind is nn.Linear:
        if state.vary <= {rank - 1}:
            return _Step(_with(state, node, modules, PASSTHROUGH["linear"],
                               vary=frozenset({rank - 1}), direct=None))
        return _Step(UNKNOWN)
    if kind in (nn.Identity, nn.Flatten) or (kind in _DROPOUT and module.p == 0):
        if kind is nn.Flatten:
            return _Step(_reshape(state, shape_in, shape_out, node, modules))
        return _Step(_with(state, node, modules))
    claim = _pool_claim(module)
    if claim is not None:
        if state.vary <= {1} and channel_axis_is_1(module, rank):
            return _Step(_with(state, node, modules, claim))
        return _Step(UNKNOWN)
    norm = norm_kind(module)
    if norm in ("batch", "instance"):
        uses_batch_stats = module.training or not module.track_running_stats
        if uses_batch_stats and state.vary <= {1} and channel_axis_is_1(module, rank):
            return _Step(None, norm=norm)
        return _Step(UNKNOWN)
    if norm == "layer":
        axes = set(range(rank - len(module.normalized_shape), rank))
        if not (state.vary & axes):
            return _Step(None, norm=norm)
        if state.direct is not None and state.vary == {state.direct[0]}:
            axis, offset = state.direct
            channels = list(range(shape_in[axis]))
            return _Step(None, norm=norm, groups=[_entries(channels, offset, param_size)])
        return _Step(UNKNOWN)
    if norm == "group":
        if not state.vary:
            return _Step(None, norm=norm)
        if (state.direct is not None and state.vary == {1} and state.direct[0] == 1
                and channel_axis_is_1(module, rank)):
            per = shape_in[1] // module.num_groups
            groups = [
                _entries(range(g * per, (g + 1) * per), state.direct[1], param_size)
                for g in range(module.num_groups)
            ]
            return _Step(None, norm=norm, groups=groups)
        return _Step(UNKNOWN)
    return _Step(UNKNOWN)


def _entries(channels, offset: int, size: int) -> tuple:
    """Bias entries of a group of channels; ``-1`` marks a channel it does not reach."""
    out = []
    for ch in channels:
        e = ch - offset
        out.append(e if 0 <= e < size else -1)
    return tuple(out)


_ADD = {operator.add, operator.sub, operator.iadd, operator.isub, torch.add, torch.sub}
_MUL = {operator.mul, operator.imul, torch.mul, operator.truediv, operator.itruediv,
        torch.div}
_SAME = {"contiguous", "clone", "float", "double", "to"}
_CAT = {torch.cat, torch.concat}


def _floating(node) -> bool:
    """Whether the node's recorded value is a floating tensor (False when unknown)."""
    meta = node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None
    dtype = getattr(meta, "dtype", None)
    return dtype is not None and dtype.is_floating_point


def _function_rule(node, states, modules) -> _Step:  # noqa: C901
    """Rules for call_function / call_method nodes."""
    target = node.target
    shape_out = _shape(node)
    args = list(node.args)
    tensor_args = [a for a in args if isinstance(a, torch.fx.Node)]
    first = args[0] if args else None
    first_state = states.get(first) if isinstance(first, torch.fx.Node) else None
    if any(states.get(a) is UNKNOWN for a in node.all_input_nodes):
        return _Step(UNKNOWN)

    if target in _ADD or target in ("add", "sub", "__add__", "__sub__", "add_", "sub_"):
        if shape_out is None:
            return _Step(UNKNOWN)
        # a term passed by keyword (torch.add(x, other=y)) is added all the same
        tensor_args += [v for v in node.kwargs.values() if isinstance(v, torch.fx.Node)]
        ranks = [len(_shape(a) or ()) for a in tensor_args]
        if any(_shape(a) is None for a in tensor_args):
            return _Step(UNKNOWN)
        claim = PASSTHROUGH["add"] if len(tensor_args) > 1 else None
        return _Step(_merge([states.get(a) for a in tensor_args], len(shape_out), ranks,
                            node, modules, claim))
    if target in _MUL or target in ("mul", "div", "__mul__", "__truediv__", "neg", "__neg__"):
        others = [a for a in args[1:] if not isinstance(a, torch.fx.Node)]
        if target in ("neg", "__neg__", operator.neg):
            others = [-1]
        divides = target in (operator.truediv, operator.itruediv, torch.div, "div",
                             "__truediv__")
        carrier_first = isinstance(first, torch.fx.Node) and len(tensor_args) == 1
        numbers = all(isinstance(o, int | float) and not isinstance(o, bool) for o in others)
        if node.kwargs or not numbers:
            return _Step(UNKNOWN)
        if carrier_first or (not divides and len(tensor_args) == 1):
            carrier = tensor_args[0]
            if divides and any(o == 0 for o in others):
                return _Step(UNKNOWN)
            state = states.get(carrier)
            return _Step(_with(state, node, modules, PASSTHROUGH["scalar"]))
        return _Step(UNKNOWN)
    if target is operator.neg:
        return _Step(_with(first_state, node, modules, PASSTHROUGH["scalar"]))
    if target in _SAME and node.op == "call_method":
        if target == "to" and (len(args) > 1 or node.kwargs):
            dtype_only = all(isinstance(a, torch.dtype) for a in args[1:]) and not node.kwargs
            if not dtype_only:
                return _Step(UNKNOWN)
        if not (_floating(first) and _floating(node)):
            return _Step(UNKNOWN)  # a cast to integers truncates: not a shift
        return _Step(_with(first_state, node, modules))
    if target in _CAT:
        return _Step(_cat(node, states, modules))
    if not isinstance(first, torch.fx.Node) or first_state is None:
        return _Step(UNKNOWN)
    shape_in = _shape(first)
    if shape_in is None or shape_out is None:
        return _Step(UNKNOWN)
    rank = len(shape_in)
    state = first_state
    if target in ("view", "reshape", "flatten", "unsqueeze", "squeeze") or target in (
        torch.reshape, torch.flatten, torch.unsqueeze, torch.squeeze,
    ):
        return _Step(_reshape(state, shape_in, shape_out, node, modules))
    if target in ("transpose", torch.transpose, "permute", torch.permute):
        if node.kwargs or len(args) < 2:
            return _Step(UNKNOWN)
        if target in ("transpose", torch.transpose):
            d0, d1 = (_axis(d, rank) for d in args[1:3])
            order = list(range(rank))
            order[d0], order[d1] = order[d1], order[d0]
        else:
            dims = args[1:] if len(args) > 2 or isinstance(args[1], int) else args[1]
            order = [_axis(d, rank) for d in dims]
        return _Step(_permute(state, order, node, modules))
    if target is operator.getitem:
        return _Step(_getitem(state, args[1], shape_in, node, modules))
    if target in ("mean", torch.mean):
        dims = args[1] if len(args) > 1 else node.kwargs.get("dim")
        keepdim = node.kwargs.get("keepdim", args[2] if len(args) > 2 else False)
        if dims is None:
            dims = range(rank)
        dims = [dims] if isinstance(dims, int) else list(dims)
        return _Step(_reduce(state, dims, rank, bool(keepdim), node, modules,
                             PASSTHROUGH["avgpool"]))
    pooled = _functional_pool(target, args, node.kwargs)
    if pooled is not None:
        spatial = _FUNC_SPATIAL.get(target)
        batched = rank >= 3 if spatial is None else rank == spatial + 2
        if state.vary <= {1} and batched:
            return _Step(_with(state, node, modules, pooled))
        return _Step(UNKNOWN)
    return _Step(UNKNOWN)


_AVG_FUNCS = {_F.avg_pool1d: 1, _F.avg_pool2d: 2, _F.avg_pool3d: 3}
_MAX_FUNCS = {_F.max_pool1d, _F.max_pool2d, _F.max_pool3d, _F.adaptive_max_pool1d,
              _F.adaptive_max_pool2d, _F.adaptive_max_pool3d}
_ADAPTIVE_AVG_FUNCS = {_F.adaptive_avg_pool1d, _F.adaptive_avg_pool2d, _F.adaptive_avg_pool3d}


#: Spatial axes of each functional pooling (its batched input has 2 more).
_FUNC_SPATIAL = {
    **_AVG_FUNCS,
    **{f: int(f.__name__[-2]) for f in _MAX_FUNCS | _ADAPTIVE_AVG_FUNCS},
}


def _functional_pool(target, args, kwargs) -> str | None:
    if target in _ADAPTIVE_AVG_FUNCS:
        return PASSTHROUGH["avgpool"]
    if target in _MAX_FUNCS:
        return None if kwargs.get("return_indices", False) else PASSTHROUGH["maxpool"]
    if target in _AVG_FUNCS:
        names = ("input", "kernel_size", "stride", "padding", "ceil_mode",
                 "count_include_pad", "divisor_override")
        bound = dict(zip(names, args, strict=False)) | dict(kwargs)
        padding = bound.get("padding", 0)
        padding = padding if isinstance(padding, tuple | list) else (padding,)
        if bound.get("count_include_pad", True) and any(p != 0 for p in padding):
            return None
        if bound.get("divisor_override") is not None:
            return None
        return PASSTHROUGH["avgpool"]
    if target is _F.interpolate:
        names = ("input", "size", "scale_factor", "mode")
        bound = dict(zip(names, args, strict=False)) | dict(kwargs)
        if bound.get("mode", "nearest") == "nearest":
            return PASSTHROUGH["upsample"]
    return None


def _cat(node, states, modules) -> Carried | _Unknown:
    parts = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    shape_out = _shape(node)
    if not isinstance(parts, list | tuple) or shape_out is None:
        return UNKNOWN
    rank = len(shape_out)
    dim = _axis(dim, rank)
    carried = [(p, states.get(p)) for p in parts if isinstance(p, torch.fx.Node)]
    if any(s is UNKNOWN for _, s in carried):
        return UNKNOWN
    vary, through, claims = {dim}, {node.name}, set()
    direct = None
    offset = 0
    holders = [s for _, s in carried if s is not None]
    for part in parts:
        if not isinstance(part, torch.fx.Node) or _shape(part) is None:
            return UNKNOWN
        state = states.get(part)
        if state is not None:
            vary |= set(state.vary)
            through |= state.through
            claims |= state.claims
            if len(holders) == 1 and state.direct is not None:
                axis, start = state.direct
                direct = (axis, start + offset) if axis == dim else (axis, start)
        offset += _shape(part)[dim]
    if direct is not None and direct[0] != dim:
        direct = None  # the zeros of the other parts vary along dim too
    return Carried(frozenset(vary), direct, frozenset(through), frozenset(claims))


def propagate(graph, modules: Mapping, sources: Mapping, param_size: int) -> Outcome:
    """Carry one bias from its sources through ``graph``.

    Parameters
    ----------
    graph : torch.fx.Graph
        With shapes in ``node.meta["tensor_meta"]`` (ShapeProp).
    modules : mapping
        ``dict(gm.named_modules())``.
    sources : mapping
        Node -> :class:`Carried` added to that node's output (the bias).
    param_size : int
        Entries of the bias.

    Returns
    -------
    Outcome
    """
    out = Outcome()
    states: dict = {}
    clobbered = _mutated_in_place(graph, modules)
    for node in graph.nodes:
        ins = [states.get(a) for a in node.all_input_nodes]
        if node.op == "output":
            reached = [s for s in ins if s is not None]
            if reached:
                out.reaches_output = True
            continue
        injected = sources.get(node)
        if all(s is None for s in ins):
            step = _Step(None)
        elif node.op == "call_module":
            module = modules[node.target]
            state = ins[0] if len(node.all_input_nodes) == 1 else UNKNOWN
            shape_in = _shape(node.all_input_nodes[0])
            if state is UNKNOWN or shape_in is None or _shape(node) is None:
                step = _Step(UNKNOWN)
            else:
                step = _module_rule(node, module, state, shape_in, _shape(node), modules,
                                    param_size)
            if step.state is UNKNOWN:
                out.stopped_at.append(_label(node, modules))
            if step.norm is not None:
                out.norms.append(_label(node, modules))
                out.through |= set(state.through)
                out.claims |= set(state.claims) | set(CANCELLATION[step.norm])
                if step.groups is not None:
                    out.groups.extend(step.groups)
                    out.claims |= set(NEGATIVE.get(step.norm, ()))
        elif node.op in ("call_function", "call_method"):
            step = _function_rule(node, states, modules)
            if step.state is UNKNOWN:
                out.stopped_at.append(_label(node, modules))
        else:
            step = _Step(UNKNOWN)
        state = step.state
        if injected is not None:
            if state is None:
                state = injected
            elif state is not UNKNOWN:
                state = _merge([state, injected], 1, [1, 1], node, modules, None)
            else:
                state = UNKNOWN
        if state is not None and node in clobbered:
            out.stopped_at.append(f"{node.name} (modified in place while also read elsewhere)")
            state = UNKNOWN
        if state is not None:
            states[node] = state
    return out


def _mutated_in_place(graph, modules) -> set:
    """Values that an in-place operation modifies while another node also reads them.

    The graph shows such a value as one node, but its readers may see it
    before or after the change; no rule describes that, so it stops the
    propagation. A view shares its base's memory: changing ``y[:1]`` in
    place changes ``y`` too, so the values a modified view was taken from
    (through the operations that may return a view, :func:`_viewed`) count
    as modified as well.
    """
    out = set()
    for node in graph.nodes:
        inplace = False
        if node.op == "call_method" and str(node.target).endswith("_"):
            inplace = not str(node.target).startswith("_")
        elif node.op == "call_function":
            name = getattr(node.target, "__name__", "")
            inplace = name.startswith("i") and node.target in _INPLACE_OPERATORS
            inplace = inplace or bool(node.kwargs.get("inplace", False))
        elif node.op == "call_module":
            inplace = bool(getattr(modules[node.target], "inplace", False))
        if inplace and node.args and isinstance(node.args[0], torch.fx.Node):
            target = node.args[0]
            while target is not None:
                if len(target.users) > 1:
                    out.add(target)
                target = _viewed(target, modules)
    return out


#: Operations whose result may share memory with their first argument (a
#: view of it, or the argument itself when nothing needs to change).
_VIEW_METHODS = {"view", "reshape", "flatten", "unsqueeze", "squeeze", "transpose", "permute",
                 "contiguous", "float", "double", "to"}
_VIEW_FUNCTIONS = {operator.getitem, torch.reshape, torch.flatten, torch.unsqueeze,
                   torch.squeeze, torch.transpose, torch.permute}
_VIEW_MODULES = (nn.Identity, nn.Flatten, *_DROPOUT)


def _viewed(node, modules):
    """Return the node whose memory ``node``'s value may share, or None."""
    if not node.args or not isinstance(node.args[0], torch.fx.Node):
        return None
    if ((node.op == "call_method" and node.target in _VIEW_METHODS)
            or (node.op == "call_function" and node.target in _VIEW_FUNCTIONS)
            or (node.op == "call_module"
                and isinstance(modules.get(node.target), _VIEW_MODULES))):
        return node.args[0]
    return None


_INPLACE_OPERATORS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}
