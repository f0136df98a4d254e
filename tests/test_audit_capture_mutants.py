"""Literal unit tests of the audit's graph capture (bnproof/audit/_capture.py).

The mapping of an exported ATen graph back to module calls is checked on
graphs written by hand (no torch.export run, so each test takes
milliseconds): an ATen call becomes a module call only when its weight and
bias are exactly that module's parameters and its settings are the
module's own. Each expected value is stated in the test, with where it
comes from (the ATen schema or the module's constructor).
"""

from __future__ import annotations

import logging
import operator

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from bnproof.audit import _capture  # noqa: E402
from bnproof.audit._capture import CaptureError, capture, check_model  # noqa: E402

ATEN = torch.ops.aten


# --- check_model ----------------------------------------------------------------------


def test_check_model_names_the_bad_model_and_inputs():
    with pytest.raises(TypeError) as err:
        check_model(lambda x: x, [torch.zeros(2)])
    assert str(err.value) == ("model must be a torch.nn.Module, got function; pass the module "
                              "itself (e.g. the result of a factory function)")
    with pytest.raises(TypeError) as err:
        check_model(nn.Identity(), [])
    assert str(err.value) == ("audit needs at least one example input, e.g. audit(model, "
                              "torch.randn(2, 3, 32, 32))")
    with pytest.raises(TypeError) as err:
        check_model(nn.Identity(), [torch.zeros(2), [1.0]])
    assert str(err.value) == "example input 1 must be a torch.Tensor, got list"
    with pytest.raises(TypeError) as err:
        check_model(nn.Identity(), [torch.zeros(2, dtype=torch.int64)])
    assert str(err.value) == ("example input 0 has dtype torch.int64; the audit perturbs in "
                              "float64, so pass floating-point inputs")
    assert check_model(nn.Identity(), [torch.zeros(2), torch.zeros(1, dtype=torch.float16)]) is None


# --- _quiet and _first_line -----------------------------------------------------------


def test_quiet_silences_and_restores_logging(capsys):
    logging.disable(logging.DEBUG)
    try:
        with _capture._quiet():
            print("out")  # noqa: T201 - what tracing may print
            logging.getLogger("bnproof.test").critical("logged")
            assert logging.root.manager.disable == logging.CRITICAL
        assert logging.root.manager.disable == logging.DEBUG  # the previous level, not 0
    finally:
        logging.disable(logging.NOTSET)
    assert capsys.readouterr() == ("", "")


def test_first_line_is_the_root_cause_and_its_first_line():
    inner = KeyError("never")
    middle = RuntimeError("root cause\nsecond line")
    middle.__cause__ = None
    outer = ValueError("wrapper")
    outer.__cause__ = middle
    assert _capture._first_line(outer) == "RuntimeError: root cause"
    middle.__cause__ = inner
    assert _capture._first_line(outer) == "KeyError: 'never'"
    assert _capture._first_line(ValueError("")) == "ValueError:"  # no text: just the type
    assert _capture._first_line(ValueError("  \n  padded  \nmore")) == "ValueError: padded"


# --- capture --------------------------------------------------------------------------


def _draw_in_forward(x):
    _DRAWN.append(torch.rand(()))
    return x


_DRAWN: list = []
torch.fx.wrap("_draw_in_forward")  # a leaf of the traced graph: it runs during shape propagation


class _Draws(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(_draw_in_forward(x))


def test_capture_traces_a_training_copy_and_records_shapes():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    gm, how = capture(model, [torch.randn(5, 3)])
    assert how == "torch.fx"
    assert [n.meta["tensor_meta"].shape for n in gm.graph.nodes if n.op != "output"] == [
        torch.Size([5, 3]), torch.Size([5, 4]), torch.Size([5, 4])]
    assert gm.training and gm.get_submodule("1").training  # traced in training mode
    assert not any(m.training for m in model.modules())  # the user's model stays in eval
    assert gm.get_submodule("0").weight is not model[0].weight  # a copy, sharing nothing
    assert int(model[1].num_batches_tracked) == 0  # shape propagation ran on the copy


def test_capture_runs_the_model_under_seed_0_and_leaves_the_global_generator_alone():
    model, x = _Draws(), torch.ones(2, 3)
    _DRAWN.clear()
    torch.manual_seed(123)
    capture(model, [x])
    after = torch.rand(())
    # what torch.manual_seed(0) then torch.rand(()) draws
    assert _DRAWN == [torch.rand((), generator=torch.Generator().manual_seed(0))]
    torch.manual_seed(123)
    assert after == torch.rand(())  # the global stream went on as if capture had not run


def test_capture_never_touches_cuda_generators(monkeypatch):
    # the audit runs on CPU: forking every CUDA generator would initialize CUDA
    def touched(*args, **kwargs):
        raise AssertionError("capture read a CUDA generator")

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state", touched)
    _, how = capture(nn.Linear(3, 2), [torch.randn(2, 3)])
    assert how == "torch.fx"


def test_inputs_that_do_not_run_through_raise_capture_error():
    with pytest.raises(CaptureError) as err:
        capture(nn.Linear(3, 4), [torch.randn(2, 5)])
    # the first line of PyTorch's own error for a (2, 5) @ (5 -> 3, 4) product
    assert str(err.value) == (
        "the example inputs do not run through the model (RuntimeError: mat1 and mat2 shapes "
        "cannot be multiplied (2x5 and 3x4)); check --input-shape (one per input of forward, "
        "batch first)")


class _BranchOnValues(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        if x.sum() > 0:  # neither torch.fx nor torch.export can follow this
            return self.lin(x)
        return x


def test_untraceable_model_names_both_failures():
    with pytest.raises(CaptureError) as err:
        capture(_BranchOnValues(), [torch.randn(2, 3)])
    text = str(err.value)
    assert text.startswith("torch.fx cannot trace the model (TraceError: symbolically traced "
                           "variables cannot be used as inputs to control flow); torch.export "
                           "failed too (GuardOnDataDependentSymNode: ")
    assert text.endswith("). Move data-dependent control flow out of forward(), or audit the "
                         "submodules that trace")


class _BranchOnShape(nn.Module):
    """torch.fx cannot trace the shape test; torch.export specializes it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.lin = nn.Linear(4, 5)
        self.ln = nn.LayerNorm(5)

    def forward(self, x):
        if x.shape[0] > 1:
            x = x * 2
        y = self.gn(self.bn(self.conv(x)))
        return self.ln(self.lin(y.mean((2, 3))))


def test_export_fallback_maps_every_module_back_and_keeps_the_model():
    torch.manual_seed(0)
    model = _BranchOnShape().eval()
    x = torch.randn(2, 3, 8, 8)
    gm, how = capture(model, [x])
    assert how == "torch.export"
    calls = [(n.op, n.target) for n in gm.graph.nodes if n.op in ("call_module", "call_function")]
    # the count of batches the export writes out stays ATen (nothing uses its result)
    assert calls == [("call_function", operator.mul), ("call_module", "conv"),
                     ("call_function", ATEN.add_.Tensor), ("call_module", "bn"),
                     ("call_module", "gn"),
                     ("call_function", torch.mean), ("call_module", "lin"),
                     ("call_module", "ln")]
    assert not any(m.training for m in model.modules())  # export ran on a training copy
    assert gm.get_submodule("conv").weight is not model.conv.weight
    assert [n.meta["tensor_meta"].shape for n in gm.graph.nodes if n.op == "call_module"] == [
        torch.Size([2, 4, 4, 4]), torch.Size([2, 4, 4, 4]), torch.Size([2, 4, 4, 4]),
        torch.Size([2, 5]), torch.Size([2, 5])]


# --- _pair, _owner, norm_type ---------------------------------------------------------


def test_pair_spreads_a_value_over_n_axes():
    assert _capture._pair([2, 3], 2) == (2, 3)
    assert _capture._pair((4,), 1) == (4,)
    assert _capture._pair([2], 3) == (2, 2, 2)  # ATen writes one value for all axes
    assert _capture._pair(5, 2) == (5, 5)


class _Root(nn.Module):
    """Modules whose parameters the hand-written ATen graphs below read."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(2, 3, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(2, 4, 3, stride=(2, 1), padding=(1, 0), dilation=(1, 2),
                               groups=2)
        self.conv3 = nn.Conv3d(2, 2, 1, bias=False)
        self.plain = nn.Conv2d(2, 2, 1)
        self.same = nn.Conv2d(2, 2, 3, padding="same")
        self.circ = nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular")
        self.lin = nn.Linear(3, 4)
        self.lin_nb = nn.Linear(3, 4, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.bn_eval = nn.BatchNorm2d(4).eval()
        self.bn_free = nn.BatchNorm2d(4, track_running_stats=False).eval()
        self.inorm = nn.InstanceNorm2d(4, affine=True)
        self.ln = nn.LayerNorm(4)
        self.gn = nn.GroupNorm(2, 4)
        self.block = nn.Sequential(nn.Linear(2, 2))


def test_owner_finds_the_module_of_a_parameter_read():
    root = _Root()
    g = torch.fx.Graph()
    x = g.placeholder("x")
    deep = g.get_attr("block.0.weight")
    assert _capture._owner(deep, root, "weight") == ("block.0", root.block[0])
    assert _capture._owner(deep, root, "bias") == (None, None)  # another parameter
    assert _capture._owner(g.get_attr("lin.bias"), root, "bias") == ("lin", root.lin)
    assert _capture._owner(g.get_attr("missing.weight"), root, "weight") == (None, None)
    assert _capture._owner(x, root, "weight") == (None, None)  # not a get_attr
    assert _capture._owner(None, root, "weight") == (None, None)
    assert _capture._owner([deep], root, "weight") == (None, None)


def test_norm_type_is_batch_for_the_batch_norms_only():
    assert [_capture.norm_type(m) for m in (nn.BatchNorm1d(2), nn.BatchNorm2d(2),
                                            nn.BatchNorm3d(2))] == ["batch"] * 3
    assert _capture.norm_type(nn.InstanceNorm2d(2)) is None
    assert _capture.norm_type(nn.LayerNorm(2)) is None
    assert _capture.norm_type(nn.SyncBatchNorm(2)) is None  # not a type the rules know
    assert _capture.norm_type(None) is None


# --- _module_call on hand-written ATen calls ------------------------------------------


def _call(target, *args, **kwargs):
    """(node, input) of one ATen call; strings name parameters of _Root (get_attr)."""
    g = torch.fx.Graph()
    x = g.placeholder("x")
    args = [g.get_attr(a) if isinstance(a, str) else a for a in args]
    kwargs = {k: g.get_attr(v) if isinstance(v, str) else v for k, v in kwargs.items()}
    return g.call_function(target, (x, *args), kwargs), x


ROOT = _Root()


def _maps(target, *args, **kwargs):
    node, x = _call(target, *args, **kwargs)
    found = _capture._module_call(node, ROOT)
    if found is None:
        return None
    path, source = found
    assert source is x  # the module's input is the ATen call's input
    return path


def test_conv_calls_map_with_exactly_the_module_settings():
    conv2 = ("conv2.weight", "conv2.bias")
    # aten.conv2d(input, weight, bias, stride, padding, dilation, groups)
    assert _maps(ATEN.conv2d.default, *conv2, [2, 1], [1, 0], [1, 2], 2) == "conv2"
    assert _maps(ATEN.conv2d.default, *conv2, [1, 1], [1, 0], [1, 2], 2) is None  # stride
    assert _maps(ATEN.conv2d.default, *conv2, [2, 1], [0, 0], [1, 2], 2) is None  # padding
    assert _maps(ATEN.conv2d.default, *conv2, [2, 1], [1, 0], [1, 1], 2) is None  # dilation
    assert _maps(ATEN.conv2d.default, *conv2, [2, 1], [1, 0], [1, 2], 1) is None  # groups
    assert _maps(ATEN.conv2d.default, *conv2, [2, 1], [1, 0]) is None  # default dilation 1
    # trailing defaults left out: stride 1, padding 0, dilation 1, groups 1
    assert _maps(ATEN.conv3d.default, "conv3.weight", None) == "conv3"
    assert _maps(ATEN.conv3d.default, "conv3.weight", None, [1]) == "conv3"
    assert _maps(ATEN.conv3d.default, "conv3.weight", None, [1], [1]) is None
    assert _maps(ATEN.conv3d.default, "conv3.weight", None, [1], [0], [2]) is None
    assert _maps(ATEN.conv3d.default, "conv3.weight", None, [1], [0], [1], 2) is None
    assert _maps(ATEN.conv3d.default, "conv3.weight", None, [2]) is None
    # one value for every axis; Conv1d's stride (2,) and padding (1,)
    assert _maps(ATEN.conv1d.default, "conv1.weight", "conv1.bias", [2], [1]) == "conv1"
    assert _maps(ATEN.conv1d.default, "conv1.weight", "conv1.bias", 2, 1) == "conv1"
    # the weight of another kind of convolution
    assert _maps(ATEN.conv2d.default, "conv1.weight", "conv1.bias", [2], [1]) is None
    assert _maps(ATEN.conv1d.default, "lin.weight", "lin.bias") is None


def test_conv_calls_map_only_with_the_module_own_bias():
    assert _maps(ATEN.conv2d.default, "plain.weight", "plain.bias") == "plain"
    assert _maps(ATEN.conv2d.default, "plain.weight", bias="plain.bias") == "plain"
    assert _maps(ATEN.conv2d.default, "plain.weight") is None  # the module has a bias
    assert _maps(ATEN.conv2d.default, "plain.weight", None) is None
    assert _maps(ATEN.conv2d.default, "plain.weight", "conv2.bias") is None  # someone else's
    assert _maps(ATEN.conv2d.default, "plain.weight", "plain.weight") is None  # not a bias
    assert _maps(ATEN.conv3d.default, "conv3.weight", "plain.bias") is None  # it has none


def test_conv_with_string_or_non_zero_padding_is_not_mapped():
    # padding="same" is (1, 1) here, but the module pads by rule, not by number
    assert _maps(ATEN.conv2d.default, "same.weight", "same.bias", [1, 1], [1, 1]) is None
    # circular padding: the ATen call pads beforehand, the module would pad again
    assert _maps(ATEN.conv2d.default, "circ.weight", "circ.bias", [1, 1], [1, 1]) is None


def test_linear_calls_map_with_the_module_own_bias():
    assert _maps(ATEN.linear.default, "lin.weight", "lin.bias") == "lin"
    assert _maps(ATEN.linear.default, "lin_nb.weight") == "lin_nb"
    assert _maps(ATEN.linear.default, "lin_nb.weight", None) == "lin_nb"
    assert _maps(ATEN.linear.default, "lin.weight") is None  # the module has a bias
    assert _maps(ATEN.linear.default, "lin.weight", None) is None
    assert _maps(ATEN.linear.default, "lin_nb.weight", "lin.bias") is None
    assert _maps(ATEN.linear.default, "lin.weight", "plain.bias") is None
    assert _maps(ATEN.linear.default, "block.0.weight", "lin.bias") is None
    assert _maps(ATEN.linear.default, "plain.weight", "plain.bias") is None  # a conv


def _bn(name, training, weight=None, bias=None):
    # aten.batch_norm(input, weight, bias, running_mean, running_var, training, momentum,
    #                 eps, cudnn_enabled)
    return _maps(ATEN.batch_norm.default, weight or f"{name}.weight", bias or f"{name}.bias",
                 f"{name}.running_mean", f"{name}.running_var", training, 0.1, 1e-5, False)


def test_batch_norm_calls_map_when_the_statistics_agree():
    assert _bn("bn", True) == "bn"
    assert _bn("bn", False) is None  # the module (training) normalizes by the batch
    assert _bn("bn_eval", False) == "bn_eval"  # eval: the running statistics
    assert _bn("bn_eval", True) is None
    assert _bn("bn_free", True) == "bn_free"  # eval without running statistics: the batch
    assert _bn("bn_free", False) is None
    assert _bn("bn", True, bias="bn_eval.bias") is None
    assert _bn("bn", True, bias="bn.running_mean") is None
    assert _bn("inorm", True) is None  # an instance norm's parameters
    assert _maps(ATEN.batch_norm.default, None, None, None, None, True, 0.1, 1e-5,
                 False) is None  # affine=False: no weight to find the module by


def test_layer_norm_calls_map_with_the_module_shape_and_parameters():
    # aten.layer_norm(input, normalized_shape, weight, bias, eps, cudnn_enable)
    assert _maps(ATEN.layer_norm.default, [4], "ln.weight", "ln.bias", 1e-5, True) == "ln"
    assert _maps(ATEN.layer_norm.default, [4], "ln.weight", "ln.bias") == "ln"
    assert _maps(ATEN.layer_norm.default, [3], "ln.weight", "ln.bias") is None
    assert _maps(ATEN.layer_norm.default, [4], "ln.weight") is None  # no bias given
    assert _maps(ATEN.layer_norm.default, [4]) is None
    assert _maps(ATEN.layer_norm.default, [4], "ln.weight", "gn.bias") is None
    assert _maps(ATEN.layer_norm.default, [4], "ln.weight", None) is None
    assert _maps(ATEN.layer_norm.default, [4], "gn.weight", "gn.bias") is None


def test_group_norm_calls_map_with_the_module_groups_and_parameters():
    # aten.group_norm(input, num_groups, weight, bias, eps, cudnn_enabled)
    assert _maps(ATEN.group_norm.default, 2, "gn.weight", "gn.bias", 1e-5, True) == "gn"
    assert _maps(ATEN.group_norm.default, 2, "gn.weight", "gn.bias") == "gn"
    assert _maps(ATEN.group_norm.default, 1, "gn.weight", "gn.bias") is None
    assert _maps(ATEN.group_norm.default, 2, "gn.weight") is None
    assert _maps(ATEN.group_norm.default, 2) is None
    assert _maps(ATEN.group_norm.default, 2, "gn.weight", "ln.bias") is None
    assert _maps(ATEN.group_norm.default, 2, "gn.weight", None) is None
    assert _maps(ATEN.group_norm.default, 2, "ln.weight", "ln.bias") is None


def test_other_aten_calls_are_not_module_calls():
    assert _maps(ATEN.relu.default) is None
    assert _maps(ATEN.add.Tensor, "lin.bias") is None


# --- _modules_from_export -------------------------------------------------------------


class _Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.lin = nn.Linear(4, 3)
        self.guard = nn.Identity()


def _exported_graph(root):
    """The ATen graph torch.export writes for ``_Small``, plus an unused input."""
    g = torch.fx.Graph()
    x = g.placeholder("x")
    g.placeholder("unused")
    g.call_module("guard", (x,))  # the export's shape guards: no users
    y = g.call_function(ATEN.conv2d.default, (x, g.get_attr("conv.weight"),
                                              g.get_attr("conv.bias"), [1, 1], [1, 1]))
    y = g.call_function(ATEN.relu.default, (y,))  # no rule: stays ATen
    y = g.call_function(ATEN.batch_norm.default, (
        y, g.get_attr("bn.weight"), g.get_attr("bn.bias"), g.get_attr("bn.running_mean"),
        g.get_attr("bn.running_var"), True, 0.1, 1e-5, False))
    y = g.call_function(ATEN.mean.dim, (y, [2, 3]))
    y = g.call_function(ATEN.linear.default, (y, g.get_attr("lin.weight"),
                                              g.get_attr("lin.bias")))
    z = g.call_function(ATEN.add.Tensor, (y, y))
    z = g.call_function(ATEN.sub.Tensor, (z, y), {"alpha": 3})  # a keyword: kept as ATen
    g.output(z)
    return torch.fx.GraphModule(root, g)


def test_modules_from_export_rewrites_module_calls_in_place():
    torch.manual_seed(0)
    root = _Small()
    gm = _capture._modules_from_export(_exported_graph(root), root)
    assert [(n.op, n.target) for n in gm.graph.nodes] == [
        ("placeholder", "x"), ("placeholder", "unused"),
        ("call_module", "conv"), ("call_function", ATEN.relu.default),
        ("call_module", "bn"), ("call_function", torch.mean), ("call_module", "lin"),
        ("call_function", operator.add), ("call_function", ATEN.sub.Tensor),
        ("output", "output")]
    nodes = list(gm.graph.nodes)
    assert nodes[5].args == (nodes[4], [2, 3])  # torch.mean(x, [2, 3]): the same arguments
    assert nodes[7].args == (nodes[6], nodes[6])
    assert nodes[8].kwargs == {"alpha": 3}
    x = torch.randn(2, 2, 5, 5)
    lin = root.lin(root.bn(torch.relu(root.conv(x))).mean((2, 3)))
    torch.testing.assert_close(gm(x, None), lin + lin - 3 * lin)  # (y + y) - 3 y
