"""Literal tests of the audit's engine (bnproof/audit/_audit.py) on tiny models.

Each expected finding is worked out by hand in the comment next to it: which
normalization a bias or weight meets, which part of it cancels, the text of
the finding. Every model is a few small layers, so a test takes
milliseconds; the models built to make the audit claim a live parameter
check ``inconsistencies == ()`` too (the numeric confirmation drops a wrong
finding into it, so an empty list shows no rule fired where it must not).
"""

from __future__ import annotations

import types

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from bnproof.audit import audit  # noqa: E402
from bnproof.audit._audit import _Partition  # noqa: E402
from bnproof.audit._records import Finding  # noqa: E402

#: the claims of bnproof/audit/_rules.py, written out; a partial finding cites the
#: cancellation claim and the refuted per-feature one (why the rest is live)
BATCH_BIAS = ("batch-bias-per-feature", "bias-cancels-train", "shift-invariance")
GROUP_PARTIAL = ("group-bias-per-feature", "group-bias-per-group")
LAYER_PARTIAL = ("layer-bias-per-feature", "layer-bias-shared")
BATCH_SCALE = ("batch-weight-vector-rescaling", "scale-invariance", "weight-grad-orthogonal")

_SCALE_WHY = ("Rescaling {verb} of {name} by a positive factor changes no output at eps = 0: "
              "plain gradient descent then grows its norm, ||w_{{t+1}}||^2 = ||w_t||^2 + eta^2 "
              "||grad||^2, so the effective learning rate is eta / ||w||^2 and weight decay "
              "acts on that rate, not on the function (van Laarhoven 2017; Arora, Li & Lyu "
              "2019).")


def _audit(model, *shape):
    torch.manual_seed(0)
    model = model.double()
    return audit(model, torch.randn(*shape, dtype=torch.float64))


def _scale(name, shape, blocks, norm, claims, verb):
    rows, cols = shape[0], 1
    for n in shape[1:]:
        cols *= n
    return Finding(parameter=name, kind="scale-invariant", shape=shape,
                   redundant_dims=len(set(blocks)), dims=rows * cols, normalization=norm,
                   through=(), claims=claims, why=_SCALE_WHY.format(verb=verb, name=name),
                   blocks=blocks)


# --- _Partition -----------------------------------------------------------------------


def test_partition_labels_entries_in_order_and_marks_forced_zeros():
    part = _Partition(5)
    assert part.zero == 5 and part.parent == [0, 1, 2, 3, 4, 5]
    part.union(3, 1)
    part.union(4, part.zero)
    # entries 0, 1 (with 3), 2 get labels 0, 1, 2 in order of first use; 4 is forced to 0
    assert part.labels() == (0, 1, 2, 1, -1)


# --- the bias of a normalization, and text of dead findings ---------------------------


def test_layer_norm_bias_into_batch_norm_is_dead():
    # LayerNorm(4) adds its bias along the last axis of (N, 4); BatchNorm1d(4) then
    # subtracts each feature's batch mean: every entry cancels (4 of 4)
    report = _audit(nn.Sequential(nn.LayerNorm(4), nn.BatchNorm1d(4)), 6, 4)
    assert report.findings == (Finding(
        parameter="0.bias", kind="dead", shape=(4,), redundant_dims=4, dims=4,
        normalization="1 (BatchNorm1d)", through=(), claims=tuple(sorted(BATCH_BIAS)),
        why=("In training mode every path from 0.bias ends in 1 (BatchNorm1d), which "
             "subtracts the constant it contributes; the operations on the way carry it as a "
             "constant."),
        blocks=(0, 1, 2, 3)),)
    assert report.inconsistencies == () and report.capture == "torch.fx"


class _TwoNorms(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.bn1 = nn.BatchNorm1d(4)
        self.bn2 = nn.BatchNorm1d(4)

    def forward(self, x):
        y = self.lin(x)
        a = y * 2
        s = a + y
        return self.bn1(s), self.bn2(torch.flatten(s, 1))


def test_dead_finding_lists_its_norms_and_operations_in_graph_order():
    report = _audit(_TwoNorms(), 6, 3)
    (found,) = report.findings  # lin has two users: its weight is not claimed
    assert found.parameter == "lin.bias" and found.blocks == (0, 1, 2, 3)
    assert found.normalization == "bn1 (BatchNorm1d), bn2 (BatchNorm1d)"
    # the graph's order (mul, add, flatten), not the alphabet's
    assert found.through == ("mul (mul)", "add (add)", "flatten (flatten)")
    assert found.claims == tuple(sorted({*BATCH_BIAS, "passthrough-scalar-multiple",
                                         "passthrough-residual-add"}))
    assert found.why.startswith("In training mode every path from lin.bias ends in bn1 "
                                "(BatchNorm1d), bn2 (BatchNorm1d), which subtracts")


class _HalfCovered(nn.Module):
    """GroupNorm(2, 4) over the conv's 3 channels and one channel of the input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)
        self.gn = nn.GroupNorm(2, 4)

    def forward(self, x):
        return self.gn(torch.cat([self.conv(x), x[:, :1]], 1))


def test_a_group_holding_other_channels_forces_its_bias_entries_to_zero():
    # group 0 is channels 0, 1 (bias entries 0, 1): a shared shift cancels; group 1 is
    # channel 2 (entry 2) with an input channel: entry 2 must be 0. Dead: (t, t, 0).
    report = _audit(_HalfCovered(), 3, 2, 4, 4)
    assert report.findings == (Finding(
        parameter="conv.bias", kind="dead", shape=(3,), redundant_dims=1, dims=3,
        normalization="gn (GroupNorm)", through=("cat (cat)",), claims=GROUP_PARTIAL,
        why=("Only the part of conv.bias that is constant over each normalized group (1 of 3 "
             "dimensions) cancels in gn (GroupNorm); the rest is live."),
        blocks=(0, 0, -1)),)
    assert report.findings[0].partial
    assert report.inconsistencies == ()


# --- which biases are candidates ------------------------------------------------------


class _BiasSkips(nn.Module):
    """Biases the audit must leave alone, before one it must find."""

    def __init__(self):
        super().__init__()
        self.bil = nn.Bilinear(4, 4, 4)  # a bias of a module without a rule
        self.frozen = nn.Linear(4, 4)
        self.frozen_bn = nn.BatchNorm1d(4)
        self.read = nn.Linear(4, 4)  # its bias is also read directly
        self.read_bn = nn.BatchNorm1d(4)
        self.tied = nn.Linear(4, 4)
        self.tied_bn = nn.BatchNorm1d(4)
        self.twin = nn.Linear(4, 4)  # shares tied's bias and goes straight to an output
        self.hooked = nn.Linear(4, 4)
        self.hooked_bn = nn.BatchNorm1d(4)
        self.unused = nn.Linear(4, 4)  # its output goes nowhere
        self.last = nn.Linear(4, 4)
        self.last_bn = nn.BatchNorm1d(4)
        self.frozen.bias.requires_grad_(False)
        self.twin.bias = self.tied.bias
        self.hooked.register_forward_hook(_scale_samples)

    def forward(self, x):
        self.unused(x)
        return (self.bil(x, x), self.frozen_bn(self.frozen(x)),
                self.read_bn(self.read(x)) + self.read.bias.sum(), self.tied_bn(self.tied(x)),
                self.twin(x), self.hooked_bn(self.hooked(x)), self.last_bn(self.last(x)))


def _ramp(t):
    """1, 2, 3, ... down the batch axis: differs from sample to sample."""
    return torch.arange(1.0, 1.0 + t.shape[0], dtype=t.dtype)[:, None]


def _scale_samples(module, inputs, output):
    return output * _ramp(output)  # a bias times a different number per sample: live


def _shift_samples(module, inputs):
    return (inputs[0] + _ramp(inputs[0]),)  # a shift per sample: a rescaled W is seen


def _shift_output(module, inputs, output):
    return output + _ramp(output)  # likewise, added after the module


def test_only_trained_unshared_biases_that_reach_a_norm_are_candidates():
    report = _audit(_BiasSkips(), 6, 4)
    # weights into a BatchNorm1d are scale-invariant per row (the hooked one excepted:
    # its hook scales each sample differently); of the biases only last.bias is dead
    each_row = {"blocks": (0, 1, 2, 3), "claims": BATCH_SCALE, "verb": "each row"}
    assert report.findings == (
        _scale("frozen.weight", (4, 4), norm="frozen_bn (BatchNorm1d)", **each_row),
        _scale("read.weight", (4, 4), norm="read_bn (BatchNorm1d)", **each_row),
        _scale("tied.weight", (4, 4), norm="tied_bn (BatchNorm1d)", **each_row),
        _scale("last.weight", (4, 4), norm="last_bn (BatchNorm1d)", **each_row),
        Finding(parameter="last.bias", kind="dead", shape=(4,), redundant_dims=4, dims=4,
                normalization="last_bn (BatchNorm1d)", through=(),
                claims=tuple(sorted(BATCH_BIAS)),
                why=("In training mode every path from last.bias ends in last_bn "
                     "(BatchNorm1d), which subtracts the constant it contributes; the "
                     "operations on the way carry it as a constant."),
                blocks=(0, 1, 2, 3)),
    )
    assert report.inconsistencies == ()


class _AliasInOpaqueLayer(nn.Module):
    """``lin`` is also the first linear layer inside a layer the audit does not open."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.enc = nn.TransformerEncoderLayer(4, 1, 4, dropout=0.0, batch_first=True)
        self.enc.linear1 = self.lin
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.lin(x)), self.enc(x[:, None, :])


def test_a_module_also_used_inside_an_opaque_layer_is_not_claimed():
    # lin.bias and lin.weight end in bn on the path the graph shows, but the encoder
    # layer (a leaf of torch.fx) uses them too: both are live
    report = _audit(_AliasInOpaqueLayer(), 6, 4)
    assert report.findings == ()
    assert report.inconsistencies == ()


# --- which weights are scale-invariant ------------------------------------------------


class _ScaleSkips(nn.Module):
    """Weights the audit does not claim, before one it must."""

    def __init__(self):
        super().__init__()
        self.hooked = nn.Linear(4, 4, bias=False)  # hooked: the graph does not show what it adds
        self.hooked_bn = nn.BatchNorm1d(4)
        self.frozen = nn.Linear(4, 4, bias=False)
        self.frozen_bn = nn.BatchNorm1d(4)
        self.tied = nn.Linear(4, 4, bias=False)
        self.tied_bn = nn.BatchNorm1d(4)
        self.twin = nn.Linear(4, 4, bias=False)  # shares tied's weight, no normalization
        self.read = nn.Linear(4, 4, bias=False)  # its weight is also read directly
        self.read_bn = nn.BatchNorm1d(4)
        self.forked = nn.Linear(4, 4, bias=False)  # its output also goes to an output
        self.forked_bn = nn.BatchNorm1d(4)
        self.pooled = nn.Conv1d(4, 4, 1, bias=False)  # into a pooling, not a norm
        self.pool = nn.MaxPool1d(1)
        self.to_hooked = nn.Linear(4, 4, bias=False)
        self.hooked_norm = nn.BatchNorm1d(4)
        self.unbatched = nn.Conv1d(4, 4, 1, bias=False)  # on one (C, L) sample
        self.unbatched_bn = nn.BatchNorm1d(5)
        self.to_inst = nn.Linear(4, 4, bias=False)
        self.inst = nn.InstanceNorm1d(6)  # on (6, 4): one unbatched (C, L) sample
        self.running = nn.Linear(4, 4, bias=False)
        self.running_bn = nn.BatchNorm1d(4)  # kept in eval mode by train() below
        self.lin3 = nn.Linear(5, 5, bias=False)  # on (N, 4, 5): rows along the last axis
        self.lin3_bn = nn.BatchNorm1d(4)
        self.conv_ln = nn.Conv1d(4, 4, 1, bias=False)
        self.conv_ln_norm = nn.LayerNorm(5)
        self.lin_ln2 = nn.Linear(5, 5, bias=False)
        self.lin_ln2_norm = nn.LayerNorm((4, 5))
        self.lin_gn = nn.Linear(4, 4, bias=False)
        self.lin_gn_norm = nn.GroupNorm(2, 4)
        self.conv_gn = nn.Conv1d(4, 4, 1)  # with a bias: scaling W alone is not a rescaling
        self.conv_gn_norm = nn.GroupNorm(2, 4)
        self.lin_ln = nn.Linear(4, 4)  # with a bias, likewise
        self.lin_ln_norm = nn.LayerNorm(4)
        self.last = nn.Linear(4, 4, bias=False)
        self.last_bn = nn.BatchNorm1d(4)
        self.twin.weight = self.tied.weight
        self.frozen.weight.requires_grad_(False)
        self.hooked.register_forward_hook(_shift_output)
        self.hooked_norm.register_forward_pre_hook(_shift_samples)
        self.running_bn.eval()

    def train(self, mode=True):
        super().train(mode)
        self.running_bn.eval()  # a frozen BatchNorm: its running statistics normalize
        return self

    def forward(self, x):  # x: (6, 4, 5)
        v = x.mean(2)  # (6, 4)
        f = self.forked(v)
        return (self.hooked_bn(self.hooked(v)), self.frozen_bn(self.frozen(v)),
                self.tied_bn(self.tied(v)), self.twin(v),
                self.read_bn(self.read(v)) + self.read.weight.sum(),
                self.forked_bn(f), f, self.pool(self.pooled(x)),
                self.hooked_norm(self.to_hooked(v)),
                self.unbatched_bn(self.unbatched(x[0])), self.inst(self.to_inst(v)),
                self.running_bn(self.running(v)), self.lin3_bn(self.lin3(x)),
                self.conv_ln_norm(self.conv_ln(x)), self.lin_ln2_norm(self.lin_ln2(x)),
                self.lin_gn_norm(self.lin_gn(v)), self.conv_gn_norm(self.conv_gn(x)),
                self.lin_ln_norm(self.lin_ln(v)), self.last_bn(self.last(v)))


def test_only_weights_whose_scale_a_norm_removes_are_scale_invariant():
    report = _audit(_ScaleSkips(), 6, 4, 5)
    assert report.findings == (
        # GroupNorm(2, 4) over conv_gn's channels: a shift shared by channels 0-1 and by
        # 2-3 cancels (2 of 4)
        Finding(parameter="conv_gn.bias", kind="dead", shape=(4,), redundant_dims=2, dims=4,
                normalization="conv_gn_norm (GroupNorm)", through=(), claims=GROUP_PARTIAL,
                why=("Only the part of conv_gn.bias that is constant over each normalized "
                     "group (2 of 4 dimensions) cancels in conv_gn_norm (GroupNorm); the rest "
                     "is live."),
                blocks=(0, 0, 1, 1)),
        # LayerNorm(4): only a shift shared by the 4 features cancels (1 of 4)
        Finding(parameter="lin_ln.bias", kind="dead", shape=(4,), redundant_dims=1, dims=4,
                normalization="lin_ln_norm (LayerNorm)", through=(), claims=LAYER_PARTIAL,
                why=("Only the part of lin_ln.bias that is constant over each normalized "
                     "group (1 of 4 dimensions) cancels in lin_ln_norm (LayerNorm); the rest "
                     "is live."),
                blocks=(0, 0, 0, 0)),
        _scale("last.weight", (4, 4), (0, 1, 2, 3), "last_bn (BatchNorm1d)", BATCH_SCALE,
               "each row"),
    )
    assert report.inconsistencies == ()


class _EachKind(nn.Module):
    def __init__(self):
        super().__init__()
        self.to_ln = nn.Linear(4, 3, bias=False)
        self.ln = nn.LayerNorm(3)
        self.to_gn = nn.Conv1d(4, 4, 1, bias=False)
        self.gn = nn.GroupNorm(2, 4)
        self.to_in = nn.Conv1d(4, 3, 1, bias=False)
        self.inst = nn.InstanceNorm1d(3)

    def forward(self, x):  # x: (6, 4, 5)
        return self.ln(self.to_ln(x.mean(2))), self.gn(self.to_gn(x)), self.inst(self.to_in(x))


def test_layer_group_and_instance_norms_remove_the_scale_they_normalize():
    report = _audit(_EachKind(), 6, 4, 5)
    assert report.findings == (
        # LayerNorm and GroupNorm divide by one deviation over all rows: one common scale
        _scale("to_ln.weight", (3, 4), (0, 0, 0), "ln (LayerNorm)",
               ("layer-weight-matrix-rescaling",), "the whole weight"),
        _scale("to_gn.weight", (4, 4, 1), (0, 0, 0, 0), "gn (GroupNorm)",
               ("group-weight-matrix-rescaling",), "the whole weight"),
        # InstanceNorm1d normalizes each channel on its own: a scale per row
        _scale("to_in.weight", (3, 4, 1), (0, 1, 2), "inst (InstanceNorm1d)",
               ("instance-weight-vector-rescaling",), "each row"),
    )
    assert report.inconsistencies == ()


# --- the report -----------------------------------------------------------------------


class _Order(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(3, 4, bias=False)
        self.first_bn = nn.BatchNorm1d(4)
        self.second = nn.Linear(3, 4)
        self.second_bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.first_bn(self.first(x)), self.second_bn(self.second(x))


def test_findings_come_in_the_model_parameter_order():
    # found as: second.bias (dead), then first.weight and second.weight (scale)
    report = _audit(_Order(), 6, 3)
    assert [(f.parameter, f.kind) for f in report.findings] == [
        ("first.weight", "scale-invariant"), ("second.weight", "scale-invariant"),
        ("second.bias", "dead")]


def test_parameters_total_counts_trained_entries_once():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 4), nn.BatchNorm1d(4))
    model[2].weight = model[1].weight
    model[3].weight.requires_grad_(False)
    report = _audit(model, 6, 3)
    # 12 + 4 (first), 16 + 4 (second), 4 (third's own bias; its weight is the second's),
    # 4 (the BatchNorm's bias; its weight is frozen)
    assert report.parameters_total == 44
    assert report.capture == "torch.fx"


def _pair_forward(lin, x):
    return nn.functional.linear(x, lin.weight, lin.bias), x


class _TupleForward(nn.Module):
    """A Linear whose forward, replaced on the instance, returns a pair."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.lin.forward = types.MethodType(_pair_forward, self.lin)  # copies bind to copies
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.lin(x)[0])


def test_a_module_call_whose_value_is_not_a_tensor_is_left_alone():
    # shape propagation records no single shape for the pair: no rule applies, no error
    report = _audit(_TupleForward(), 6, 3)
    assert report.findings == ()
    assert report.inconsistencies == ()


class _Leaks(nn.Module):
    """Biases that meet a BatchNorm on one path and escape it on another."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(3, 4)  # also reaches an output as it is
        self.out_bn = nn.BatchNorm1d(4)
        self.relu = nn.Linear(3, 4)  # also goes through a ReLU (no rule) to an output
        self.relu_bn = nn.BatchNorm1d(4)

    def forward(self, x):
        a, b = self.out(x), self.relu(x)
        return self.out_bn(a), a, self.relu_bn(b), torch.relu(b)


def test_a_bias_that_also_escapes_the_norm_is_live():
    report = _audit(_Leaks(), 6, 3)
    assert report.findings == ()
    assert report.inconsistencies == ()
