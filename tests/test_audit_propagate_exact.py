"""Exact outcomes of the audit's propagation rules (bnproof/audit/_propagate.py).

Where tests/test_audit_propagate_mutants.py mostly asks whether a bias is
dead, these state the whole outcome: every stop in order, the claims, the
groups of a partial cancellation. Some graphs are built by hand, for forms
that torch.fx's tracer never writes (``y.__add__(1)`` as a method call) but
a graph may hold, and for nodes whose recorded shapes are missing.
"""

from __future__ import annotations

import functools
import operator
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from torch.fx.passes.shape_prop import ShapeProp, _extract_tensor_metadata  # noqa: E402

from bnproof.audit._propagate import (  # noqa: E402
    UNKNOWN,
    Carried,
    _floating,
    _functional_pool,
    _mutated_in_place,
    _shape,
    _with,
    has_hooks,
    propagate,
)

BN_CLAIMS = {"batch-bias-per-feature", "bias-cancels-train", "shift-invariance"}
SCALAR = "passthrough-scalar-multiple"


class Net(nn.Module):
    """A module whose forward is ``body(self, x)``, with the given submodules."""

    def __init__(self, body, **modules):
        super().__init__()
        self.body = body
        for name, module in modules.items():
            self.add_module(name, module)

    def forward(self, x):
        return self.body(self, x)


def run(net, shape, source, axis=1, drop=()):
    """Trace ``net``, record shapes, forget those of the nodes in ``drop``, carry ``source``."""
    gm = torch.fx.symbolic_trace(net)
    torch.manual_seed(0)
    ShapeProp(gm).propagate(torch.randn(*shape))
    for node in gm.graph.nodes:
        if node.name in drop:
            del node.meta["tensor_meta"]
    nodes = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == source]
    size = nodes[0].meta["tensor_meta"].shape[axis] if nodes[0].meta else 3
    sources = {n: Carried(frozenset({axis}), (axis, 0)) for n in nodes}
    return propagate(gm.graph, dict(gm.named_modules()), sources, size)


def dead(out) -> bool:
    """What the audit requires of an outcome before it calls a bias dead."""
    return not out.reaches_output and not out.stopped_at and bool(out.norms)


def conv_bn(body, shape=(2, 2, 4, 4), channels=3, bn=None, drop=()):
    return run(Net(body, conv=nn.Conv2d(2, channels, 1), bn=bn or nn.BatchNorm2d(channels),
                   p=nn.Conv2d(2, channels, 1)), shape, "conv", drop=drop)


def by_hand(build, channels=3):
    """x -> conv -> build(graph, conv_node) -> bn -> output, a graph written by hand."""
    root = nn.Module()
    root.conv, root.bn = nn.Conv2d(2, channels, 1), nn.BatchNorm2d(channels)
    g = torch.fx.Graph()
    x = g.placeholder("x")
    c = g.call_module("conv", (x,))
    g.output(g.call_module("bn", (build(g, c),)))
    gm = torch.fx.GraphModule(root, g)
    ShapeProp(gm).propagate(torch.randn(2, 2, 4, 4))
    return propagate(gm.graph, dict(gm.named_modules()), {c: Carried(frozenset({1}), (1, 0))},
                     channels)


# --- a term passed by keyword (regression) ---------------------------------------------


def test_a_bias_added_by_keyword_still_reaches_the_output():
    # regression: torch.add(a, other=y) read only the positional terms, so
    # lin.bias vanished on this path and the rules called it dead (only the
    # numeric confirmation dropped the finding)
    def body(m, x):
        y = m.lin(x)
        return m.bn(y * 1.0) + torch.add(x.new_zeros(5, 4), other=y)

    out = run(Net(body, lin=nn.Linear(3, 4), bn=nn.BatchNorm1d(4)), (5, 3), "lin")
    assert out.reaches_output and not dead(out)


def test_keyword_terms_of_an_addition_are_carried():
    out = conv_bn(lambda m, x: m.bn(torch.add(m.p(x), other=m.conv(x))))
    assert dead(out) and out.claims == BN_CLAIMS | {"passthrough-residual-add"}
    out = conv_bn(lambda m, x: m.bn(torch.add(input=m.conv(x), other=1.0)))
    assert dead(out) and out.claims == BN_CLAIMS


def test_cat_of_keyword_tensors_is_read():
    # regression: torch.cat(tensors=[...]) raised IndexError in the audit
    out = run(Net(lambda m, x: m.bn(torch.cat(tensors=[m.conv(x), x], dim=1)),
                  conv=nn.Conv2d(2, 3, 1), bn=nn.BatchNorm2d(5)), (2, 2, 4, 4), "conv")
    assert dead(out) and out.through == {"cat"}


# --- every stop, in order ---------------------------------------------------------------


def test_every_operation_after_a_stop_stops_too():
    out = conv_bn(lambda m, x: m.bn(torch.relu(m.conv(x)) * 2.0))
    assert out.stopped_at == ["relu (relu)", "mul (mul)", "bn (BatchNorm2d)"]


def test_a_value_modified_in_place_stays_unknown_downstream():
    def body(m, x):
        y = m.lin(x)
        v = y[:1]
        v.add_(v)
        return m.bn(y)

    out = run(Net(body, lin=nn.Linear(3, 4), bn=nn.BatchNorm1d(4)), (5, 3), "lin")
    # lin is read by the slice and by bn, and changed through the slice
    assert out.stopped_at == ["lin (modified in place while also read elsewhere)",
                              "getitem (getitem)", "add_ (add_)", "bn (BatchNorm1d)"]
    assert out.reaches_output


def test_a_method_stop_is_labelled_with_its_name():
    assert conv_bn(lambda m, x: m.bn(m.conv(x).to("cpu"))).stopped_at[0] == "to (to)"


# --- methods and operators ----------------------------------------------------------------


@pytest.mark.parametrize(("body", "claims"), [
    (lambda m, x: m.bn(m.conv(x).add(1.0)), BN_CLAIMS),
    (lambda m, x: m.bn((m.conv(x) * 1.0).sub_(1.0)), BN_CLAIMS | {SCALAR}),
    (lambda m, x: m.bn(m.conv(x).clone(memory_format=torch.contiguous_format)), BN_CLAIMS),
])
def test_methods_that_shift_or_copy_pass(body, claims):
    out = conv_bn(body)
    assert dead(out), out.stopped_at
    assert out.claims == claims


def test_reshape_method_keeping_the_channels_passes():
    out = run(Net(lambda m, x: m.bn(m.conv(x).reshape(2, 3, 16)), conv=nn.Conv2d(2, 3, 1),
                  bn=nn.BatchNorm1d(3)), (2, 2, 4, 4), "conv")
    assert dead(out)


@pytest.mark.parametrize(("method", "arg", "claims"), [
    ("__add__", 1.0, BN_CLAIMS),
    ("__sub__", 1.0, BN_CLAIMS),
    ("__mul__", 2.0, BN_CLAIMS | {SCALAR}),
    ("__truediv__", 2.0, BN_CLAIMS | {SCALAR}),
    ("__neg__", None, BN_CLAIMS | {SCALAR}),
])
def test_dunder_method_calls_pass(method, arg, claims):
    args = () if arg is None else (arg,)
    out = by_hand(lambda g, c: g.call_method(method, (c, *args)))
    assert dead(out), out.stopped_at
    assert out.claims == claims


@pytest.mark.parametrize(("method", "label"), [("div", "div (div)"),
                                               ("__truediv__", "truediv (__truediv__)")])
def test_division_by_zero_as_a_method_stops(method, label):
    assert by_hand(lambda g, c: g.call_method(method, (c, 0.0))).stopped_at[0] == label


def test_transpose_with_one_keyword_dimension_stops():
    out = conv_bn(lambda m, x: m.bn(m.conv(x).transpose(1, dim1=3).transpose(1, 3)))
    assert out.stopped_at[0] == "transpose (transpose)"


def test_permute_of_one_axis_and_with_numpy_dimensions():
    out = run(Net(lambda m, x: m.lin(x).mean(0).permute(0), lin=nn.Linear(3, 4)), (5, 3), "lin")
    assert out.reaches_output and out.stopped_at == []
    # NumPy integers as dimensions (the tracer refuses them; a graph may hold them)
    root = nn.Module()
    root.lin = nn.Linear(3, 4)
    g = torch.fx.Graph()
    lin = g.call_module("lin", (g.placeholder("x"),))
    g.output(g.call_method("permute", (lin, np.int64(1), np.int64(0))))
    gm = torch.fx.GraphModule(root, g)
    ShapeProp(gm).propagate(torch.randn(5, 3))
    out = propagate(g, dict(gm.named_modules()), {lin: Carried(frozenset({1}), (1, 0))}, 4)
    assert out.reaches_output and out.stopped_at == []


# --- means: the axes that remain decide what layer norm cancels -----------------------------


@pytest.mark.parametrize("body", [
    lambda m, x: m.ln(m.lin(x).mean(1)),
    lambda m, x: m.ln(m.lin(x).mean(dim=1)),
    lambda m, x: m.ln(torch.mean(m.lin(x), 1, True)),
    lambda m, x: m.ln(m.lin(x).mean(1, keepdim=True)),
])
def test_a_mean_over_other_axes_keeps_the_bias_per_feature(body):
    # lin's bias lies along the last axis of (2, 3, 4); averaging over axis 1
    # keeps it the vector b on the features, so layer norm over the 4
    # features cancels only b's shared part: one group of all 4 entries
    out = run(Net(body, lin=nn.Linear(4, 4), ln=nn.LayerNorm(4)), (2, 3, 4), "lin", axis=2)
    assert out.norms == ["ln (LayerNorm)"] and out.stopped_at == []
    assert out.groups == [(0, 1, 2, 3)]


def test_a_mean_over_everything_is_one_constant():
    out = run(Net(lambda m, x: m.lin(x).mean(), lin=nn.Linear(3, 4)), (5, 3), "lin")
    assert out.reaches_output and out.stopped_at == []


# --- functional poolings ------------------------------------------------------------------


@pytest.mark.parametrize(("body", "claim"), [
    (lambda m, x: m.bn(F.max_pool2d(m.conv(x), 2)), "passthrough-maxpool"),
    (lambda m, x: m.bn(F.avg_pool2d(m.conv(x), 2)), "passthrough-avgpool"),
    (lambda m, x: m.bn(F.interpolate(m.conv(x), scale_factor=2)),
     "passthrough-upsample-nearest"),
])
def test_functional_poolings_cite_their_claims(body, claim):
    out = conv_bn(body)
    assert dead(out) and out.claims == BN_CLAIMS | {claim}


def test_a_2d_pooling_of_a_rank_3_value_pools_the_channels():
    # (N, C, L) read as an unbatched (C', H, W): max_pool2d pools along the
    # conv's channel axis, mixing different entries of the bias
    out = run(Net(lambda m, x: F.max_pool2d(m.conv(x), 2), conv=nn.Conv1d(2, 4, 1)),
              (2, 2, 4), "conv")
    assert out.stopped_at == ["max_pool2d (max_pool2d)"]


def test_functional_avg_pool_with_a_zero_padding_tuple():
    assert _functional_pool(F.avg_pool2d, ("x", 3, 1, (0, 0)), {}) == "passthrough-avgpool"


# --- concatenation --------------------------------------------------------------------------


def test_cat_collects_the_claims_and_nodes_of_every_part():
    out = conv_bn(lambda m, x: m.bn(torch.cat([m.conv(x) * 2.0, m.conv(x)], 1)),
                  bn=nn.BatchNorm2d(6))
    assert dead(out)
    assert out.claims == BN_CLAIMS | {SCALAR} and out.through == {"mul", "cat"}


def test_cat_offsets_add_up_over_the_parts_before():
    out = run(Net(lambda m, x: m.gn(torch.cat([x, x, m.conv(x)], 1)), conv=nn.Conv2d(2, 2, 1),
                  gn=nn.GroupNorm(3, 6)), (2, 2, 3, 3), "conv")
    assert out.groups == [(-1, -1), (-1, -1), (0, 1)]


def test_cat_without_dim_joins_along_the_batch():
    # half the samples carry the bias: batch norm does not remove it
    out = run(Net(lambda m, x: m.bn(torch.cat([m.conv(x), x])), conv=nn.Conv2d(2, 2, 1),
                  bn=nn.BatchNorm2d(2)), (2, 2, 3, 3), "conv")
    assert out.stopped_at == ["bn (BatchNorm2d)"] and out.norms == []


# --- missing shapes stop ----------------------------------------------------------------------


@pytest.mark.parametrize(("body", "drop", "stop"), [
    (lambda m, x: m.bn(m.conv(x) + 1.0), ("add",), "add (add)"),
    (lambda m, x: m.bn(m.conv(x) + m.p(x)), ("p",), "add (add)"),
    (lambda m, x: m.bn(m.conv(x).view(2, 3, 4, 4)), ("view",), "view (view)"),
    (lambda m, x: m.bn(m.conv(x)), ("bn",), "bn (BatchNorm2d)"),
    (lambda m, x: m.bn(torch.cat([m.conv(x), m.p(x)], 1)), ("cat",), "cat (cat)"),
    (lambda m, x: m.bn(torch.cat([m.conv(x), m.p(x)], 1)), ("p",), "cat (cat)"),
])
def test_an_operation_without_recorded_shapes_stops(body, drop, stop):
    out = conv_bn(body, drop=drop, bn=nn.BatchNorm2d(6) if "cat" in stop else None)
    assert out.stopped_at[0] == stop and out.norms == []


def test_shape_and_floating_read_only_recorded_tensors():
    node = SimpleNamespace(meta={})
    assert _shape(node) is None
    assert _floating(3.0) is False
    g = torch.fx.Graph()
    assert _floating(g.placeholder("x")) is False  # no recorded value


def test_a_module_called_with_two_values_stops():
    # same(x, conv(x)): the rules read a module's single input; here the
    # first input does not carry the bias, the second does
    root = nn.Module()
    root.conv, root.same = nn.Conv2d(2, 3, 1), nn.Identity()
    g = torch.fx.Graph()
    x = g.placeholder("x")
    c = g.call_module("conv", (x,))
    s = g.call_module("same", (x, c))
    g.output(s)
    # Identity takes one input, so the shapes are recorded by hand
    x.meta["tensor_meta"] = _extract_tensor_metadata(torch.zeros(2, 2, 4, 4))
    c.meta["tensor_meta"] = s.meta["tensor_meta"] = _extract_tensor_metadata(
        torch.zeros(2, 3, 4, 4))
    modules = {"": root, "conv": root.conv, "same": root.same}
    out = propagate(g, modules, {c: Carried(frozenset({1}), (1, 0))}, 3)
    assert out.stopped_at == ["same (Identity)"] and out.reaches_output


def test_two_normalizations_add_up_their_claims_and_paths():
    out = run(Net(lambda m, x: m.bn(m.c2(m.conv(x))) + m.inorm(m.conv(x)),
                  conv=nn.Conv2d(2, 3, 1), c2=nn.Conv2d(3, 3, 1), bn=nn.BatchNorm2d(3),
                  inorm=nn.InstanceNorm2d(3)), (2, 2, 4, 4), "conv")
    assert dead(out)
    assert out.through == {"c2"}
    assert out.claims == BN_CLAIMS | {"passthrough-conv-no-padding", "instance-bias-per-feature"}


# --- helpers ----------------------------------------------------------------------------------


def test_with_keeps_no_bias_and_an_unknown_one_as_they_are():
    node = SimpleNamespace(name="n")
    assert _with(None, node, {}) is None
    assert _with(UNKNOWN, node, {}) is UNKNOWN


def _graph(build):
    root = nn.Module()
    root.conv, root.act_ = nn.Conv2d(2, 3, 1), nn.ReLU()
    g = torch.fx.Graph()
    x = g.placeholder("x")
    c = g.call_module("conv", (x,))
    g.output(build(g, c))
    return g, {"": root, "conv": root.conv, "act_": root.act_}


@pytest.mark.parametrize(("build", "found"), [
    # y += 1 as the in-place operator, while y is also read
    (lambda g, c: g.call_function(operator.add, (g.call_function(operator.iadd, (c, 1.0)), c)),
     {"conv"}),
    (lambda g, c: g.call_function(operator.add, (g.call_method("__add__", (c, 1.0)), c)), set()),
    (lambda g, c: g.call_function(operator.add, (g.call_function(F.interpolate, (c,),
                                                                 {"scale_factor": 1.0}), c)),
     set()),
    (lambda g, c: g.call_function(operator.add, (g.call_module("act_", (c,)), c)), set()),
    (lambda g, c: g.call_function(operator.add, (
        g.create_node("call_function", functools.partial(torch.mul, other=2.0), (c,),
                      name="scaled"), c)), set()),
    # the output reads y, and so does bn: nothing changes y
    (lambda g, c: (g.call_function(torch.relu, (c,)), c)[1], set()),
])
def test_mutated_in_place_reads_operators_methods_and_modules(build, found):
    g, modules = _graph(build)
    assert {n.name for n in _mutated_in_place(g, modules)} == found


def test_has_hooks_reads_every_hook_table():
    # a stand-in module as older PyTorch versions made them: no tables of
    # hooks taking keyword arguments
    plain = SimpleNamespace(_forward_hooks={}, _forward_pre_hooks={})
    assert not has_hooks(plain)
    for table in ("_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs"):
        assert has_hooks(SimpleNamespace(_forward_hooks={}, _forward_pre_hooks={},
                                         **{table: {0: True}}))
        assert not has_hooks(SimpleNamespace(_forward_hooks={}, _forward_pre_hooks={},
                                             **{table: {}}))


def test_has_hooks_sees_a_forward_set_on_the_instance():
    bn = nn.BatchNorm2d(3)
    assert not has_hooks(bn)
    bn.forward = lambda x: x  # the class still says BatchNorm2d
    assert has_hooks(bn)
    del bn.forward
    assert not has_hooks(bn)
    conv = nn.Conv2d(2, 3, 1)
    assert not has_hooks(conv)  # its own attributes (padding_mode, ...) are not calls
    for name in ("_call_impl", "_compiled_call_impl", "_conv_forward"):
        setattr(conv, name, lambda *a: None)
        assert has_hooks(conv), name
        delattr(conv, name)
    conv.helper = lambda x: x  # a callable under a name the class does not have
    assert not has_hooks(conv)
    conv.__dict__["_bnproof_compiled_in_place"] = True  # what the audit's copy carries
    assert has_hooks(conv)


def _recorded(node, *shape):
    node.meta["tensor_meta"] = _extract_tensor_metadata(torch.zeros(*shape))
    return node


def test_a_bias_reaching_only_a_later_argument_stops():
    # view(x, y): the rules follow the first argument, which carries nothing
    # here; the bias comes in through the second, so no rule applies
    root = nn.Module()
    root.conv = nn.Conv2d(2, 3, 1)
    g = torch.fx.Graph()
    x = _recorded(g.placeholder("x"), 2, 3, 4, 4)
    c = _recorded(g.call_module("conv", (x,)), 2, 3, 4, 4)
    g.output(_recorded(g.call_method("view", (x, c)), 2, 3, 4, 4))
    out = propagate(g, {"": root, "conv": root.conv}, {c: Carried(frozenset({1}), (1, 0))}, 3)
    assert out.stopped_at == ["view (view)"] and out.reaches_output


def test_a_node_of_no_known_kind_that_reads_the_bias_makes_it_unknown():
    # a placeholder whose default value is the carried value: no rule reads
    # a placeholder, so what it holds is unknown and reaches the output
    root = nn.Module()
    root.conv = nn.Conv2d(2, 3, 1)
    g = torch.fx.Graph()
    x = _recorded(g.placeholder("x"), 2, 2, 4, 4)
    c = _recorded(g.call_module("conv", (x,)), 2, 3, 4, 4)
    g.output(_recorded(g.placeholder("y", default_value=c), 2, 3, 4, 4))
    out = propagate(g, {"": root, "conv": root.conv}, {c: Carried(frozenset({1}), (1, 0))}, 3)
    assert out.reaches_output
