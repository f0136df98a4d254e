"""Models built to make the audit call a live parameter dead; it must not."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from bnproof.audit import audit  # noqa: E402
from bnproof.audit._confirm import confirm  # noqa: E402
from bnproof.audit._records import Finding  # noqa: E402


def _claimed_dead(parameter: str, size: int) -> Finding:
    """A (wrong) claim that the whole of ``parameter`` is dead."""
    return Finding(parameter=parameter, kind="dead", shape=(size,), redundant_dims=size,
                   dims=size, normalization="bn (BatchNorm1d)", through=(), claims=(),
                   why="planted", blocks=(0,) * size)


class _LiveWithBigOutput(nn.Module):
    """A live bias plus a second, large and unrelated output."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)

    def forward(self, x):
        return self.lin(x), x.sum() * 1e7


def test_confirmation_compares_each_output_on_its_own_scale():
    torch.manual_seed(0)
    model = _LiveWithBigOutput().double()
    x = torch.randn(4, 3, dtype=torch.float64)
    kept, problems = confirm(model, [x], [_claimed_dead("lin.bias", 4)])
    assert kept == [] and len(problems) == 1


def test_confirmation_perturbs_on_the_scale_of_the_activations():
    torch.manual_seed(0)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)
            self.bn = nn.BatchNorm1d(2)

        def forward(self, x):  # the bias is live: the product is not a shift
            y = self.lin(x)
            return self.bn(y[:, :2] * y[:, 2:])

    model = Model().double()
    x = torch.randn(6, 3, dtype=torch.float64) * 1e7  # activations of size 1e7
    kept, problems = confirm(model, [x], [_claimed_dead("lin.bias", 4)])
    assert kept == [] and len(problems) == 1


def test_confirmation_still_keeps_a_true_finding_next_to_a_big_output():
    torch.manual_seed(0)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x):
            return self.bn(self.lin(x)), x.sum() * 1e7

    model = Model().double()
    x = torch.randn(6, 3, dtype=torch.float64) * 1e7
    report = audit(model, x)
    assert sorted((f.parameter, f.kind) for f in report.findings) == [
        ("lin.bias", "dead"), ("lin.weight", "scale-invariant")]


# The models below are live; the rules must not even claim them (an empty
# ``inconsistencies`` shows no rule fired: confirmation is the second line).


class _UnbatchedConv(nn.Module):
    """Conv2d on one (C, H, W) sample: its bias lies along axis 0, not 1."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)  # on (3, 4, 5) -> (4, 4, 5): C_out == H
        self.bn = nn.BatchNorm1d(4)  # (N=4, C=4, L=5)

    def forward(self, x):
        return self.bn(self.conv(x[0]))


class _BiasIntoUnbatchedConv(nn.Module):
    """A bias along the last axis entering Conv1d on one (C, L) sample.

    The convolution mixes the input channels (axis 0), so the bias reaches
    its output as ``sum_c W[o, c] b[l]``: it varies along the rows the
    BatchNorm1d that follows treats as samples, and nothing cancels. The
    convolution's rule holds only at the batched rank (N, C, L).
    """

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.conv = nn.Conv1d(3, 5, 1)  # on (3, 4) -> (5, 4)
        self.bn = nn.BatchNorm1d(4)  # (N=5, C=4)

    def forward(self, x):
        return self.bn(self.conv(self.lin(x)))


class _UnbatchedInstanceNorm(nn.Module):
    """InstanceNorm1d on a 2-D tensor is unbatched (C, L): it normalizes each row."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 5)
        self.norm = nn.InstanceNorm1d(4)

    def forward(self, x):
        return self.norm(self.lin(x))


class _PoolAlongFeatures(nn.Module):
    """MaxPool1d on a 2-D (N, L) tensor pools along the bias axis."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 6)
        self.pool = nn.MaxPool1d(2)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        return self.bn(self.pool(self.lin(x)))


class _FunctionalPoolAlongFeatures(_PoolAlongFeatures):
    def forward(self, x):
        return self.bn(nn.functional.max_pool1d(self.lin(x), 2))


class _IntegerCast(nn.Module):
    """A cast to int64 truncates: the bias does not pass through as a shift."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.lin(x).to(torch.int64).to(torch.float64))


class _InPlaceThroughView(nn.Module):
    """Sample 0 is doubled in place through a view: the shift is no longer the same per sample."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        y = self.lin(x)
        v = y[:1]
        v.add_(v)
        return self.bn(y)


@pytest.mark.parametrize(("model_class", "shape"), [
    (_InPlaceThroughView, (8, 3)),
    (_UnbatchedConv, (2, 3, 4, 5)),
    (_BiasIntoUnbatchedConv, (3, 4)),
    (_UnbatchedInstanceNorm, (4, 3)),
    (_PoolAlongFeatures, (8, 3)),
    (_FunctionalPoolAlongFeatures, (8, 3)),
    (_IntegerCast, (8, 3)),
])
def test_rules_do_not_claim_live_parameters(model_class, shape):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64) * 3
    report = audit(model_class().double(), x)
    assert report.findings == ()
    assert report.inconsistencies == ()


class _AugmentedAssignmentOnView(_InPlaceThroughView):
    def forward(self, x):
        y = self.lin(x)
        v = y[:1]
        v += v  # torch.fx records an out-of-place addition: the graph misses the change of y
        return self.bn(y)


def test_an_inplace_change_the_graph_does_not_show_is_dropped_by_the_confirmation():
    # The traced graph computes v + v into a new value, so the rules see y
    # unchanged and call lin.bias dead; the model itself doubles sample 0 of
    # y, and the numeric confirmation (which runs the model) drops the finding.
    torch.manual_seed(0)
    report = audit(_AugmentedAssignmentOnView().double(),
                   torch.randn(8, 3, dtype=torch.float64))
    assert report.findings == ()
    assert len(report.inconsistencies) == 1
    assert report.inconsistencies[0].startswith("lin.bias: the rules say dead")


def test_a_cast_between_floating_dtypes_still_passes_the_bias():
    # negative control of the cast rule: float64 -> float32 -> float64 shifts stay shifts
    class Model(_IntegerCast):
        def forward(self, x):
            return self.bn(self.lin(x).to(torch.float32).to(torch.float64))

    torch.manual_seed(0)
    report = audit(Model().double(), torch.randn(8, 3, dtype=torch.float64))
    assert ("lin.bias", "dead") in [(f.parameter, f.kind) for f in report.findings]


def test_a_batched_conv_is_still_found():
    # negative control of the rank rule: the same conv on a batch is cancelled
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x))

    torch.manual_seed(0)
    report = audit(Model().double(), torch.randn(2, 3, 4, 5, dtype=torch.float64))
    assert sorted((f.parameter, f.kind) for f in report.findings) == [
        ("conv.bias", "dead"), ("conv.weight", "scale-invariant")]


def test_unbatched_conv_through_torch_export_is_not_claimed():
    class Model(_UnbatchedConv):
        def forward(self, x):  # a shape-dependent branch: torch.fx fails, torch.export works
            if x.shape[0] > 1:
                x = x[0]
            return self.bn(self.conv(x))

    torch.manual_seed(0)
    report = audit(Model().double(), torch.randn(2, 3, 4, 5, dtype=torch.float64))
    assert report.capture == "torch.export"
    assert report.findings == () and report.inconsistencies == ()


CLI_MODELS = """
import torch
from torch import nn

def exits():
    raise SystemExit(5)

class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x, y):
        return self.bn(self.lin(x)) + y

def two_inputs():
    return Two()
"""


@pytest.mark.parametrize(("factory", "message"), [
    ("exits", "exit(5)"),
    ("two_inputs", "forward needs 2 inputs"),
])
def test_cli_factory_exit_and_missing_inputs_are_usage_errors(tmp_path, capsys, factory,
                                                                message):
    from bnproof.cli import main

    path = tmp_path / "models.py"
    path.write_text(CLI_MODELS, encoding="utf-8")
    assert main(["audit", f"{path}:{factory}", "--input-shape", "4,3"]) == 2
    assert message in capsys.readouterr().err
